"""The ``stripe`` verifier: ``Stripe-Signature: t=<unix>,v1=<hex>[,v1=...]`` over ``"{t}.{body}"``,
keyed with the whole ``whsec_...`` secret; the event's ``type`` routes it, its ``id`` dedupes it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway import hookimpl
from gateway.triggers.webhooks.verifier import Rejected, Verifier, any_equal, bad_signature


class StripeVerifier(Verifier):
    signs_time = True

    def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        stamp, signatures = _read(self.header(headers, "Stripe-Signature"))
        if not stamp or not signatures:
            raise Rejected("malformed_signature", "The Stripe-Signature header has no t= or v1=.")
        if not any_equal(self.hex_digests(stamp.encode() + b"." + body), signatures):
            raise bad_signature()
        self.check_time(stamp, now)

    def signed(self, body: bytes, headers: Mapping[str, str]) -> bytes:
        stamp, _ = _read(headers.get("Stripe-Signature", ""))
        return (stamp or "").encode() + b"." + body

    def delivery_id(self, payload: Any, headers: Mapping[str, str]) -> str | None:
        found = payload.get("id") if isinstance(payload, dict) else None
        return found if isinstance(found, str) and found else None


def _read(header: str) -> tuple[str | None, list[bytes]]:
    """The timestamp (the first ``t=``) and the ``v1=`` signatures of a Stripe-Signature."""
    stamp, signatures = None, []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and stamp is None:
            stamp = value
        elif key == "v1":
            signatures.append(value.encode())
    return stamp, signatures


@hookimpl
def gateway_register_webhook_verifiers(register: Any) -> None:
    register("stripe", StripeVerifier)
