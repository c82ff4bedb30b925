"""The ``slack`` verifier: ``X-Slack-Signature: v0=<hex>`` over ``"v0:{timestamp}:{body}"`` with
``X-Slack-Request-Timestamp``.

``url_verification`` requests get their ``challenge`` back (after the signature is checked).
Events API callbacks are typed by their event (``app_mention``, ``message``) and deduplicated
by ``event_id``, so Slack's retries (``X-Slack-Retry-Num``) of a delivery that was accepted are
acknowledged without running again. Interactivity payloads are typed by their ``type``
(``block_actions``, ``view_submission``), slash commands are ``slash_command``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway import hookimpl
from gateway.triggers.webhooks.verifier import Rejected, Verifier, any_equal, bad_signature


class SlackVerifier(Verifier):
    signs_time = True

    def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        given = self.header(headers, "X-Slack-Signature")
        stamp = self.header(headers, "X-Slack-Request-Timestamp")
        if not given.startswith("v0="):
            raise Rejected("malformed_signature", "X-Slack-Signature must start with v0=.")
        if not any_equal(self.hex_digests(self.signed(body, headers)), [given[3:].encode()]):
            raise bad_signature()
        self.check_time(stamp, now)

    def signed(self, body: bytes, headers: Mapping[str, str]) -> bytes:
        return b"v0:" + headers.get("X-Slack-Request-Timestamp", "").encode() + b":" + body

    def event_type(self, payload: Any, headers: Mapping[str, str]) -> str:
        if not isinstance(payload, dict):
            return ""
        if payload.get("type") == "event_callback" and isinstance(payload.get("event"), dict):
            return str(payload["event"].get("type", ""))
        if "command" in payload and "type" not in payload:
            return "slash_command"
        return str(payload.get("type", ""))

    def delivery_id(self, payload: Any, headers: Mapping[str, str]) -> str | None:
        if not isinstance(payload, dict):
            return None
        found = payload.get("event_id") or payload.get("trigger_id")
        return found if isinstance(found, str) and found else None

    def answer(self, payload: Any) -> dict[str, Any] | None:
        if isinstance(payload, dict) and payload.get("type") == "url_verification":
            return {"challenge": payload.get("challenge", "")}
        return None


@hookimpl
def gateway_register_webhook_verifiers(register: Any) -> None:
    register("slack", SlackVerifier)
