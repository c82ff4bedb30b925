"""A webhook signature scheme: the made-up "Acme" service signs ``<timestamp>:<body>``.

Acme sends ``X-Acme-Timestamp`` (Unix seconds), ``X-Acme-Signature: sha256=<hex HMAC-SHA256>``,
the event's type in ``X-Acme-Event`` and a delivery id (the same for every retry) in
``X-Acme-Delivery``. The gateway checks the signature on the raw body before anything parses
it, refuses replays (a stale timestamp, or signed content seen already), drops duplicates by
delivery id, then runs the handlers::

    [webhooks.acme]                    # POST /webhooks/acme
    verifier = "acme"
    secret = "${ACME_WEBHOOK_SECRET}"  # or a list of two while rotating
    [[webhooks.acme.on]]
    event = "order.paid"
    agent = "fulfilment"
    prompt = "Ship order {order.id}"
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway import RegisterVerifier, hookimpl
from gateway.triggers import Rejected, Verifier, any_equal, bad_signature


class AcmeVerifier(Verifier):
    signs_time = True  # signed content need be remembered only while its timestamp passes

    def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        stamp = self.header(headers, "X-Acme-Timestamp")  # Rejected when missing
        self.check_time(stamp, now)  # further than `tolerance` from now: a replay
        given = self.header(headers, "X-Acme-Signature")
        if not given.startswith("sha256="):
            raise Rejected("malformed_signature", "X-Acme-Signature must start with sha256=.")
        # One digest per configured secret, each compared in constant time.
        expected = self.hex_digests(stamp.encode() + b":" + body)
        if not any_equal(expected, [given.removeprefix("sha256=").encode()]):
            raise bad_signature()

    def signed(self, body: bytes, headers: Mapping[str, str]) -> bytes:
        # What the signature covers: the same signed content under a new delivery id is a replay.
        return headers.get("X-Acme-Timestamp", "").encode() + b":" + body

    def event_type(self, payload: Any, headers: Mapping[str, str]) -> str:
        return headers.get("X-Acme-Event", "")

    def delivery_id(self, payload: Any, headers: Mapping[str, str]) -> str | None:
        return headers.get("X-Acme-Delivery")


@hookimpl
def gateway_register_webhook_verifiers(register: RegisterVerifier) -> None:
    register("acme", AcmeVerifier)  # called with each [webhooks.<name>] table's config
