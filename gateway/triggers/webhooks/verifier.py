"""What a webhook verifier is: it checks a delivery's signature on the raw bytes, then reads the
event's type and delivery id from it.

Verifiers are registered by name with ``gateway_register_webhook_verifiers`` (``register(name,
factory)``; ``factory(config)`` gets the webhook's :class:`~gateway.triggers.webhooks.config.WebhookConfig`
and raises ``ValueError`` for options it cannot use). Signatures are compared with
``hmac.compare_digest``, before anything parses the body; every secret in ``secret`` is tried,
so a secret can be rotated without refusing deliveries signed with the old one.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qs

import orjson

if TYPE_CHECKING:
    from gateway.triggers.webhooks.config import WebhookConfig


class Rejected(Exception):
    """A delivery that is not accepted (401): ``reason`` is the metrics label, ``message`` what
    the sender is told."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class Verifier:
    """Checks one webhook's deliveries. Subclasses implement :meth:`verify` and may override
    how the payload, its type and its delivery id are read."""

    #: Options of ``[webhooks.<name>]`` beyond the common ones that this verifier reads; setting
    #: any other is a configuration error, so nothing is silently ignored.
    options: ClassVar[frozenset[str]] = frozenset()
    #: Whether the scheme signs a timestamp (checked against ``tolerance``): then the signed
    #: content needs remembering only while that timestamp is accepted.
    signs_time: bool = False

    def __init__(self, config: WebhookConfig) -> None:
        from gateway.triggers.webhooks.config import SCHEME_OPTIONS

        stray = sorted(o for o in SCHEME_OPTIONS - self.options if getattr(config, o) is not None)
        if stray:
            raise ValueError(
                f"the {config.verifier!r} verifier does not use {', '.join(map(repr, stray))}"
            )
        self.config = config
        self.tolerance = float(config.tolerance)
        self.keys = [self.key(secret) for secret in config.secret]

    def key(self, secret: str) -> bytes:
        """The HMAC key of one configured secret (its UTF-8 bytes, unless the scheme says)."""
        return secret.encode()

    def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        """Raise :class:`Rejected` unless ``body`` carries a valid, fresh signature."""
        raise NotImplementedError

    def signed(self, body: bytes, headers: Mapping[str, str]) -> bytes | None:
        """What the signature covers (called after :meth:`verify` accepted it): the body, with
        the signed timestamp and id where the scheme signs them. The same signed content is run
        once, whatever delivery id comes with it. ``None`` (this default, for verifiers written
        before it existed): de-duplication by delivery id only."""
        return None

    def replay_window(self) -> float:
        """Seconds the signed content of an accepted delivery is remembered: while a replay of
        it would pass :meth:`verify` (twice the tolerance, as a timestamp may be off either way),
        or as long as delivery ids when nothing signed expires."""
        if self.signs_time:
            return 2 * self.tolerance
        return float(self.config.dedupe_ttl)

    def parse(self, body: bytes, headers: Mapping[str, str]) -> Any:
        """The payload: JSON, or a form body (``payload=<json>`` forms give that JSON).
        Raises ``ValueError`` when it is neither."""
        kind = headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "application/x-www-form-urlencoded":
            form = {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
            if "payload" in form:
                return orjson.loads(form["payload"])
            return form
        return orjson.loads(body)

    def event_type(self, payload: Any, headers: Mapping[str, str]) -> str:
        """What routes the event to handlers; the payload's ``type`` by default."""
        found = payload.get("type") if isinstance(payload, dict) else None
        return found if isinstance(found, str) else ""

    def delivery_id(self, payload: Any, headers: Mapping[str, str]) -> str | None:
        """The id that is the same for every retry of one delivery (for de-duplication)."""
        return None

    def answer(self, payload: Any) -> dict[str, Any] | None:
        """A reply to send at once instead of running handlers (a URL verification)."""
        return None

    # -- helpers for subclasses

    def header(self, headers: Mapping[str, str], *names: str) -> str:
        """The first of ``names`` that is present; :class:`Rejected` when none is."""
        for name in names:
            value = headers.get(name)
            if value:
                return value
        raise Rejected("missing_signature", f"The {names[0]} header is missing.")

    def check_time(self, value: str, now: float) -> None:
        """Refuse a timestamp (Unix seconds) further than the tolerance from ``now``, either way."""
        try:
            stamp = float(value)
        except ValueError:
            stamp = math.nan
        if not math.isfinite(stamp):
            raise Rejected("bad_timestamp", "The signature's timestamp is not a number.")
        if stamp > 1e11:  # milliseconds
            stamp /= 1000
        if abs(now - stamp) > self.tolerance:
            raise Rejected(
                "stale",
                f"The signature's timestamp is more than {self.tolerance:g}s from the "
                "gateway's time (a replay, or a clock that is off).",
            )

    def hex_digests(self, message: bytes) -> list[bytes]:
        return [hmac.new(k, message, hashlib.sha256).hexdigest().encode() for k in self.keys]

    def digests(self, message: bytes) -> list[bytes]:
        return [hmac.new(k, message, hashlib.sha256).digest() for k in self.keys]


def any_equal(expected: Iterable[bytes], given: Iterable[bytes]) -> bool:
    """Whether any given signature equals any expected one, each compared in constant time
    (every pair is compared: no early exit reveals which)."""
    found = False
    candidates = list(given)
    for e in expected:
        for g in candidates:
            found |= hmac.compare_digest(e, g)
    return found


def bad_signature() -> Rejected:
    return Rejected("bad_signature", "The signature does not match the body.")
