"""The ``github`` verifier: ``X-Hub-Signature-256: sha256=<hex>`` over the body.

GitHub signs no timestamp, and not the delivery id (``X-GitHub-Delivery``): a delivery without
an id is refused, and one whose body was accepted already, under any id, is a replay (see
:mod:`gateway.triggers.webhooks.endpoint`). The type is ``X-GitHub-Event``, followed by
the payload's ``action`` when it has one (``issues.opened``, ``pull_request.closed``, ``push``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway import hookimpl
from gateway.triggers.webhooks.verifier import Rejected, Verifier, any_equal, bad_signature


class GitHubVerifier(Verifier):
    def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        given = self.header(headers, "X-Hub-Signature-256")
        if not given.startswith("sha256="):
            raise Rejected("malformed_signature", "X-Hub-Signature-256 must start with sha256=.")
        if not any_equal(self.hex_digests(body), [given[7:].lower().encode()]):
            raise bad_signature()
        if not headers.get("X-GitHub-Delivery"):
            raise Rejected("missing_delivery_id", "The X-GitHub-Delivery header is missing.")

    def signed(self, body: bytes, headers: Mapping[str, str]) -> bytes:
        return body

    def event_type(self, payload: Any, headers: Mapping[str, str]) -> str:
        event = headers.get("X-GitHub-Event", "")
        action = payload.get("action") if isinstance(payload, dict) else None
        return f"{event}.{action}" if isinstance(action, str) and action else event

    def delivery_id(self, payload: Any, headers: Mapping[str, str]) -> str | None:
        return headers.get("X-GitHub-Delivery")


@hookimpl
def gateway_register_webhook_verifiers(register: Any) -> None:
    register("github", GitHubVerifier)
