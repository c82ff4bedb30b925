"""The ``limits`` plugin: requests and tokens per minute for each API key.

``[limits] rpm`` and ``tpm`` are the defaults for every key; a key's own ``rpm`` / ``tpm`` in
``[auth] keys`` overrides them (0: no limit). A request over its allowance is refused before it
reaches a backend with 429 and ``retry-after`` in the client's protocol. Tokens are charged at the
end of every request (:meth:`Filter.on_end`): the usage the upstream reported (streams included);
when it reported none, an estimate of about four characters a token of the request and of what
was sent, so a client that leaves mid-stream is charged too. A request that failed before any
output is charged only what the upstream reported. The buckets (see
:mod:`gateway.limits.buckets`) live in memory for one process or in Redis for several
(``[limits] store``). With no limit configured anywhere the filter is not installed and costs
nothing.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import attrs
from aiohttp import web

from gateway import (
    ChatRequest,
    Exchange,
    Filter,
    GatewayError,
    NonNegative,
    Outcome,
    Principal,
    RateLimited,
    hookimpl,
    request_tokens,
)
from gateway.limits.buckets import Buckets, MemoryBuckets, RedisBuckets
from gateway.limits.concurrency import REQUEST_SLOTS, Slots, StreamBound, request_bound

if TYPE_CHECKING:
    from gateway import Gateway

log = logging.getLogger(__name__)


@attrs.frozen
class LimitsConfig:
    """``[limits]``: per-key defaults (0: no limit) and where the counts are kept."""

    #: Requests per minute for each key that does not set its own.
    rpm: NonNegative = NonNegative(0)
    #: Tokens (prompt + completion) per minute for each key that does not set its own.
    tpm: NonNegative = NonNegative(0)
    #: "auto" (redis when [redis] url is set, else memory), "memory" or "redis".
    store: str = "auto"
    #: Requests one key may have in progress at once (0: no limit); past it 429 with
    #: ``retry-after``. Counted per process.
    max_requests_per_key: NonNegative = NonNegative(0)
    #: Streamed answers (AG-UI runs and A2A tasks included) one key may have in progress at
    #: once (0: no limit); past it 429 with ``retry-after``. Counted per process.
    max_streams_per_key: NonNegative = NonNegative(0)
    #: Requests in progress in one process, all keys together (0: no limit); past it 503 with
    #: ``retry-after``. ``/health`` and ``/metrics`` are always served.
    max_requests: NonNegative = NonNegative(1024)
    #: Streamed answers in progress in one process, all keys together (0: no limit); past it
    #: 503 with ``retry-after``. (``max_requests`` bounds streams too, as requests in
    #: progress; AG-UI runs and A2A tasks go on after their request, and only this counts them.)
    max_streams: NonNegative = NonNegative(0)


class LimitsFilter(Filter):
    name = "limits"
    #: First: a refused request costs nothing else (no session load, no upstream call).
    order = -200

    def __init__(self, buckets: Buckets, rpm: int, tpm: int) -> None:
        self.buckets = buckets
        self.rpm = rpm
        self.tpm = tpm

    def limits(self, principal: Principal) -> tuple[int, int]:
        rpm = self.rpm if principal.rpm is None else principal.rpm
        tpm = self.tpm if principal.tpm is None else principal.tpm
        return rpm, tpm

    async def on_request(self, request: ChatRequest, exchange: Exchange) -> ChatRequest | None:
        principal = exchange.principal
        rpm, tpm = self.limits(principal)
        if not (rpm or tpm):
            return None
        wait, limit = await self.buckets.acquire(principal.id, rpm, tpm)
        if limit is not None:
            per_minute = rpm if limit == "requests" else tpm
            raise RateLimited(
                f"Rate limit reached for '{principal.name}': {per_minute} {limit} per minute. "
                f"Retry in {math.ceil(wait)}s.",
                code="rate_limit_exceeded",
                retry_after=wait,
            )
        return None

    async def on_end(self, request: ChatRequest, exchange: Exchange, outcome: Outcome) -> None:
        """Charge the request's tokens, whatever its outcome: a client that leaves mid-stream
        pays for what it was sent; a request that failed before any output pays only what the
        upstream reported, if anything."""
        principal = exchange.principal
        tpm = self.limits(principal)[1]
        if not tpm:
            return
        usage = outcome.usage
        if usage is not None:
            tokens = usage.total_tokens
        elif outcome.status == "error" and not outcome.output_tokens:
            return
        else:
            tokens = request_tokens(request) + outcome.output_tokens
        try:
            await self.buckets.spend(principal.id, tpm, tokens)
        except GatewayError as err:
            # The answer is out (or the request is over); losing its count is better than
            # failing it.
            log.warning("tokens of request %s not counted: %s", exchange.request_id, err.message)


def _configured(gateway: Gateway) -> tuple[int, int] | None:
    cfg: LimitsConfig = gateway.config.section("limits")
    auth = gateway.config.sections.get("auth")
    keys = getattr(auth, "keys", ())
    if cfg.rpm or cfg.tpm or any(k.rpm or k.tpm for k in keys):
        return cfg.rpm, cfg.tpm
    return None


@hookimpl
def gateway_config_sections(register: Any) -> None:
    register("limits", LimitsConfig)


@hookimpl
def gateway_configure_app(app: web.Application, gateway: Gateway) -> None:
    cfg: LimitsConfig = gateway.config.section("limits")
    if cfg.max_requests_per_key or cfg.max_requests:
        slots = Slots("requests", cfg.max_requests_per_key, cfg.max_requests)
        app.middlewares.append(request_bound(slots))
        app[REQUEST_SLOTS] = slots


@hookimpl
def gateway_register_filters(register: Any) -> None:
    def streams(gateway: Gateway) -> StreamBound | None:
        cfg: LimitsConfig = gateway.config.section("limits")
        if not (cfg.max_streams_per_key or cfg.max_streams):
            return None
        return StreamBound(Slots("streams", cfg.max_streams_per_key, cfg.max_streams))

    register("concurrency", streams)

    def factory(gateway: Gateway) -> LimitsFilter | None:
        defaults = _configured(gateway)
        if defaults is None:
            return None
        store = gateway.state.choose("limits.store", gateway.config.section("limits").store)
        if store == "redis":
            buckets: Buckets = RedisBuckets(gateway.state.redis("limits.store"))
        else:
            buckets = MemoryBuckets()
        return LimitsFilter(buckets, *defaults)

    register("limits", factory)
