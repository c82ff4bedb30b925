"""The ``standard`` verifier: Standard Webhooks (as Svix sends them).

``webhook-id``, ``webhook-timestamp`` and ``webhook-signature: v1,<base64> [v1,<base64> ...]``
(or the same headers named ``svix-*``); the signature is over ``"{id}.{timestamp}.{body}"``,
keyed with the base64-decoded secret after its ``whsec_`` prefix. ``webhook-id`` dedupes, the
payload's ``type`` routes.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from gateway import hookimpl
from gateway.triggers.webhooks.verifier import Rejected, Verifier, any_equal, bad_signature


class StandardVerifier(Verifier):
    signs_time = True

    def key(self, secret: str) -> bytes:
        try:
            # like the reference library: padding added, extra padding ignored
            return base64.b64decode(secret.removeprefix("whsec_") + "==")
        except (binascii.Error, ValueError):
            raise ValueError("the secret is not base64 (expected whsec_<base64>)") from None

    def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        self.header(headers, "webhook-id", "svix-id")  # required: it is signed
        stamp = self.header(headers, "webhook-timestamp", "svix-timestamp")
        given = self.header(headers, "webhook-signature", "svix-signature")
        signatures = [
            sig.encode()
            for version, _, sig in (item.partition(",") for item in given.split())
            if version == "v1"
        ]
        if not signatures:
            raise Rejected("malformed_signature", "webhook-signature has no v1 signature.")
        expected = [base64.b64encode(d) for d in self.digests(self.signed(body, headers))]
        if not any_equal(expected, signatures):
            raise bad_signature()
        self.check_time(stamp, now)

    def signed(self, body: bytes, headers: Mapping[str, str]) -> bytes:
        msg_id = headers.get("webhook-id") or headers.get("svix-id") or ""
        stamp = headers.get("webhook-timestamp") or headers.get("svix-timestamp") or ""
        return f"{msg_id}.{stamp}.".encode() + body

    def delivery_id(self, payload: Any, headers: Mapping[str, str]) -> str | None:
        return headers.get("webhook-id") or headers.get("svix-id")


@hookimpl
def gateway_register_webhook_verifiers(register: Any) -> None:
    register("standard", StandardVerifier)
