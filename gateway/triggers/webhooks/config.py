"""``[webhooks.<name>]``: one signed endpoint, ``POST /webhooks/<name>``."""

from __future__ import annotations

from typing import Any

import attrs

from gateway import ByteSize, Duration
from gateway.triggers.handlers import HandlerConfig


class Secrets(tuple[str, ...]):
    """One secret, or a list of them (during a rotation the old and the new one)."""

    @classmethod
    def parse(cls, value: Any) -> Secrets:
        items = [value] if isinstance(value, str) else value
        if (
            not isinstance(items, list | tuple)
            or not items
            or not all(isinstance(s, str) and s for s in items)
        ):
            raise ValueError("expected a non-empty secret string, or a list of them")
        return cls(items)

    def __repr__(self) -> str:
        return f"<{len(self)} secret(s)>"


#: Options only some verifiers read (the ``hmac-sha256`` scheme's).
SCHEME_OPTIONS = frozenset(
    {
        "header",
        "prefix",
        "encoding",
        "timestamp_header",
        "signed",
        "id_header",
        "event_header",
        "event_field",
    }
)


@attrs.frozen
class WebhookConfig:
    """One webhook. ``verifier`` and ``secret`` are required."""

    #: stripe | slack | github | standard | hmac-sha256 | a plugin's.
    verifier: str
    #: The signing secret (or a list, while rotating); use "${ENV_VAR}".
    secret: Secrets = attrs.field(repr=False)
    #: Handlers: [[webhooks.<name>.on]] event = "...", agent + prompt, or call.
    on: tuple[HandlerConfig, ...] = ()
    #: Signatures older (or newer) than this are refused as replays.
    tolerance: Duration = Duration(300.0)
    #: How long delivery ids are remembered, so a retry or replay never runs twice.
    dedupe_ttl: Duration = Duration(86400.0)
    #: Larger bodies get 413 before any check.
    max_body_size: ByteSize = ByteSize(1024**2)
    #: The API key that owns the runs this webhook starts ([triggers] run_as when unset).
    run_as: str | None = None
    # -- the hmac-sha256 scheme's options (see the README)
    header: str | None = None
    prefix: str | None = None
    encoding: str | None = None
    timestamp_header: str | None = None
    signed: str | None = None
    id_header: str | None = None
    event_header: str | None = None
    event_field: str | None = None

    def __attrs_post_init__(self) -> None:
        if self.dedupe_ttl < self.tolerance:
            raise ValueError(
                f"dedupe_ttl ({self.dedupe_ttl:g}s) must be at least the tolerance "
                f"({self.tolerance:g}s), or a replay inside the tolerance could run twice"
            )
