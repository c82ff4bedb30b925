"""The ``limits`` plugin: requests and tokens per minute for each API key.

``[limits] rpm`` and ``tpm`` are the defaults for every key; a key's own ``rpm`` / ``tpm`` in
``[auth] keys`` (or the database) overrides them (0: no limit). A database key's team may have
limits of its own, which all its keys share. A request over its allowance is refused before it
reaches a backend with 429 and ``retry-after`` in the client's protocol. Every answer to a
limited key says where it stands, as OpenAI does: ``x-ratelimit-limit-requests``,
``x-ratelimit-remaining-requests``, ``x-ratelimit-reset-requests`` (and ``-tokens``). Tokens are charged at the
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
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import attrs
from aiohttp import web

from gateway import (
    ChatRequest,
    Duration,
    Exchange,
    Filter,
    GatewayError,
    NonNegative,
    Outcome,
    RateLimited,
    hookimpl,
    request_tokens,
)
from gateway.limits.buckets import Buckets, MemoryBuckets, RedisBuckets
from gateway.limits.concurrency import (
    REQUEST_SLOTS,
    SharedSlots,
    Slots,
    StreamBound,
    shared_request_bound,
)

if TYPE_CHECKING:
    from gateway import Gateway

log = logging.getLogger(__name__)

#: The key of this filter's note in ``Exchange.notes``: the token limits per minute that apply
#: to the request, charged at its end.
_TOKENS = "limits.tokens"


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
    #: ``retry-after``. Counted in the store: through Redis, for every instance together.
    max_requests_per_key: NonNegative = NonNegative(0)
    #: Streamed answers (AG-UI runs and A2A tasks included) one key may have in progress at
    #: once (0: no limit); past it 429 with ``retry-after``. Counted in the store: through
    #: Redis, for every instance together.
    max_streams_per_key: NonNegative = NonNegative(0)
    #: Requests in progress in one process, all keys together (0: no limit); past it 503 with
    #: ``retry-after``. ``/health`` and ``/metrics`` are always served.
    max_requests: NonNegative = NonNegative(1024)
    #: Streamed answers in progress in one process, all keys together (0: no limit); past it
    #: 503 with ``retry-after``. (``max_requests`` bounds streams too, as requests in
    #: progress; AG-UI runs and A2A tasks go on after their request, and only this counts them.)
    max_streams: NonNegative = NonNegative(0)
    #: Requests in progress in all instances together, all keys together (0: no limit); past
    #: it 503 with ``retry-after``. Counted in the store (with the memory store: this process).
    max_requests_global: NonNegative = NonNegative(0)
    #: Streamed answers (AG-UI runs and A2A tasks included) in progress in all instances
    #: together (0: no limit); past it 503 with ``retry-after``. Counted in the store (with
    #: the memory store: this process).
    max_streams_global: NonNegative = NonNegative(0)
    #: How long a request or stream counted in Redis keeps its slot without word from its
    #: instance, which renews it every third of this while it lasts: the slots of an
    #: instance that was killed are free again within this time.
    slot_lease: Duration = Duration(15.0)


class LimitsFilter(Filter):
    name = "limits"
    #: First: a refused request costs nothing else (no session load, no upstream call).
    order = -200
    #: A relayed stream's content is parsed only for a request that a token limit applies to
    #: (``on_request`` asks for it): without usage, what was sent is then estimated from its
    #: text. Other requests' relays skip it (with the database's keys on, this filter is there
    #: for every request, most often to find no limit).
    reads_relayed = False
    #: ``on_end`` only charges tokens: it runs for the requests a token limit applies to.
    end_note = _TOKENS

    def __init__(self, buckets: Buckets, rpm: int, tpm: int) -> None:
        self.buckets = buckets
        self.rpm = rpm
        self.tpm = tpm

    async def on_request(self, request: ChatRequest, exchange: Exchange) -> ChatRequest | None:
        principal = exchange.principal
        # self.limits() and _team(), without their calls (on every request: most find none).
        rpm = self.rpm if principal.rpm is None else principal.rpm
        tpm = self.tpm if principal.tpm is None else principal.tpm
        if rpm or tpm:
            await self._acquire(principal.id, principal.name, rpm, tpm, exchange)
        attributes = principal.attributes
        team = attributes.get("team_id") if attributes else None
        team_tpm = 0
        if team is not None:
            team_rpm, team_tpm = attributes.get("team_rpm") or 0, attributes.get("team_tpm") or 0
            if team_rpm or team_tpm:
                await self._acquire("team:" + team, f"team {team}", team_rpm, team_tpm, None)
        if tpm or team_tpm:
            request.parse_relayed = True
            exchange.note(_TOKENS, (tpm, team, team_tpm))
        return None

    async def _acquire(
        self, owner: str, name: str, rpm: int, tpm: int, exchange: Exchange | None
    ) -> None:
        wait, limit, requests, tokens = await self.buckets.acquire(owner, rpm, tpm)
        if exchange is not None:
            exchange.response_headers = _headers(rpm, tpm, requests, tokens)
        if limit is not None:
            per_minute = rpm if limit == "requests" else tpm
            raise RateLimited(
                f"Rate limit reached for '{name}': {per_minute} {limit} per minute. "
                f"Retry in {math.ceil(wait)}s.",
                code="rate_limit_exceeded",
                retry_after=wait,
            )

    async def on_end(self, request: ChatRequest, exchange: Exchange, outcome: Outcome) -> None:
        """Charge the request's tokens, whatever its outcome: a client that leaves mid-stream
        pays for what it was sent; a request that failed before any output pays only what the
        upstream reported, if anything."""
        notes = exchange.notes
        noted = notes.get(_TOKENS) if notes is not None else None
        if noted is None:
            return  # no token limit applies
        tpm, team, team_tpm = noted
        usage = outcome.usage
        if usage is not None:
            tokens = usage.total_tokens
        elif outcome.status == "error" and not outcome.output_tokens:
            return
        else:
            tokens = request_tokens(request) + outcome.output_tokens
        try:
            if tpm:
                await self.buckets.spend(exchange.principal.id, tpm, tokens)
            if team is not None and team_tpm:
                await self.buckets.spend("team:" + team, team_tpm, tokens)
        except GatewayError as err:
            # The answer is out (or the request is over); losing its count is better than
            # failing it.
            log.warning("tokens of request %s not counted: %s", exchange.request_id, err.message)


def _duration(seconds: float) -> str:
    """``6m0s``, ``1.5s``, ``120ms``: how OpenAI writes ``x-ratelimit-reset-*``."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    minutes, rest = divmod(seconds, 60)
    text = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{int(minutes)}m{text}" if minutes else text


def _headers(rpm: int, tpm: int, requests: float, tokens: float) -> dict[str, str]:
    """OpenAI's ``x-ratelimit-*`` headers for the key's buckets after this request: limit,
    what is left, and how long until the bucket is full again."""
    headers = {}
    if rpm:
        left = max(0.0, requests)
        headers["x-ratelimit-limit-requests"] = str(rpm)
        headers["x-ratelimit-remaining-requests"] = str(int(left))
        headers["x-ratelimit-reset-requests"] = _duration((rpm - left) * 60.0 / rpm)
    if tpm:
        left = max(0.0, tokens)
        headers["x-ratelimit-limit-tokens"] = str(tpm)
        headers["x-ratelimit-remaining-tokens"] = str(int(left))
        headers["x-ratelimit-reset-tokens"] = _duration((tpm - left) * 60.0 / tpm)
    return headers


def _configured(gateway: Gateway) -> tuple[int, int] | None:
    cfg: LimitsConfig = gateway.config.section("limits")
    auth = gateway.config.sections.get("auth")
    keys = getattr(auth, "keys", ())
    # Database keys and teams (on with [admin] keys) carry limits of their own at run time.
    admin = gateway.config.sections.get("admin")
    virtual = admin is not None and admin.virtual_keys_on()
    if cfg.rpm or cfg.tpm or virtual or any(k.rpm or k.tpm for k in keys):
        return cfg.rpm, cfg.tpm
    return None


@hookimpl
def gateway_config_sections(register: Any) -> None:
    register("limits", LimitsConfig)


def _bounds(
    gateway: Gateway, what: str, per_key: int, local: int, everywhere: int
) -> tuple[Slots | None, SharedSlots | None]:
    """The slots that count ``what`` in progress: in this process against ``local`` (and, with
    the memory store, the per-key and global bounds too), and in Redis against ``per_key`` and
    ``everywhere`` with the redis store. Redis is used only when one of those two is set."""
    cfg: LimitsConfig = gateway.config.section("limits")
    shared: SharedSlots | None = None
    if per_key or everywhere:
        state = gateway.state
        if cfg.store == "auto" and not state.redis_configured and state.workers > 1:
            log.warning(
                "[limits] bounds on %s in progress are counted by each of the %d workers "
                "on its own; set [redis] url to count them for all together",
                what,
                state.workers,
            )
            store = "memory"
        else:
            store = state.choose("limits.store", cfg.store)
        if store == "redis":
            shared = SharedSlots(
                state.redis("limits.store"), what, per_key, everywhere, cfg.slot_lease
            )
            per_key = everywhere = 0
    total = min((b for b in (local, everywhere) if b), default=0)
    slots = Slots(what, per_key, total) if per_key or total else None
    return slots, shared


def _closing(shared: SharedSlots) -> Any:
    async def lifespan(app: web.Application) -> AsyncIterator[None]:
        yield
        await shared.close()

    return lifespan


@hookimpl
def gateway_configure_app(app: web.Application, gateway: Gateway) -> None:
    cfg: LimitsConfig = gateway.config.section("limits")
    slots, shared = _bounds(
        gateway, "requests", cfg.max_requests_per_key, cfg.max_requests, cfg.max_requests_global
    )
    if shared is not None:
        app.middlewares.append(shared_request_bound(slots, shared))
        app.cleanup_ctx.append(_closing(shared))
    elif slots is not None:
        # Counted by the gateway's own middleware (see Gateway.request_bound).
        gateway.request_bound = slots
    if slots is not None:
        app[REQUEST_SLOTS] = slots
    for flt in gateway.filters:
        if isinstance(flt, StreamBound) and flt.shared is not None:
            app.cleanup_ctx.append(_closing(flt.shared))


@hookimpl
def gateway_register_filters(register: Any) -> None:
    def streams(gateway: Gateway) -> StreamBound | None:
        cfg: LimitsConfig = gateway.config.section("limits")
        slots, shared = _bounds(
            gateway, "streams", cfg.max_streams_per_key, cfg.max_streams, cfg.max_streams_global
        )
        if slots is None and shared is None:
            return None
        return StreamBound(slots, shared)

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
