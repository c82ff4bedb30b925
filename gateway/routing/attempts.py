"""The attempt loop: one request's way through its route's targets.

A :class:`Policy` answers for a route with several targets, or retries: it plans the order
(:mod:`gateway.routing.targets`), makes one attempt at a time (:meth:`Policy.attempt_complete`,
:meth:`Policy.attempt_stream`: each is one upstream request, where per-attempt accounting
hooks in), and decides after each failure, as :mod:`gateway.routing.failures` classifies it,
whether to retry the same target (exponential backoff with jitter, an upstream's
``Retry-After`` honoured up to ``max_backoff``), move on to the next, or answer the client.

Streams hold their events until the first content is ready, so a failure before it moves on
unseen. A failure after content was sent continues the answer on the next target that accepts
an assistant prefill, with the text already sent as that prefill; the client receives one
answer. The finish is held until the upstream's stream properly ends. Tool calls are held
until they are complete, so one cut mid-call is made again from
scratch rather than continued. Where no target can continue, the stream ends with an error
naming the original failure.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

import attrs

from gateway.canonical import (
    ChatRequest,
    ChatResponse,
    Error,
    Event,
    Finish,
    Message,
    ReasoningDelta,
    Start,
    TextDelta,
    TextPart,
    ToolCallEnd,
    ToolCallStart,
)
from gateway.errors import GatewayError, Overloaded, UpstreamError
from gateway.routing.circuit import HALF_OPEN, Breaker, Circuits, Health
from gateway.routing.failures import classify
from gateway.routing.targets import Target, affinity_key, order, prefer

if TYPE_CHECKING:
    from gateway.config.sections import ModelConfig
    from gateway.core.attempts import Attempts
    from gateway.core.metrics import Metrics
    from gateway.exchange import Exchange

log = logging.getLogger(__name__)

#: Failures that say nothing about a target's health (the request's own faults).
_REQUEST_FAULTS = frozenset({"context_length", "content_policy", "client"})
#: Events after which a stream's content has begun.
_CONTENT = (TextDelta, ReasoningDelta, ToolCallEnd)


class Policy:
    """How one route answers: its targets, strategy, retries, fallbacks and circuits."""

    def __init__(
        self,
        name: str,
        cfg: ModelConfig,
        targets: Sequence[Target],
        circuits: Circuits,
        metrics: Metrics,
    ) -> None:
        self.name = name
        self.targets = list(targets)
        self.strategy = cfg.strategy
        self.retry_on = frozenset(cfg.retry_on)
        self.fallback_on = frozenset(cfg.fallback_on)
        self.backoff = float(cfg.backoff)
        self.max_backoff = float(cfg.max_backoff)
        self.affinity = cfg.affinity if cfg.strategy != "fallback" else ""
        self.breaker = Breaker(int(cfg.allowed_fails), float(cfg.fail_window), float(cfg.cooldown))
        self.circuits = circuits
        self.metrics = metrics
        self._keys = [t.key for t in self.targets]

    # -- planning

    async def plan(self, req: ChatRequest, ex: Exchange) -> list[tuple[Target, Health]]:
        """The targets to try, in order; 503 when every circuit is open."""
        ex.attempts = 0
        health = await self.circuits.health(self._keys, self.breaker)
        planned = order(self.strategy, self.targets, health)
        if self.affinity:
            key = affinity_key(self.affinity, req, ex)
            if key:
                planned = prefer(key, planned)
        if not planned:
            raise Overloaded(
                f"Every upstream of the model '{self.name}' is failing; retry later.",
                code="no_healthy_target",
                retry_after=self.breaker.cooldown,
            )
        return planned

    async def _admit(self, target: Target, health: Health) -> bool:
        """Whether ``target`` may be tried now (a half-open one only as the probe)."""
        return health.state != HALF_OPEN or await self.circuits.probe(target.key, self.breaker)

    def _wait(self, tries: int, err: GatewayError) -> float | None:
        """Seconds to wait before retry number ``tries + 1``, or None when the upstream asks
        for longer than ``max_backoff`` (then the next target is better)."""
        wait: float = min(self.max_backoff, self.backoff * 2.0**tries) * (0.5 + random.random() / 2)
        if err.retry_after is not None:
            if err.retry_after > self.max_backoff:
                return None
            wait = max(wait, err.retry_after)
        return wait

    async def health(self) -> list[dict[str, object]]:
        """Each target's circuit, for ``/health``."""
        health = await self.circuits.health(self._keys, self.breaker)
        return [
            {
                "target": t.key,
                "served": t.served("*"),
                "state": h.state,
                "fails": h.fails,
                "inflight": t.inflight,
                # Recent time to first content (this process's moving average), for the console.
                "latency_ms": None if t.latency is None else round(t.latency * 1000, 1),
            }
            for t, h in zip(self.targets, health, strict=True)
        ]

    # -- bookkeeping of one attempt

    def _begin(self, target: Target, req: ChatRequest, ex: Exchange) -> float:
        ex.attempts += 1
        ex.backend = target.backend.label
        ex.served = target.served(req.model)
        req.upstream_model = target.upstream_model or req.model
        target.inflight += 1
        self.metrics.route_attempt(self.name, target.key)
        return time.perf_counter()

    def _first_content(self, target: Target, started: float) -> None:
        seconds = time.perf_counter() - started
        target.observe_latency(seconds)
        self.metrics.route_first_byte(self.name, target.key, seconds)

    async def _failed(self, target: Target, err: GatewayError, reason: str) -> bool:
        """Count a failed attempt; True when it opened the target's circuit (no retry there
        then)."""
        self.metrics.route_failure(self.name, target.key, reason)
        if reason in _REQUEST_FAULTS:
            return False
        opened = await self.circuits.failure(target.key, self.breaker)
        if opened:
            log.warning(
                "model %r: target %s failed (%s): skipped for %gs",
                self.name,
                target.key,
                reason,
                self.breaker.cooldown,
            )
            self.metrics.route_circuit_opened(self.name, target.key)
        return opened

    # -- whole answers

    async def complete(self, req: ChatRequest, ex: Exchange, attempts: Attempts) -> ChatResponse:
        """A whole answer from the first target that gives one. ``attempts`` makes each
        upstream attempt (the pipeline's, which observability plugins wrap)."""
        original: GatewayError | None = None
        for target, health in await self.plan(req, ex):
            if not await self._admit(target, health):
                continue
            tries = 0
            while True:
                try:
                    resp = await self.attempt_complete(target, req, ex, attempts)
                except GatewayError as err:
                    reason = classify(err)
                    opened = await self._failed(target, err, reason)
                    original = original or err
                    retry = reason in self.retry_on and not opened
                    wait = self._wait(tries, err) if retry else None
                    if wait is not None and tries < target.retries:
                        tries += 1
                        self.metrics.route_retry(self.name, target.key)
                        await asyncio.sleep(wait)
                        continue
                    if reason not in self.fallback_on:
                        raise
                    self.metrics.route_fallback(self.name, target.key)
                    break
                await self.circuits.success(target.key, health, self.breaker)
                return resp
        raise original or self._none_left()

    async def attempt_complete(
        self, target: Target, req: ChatRequest, ex: Exchange, attempts: Attempts
    ) -> ChatResponse:
        """One upstream request for a whole answer."""
        started = self._begin(target, req, ex)
        try:
            resp = await attempts.complete(target.backend, req, ex)
        finally:
            target.inflight -= 1
        self._first_content(target, started)
        if req.upstream_model != req.model:
            # The body names the model the client asked for, whichever target answered.
            resp.model, resp.raw = req.model, None
        return resp

    def _none_left(self) -> GatewayError:
        return Overloaded(
            f"No upstream of the model '{self.name}' could take the request; retry later.",
            code="no_healthy_target",
            retry_after=self.breaker.cooldown,
        )

    # -- streams

    async def stream_reads(
        self, req: ChatRequest, ex: Exchange, attempts: Attempts
    ) -> AsyncGenerator[list[Event], None]:
        """A streamed answer, continued on another target when one fails after content was
        sent; ``attempts`` makes each upstream attempt. The events go in lists, never empty,
        those released together (by one upstream read) in one (see
        :meth:`Pipeline.stream_reads <gateway.core.pipeline.Pipeline.stream_reads>`)."""
        # The gateway encodes a routed stream itself: a continuation from another target must
        # read as the same answer, which relayed upstream bytes could not.
        req.raw_relay = False
        sent: _Sent | None = None
        original: GatewayError | None = None
        for target, health in await self.plan(req, ex):
            if sent is not None and not sent.continuable(target):
                continue
            if not await self._admit(target, health):
                continue
            tries = 0
            while True:
                attempt = _Attempt(sent)
                answer = self.attempt_stream(target, req, ex, attempt, attempts)
                async with aclosing(answer) as reads:
                    async for read in reads:
                        yield read
                err = attempt.error
                if err is None:
                    await self.circuits.success(target.key, health, self.breaker)
                    return
                sent = attempt.sent
                reason = "stream" if attempt.flushed else classify(err)
                opened = await self._failed(target, err, reason)
                original = original or err
                if sent is not None and attempt.flushed and sent.original is None:
                    sent.original = err
                retry = reason in self.retry_on and not opened
                wait = self._wait(tries, err) if retry else None
                if (
                    wait is not None
                    and tries < target.retries
                    and (sent is None or sent.continuable(target))
                ):
                    tries += 1
                    self.metrics.route_retry(self.name, target.key)
                    await asyncio.sleep(wait)
                    continue
                # Once the client has content, any failure moves on: only a continuation
                # can still complete the answer.
                if sent is None and reason not in self.fallback_on:
                    raise err
                self.metrics.route_fallback(self.name, target.key)
                break
        if sent is not None:
            yield [Error(sent.original or original or self._none_left())]
            return
        raise original or self._none_left()

    async def attempt_stream(
        self,
        target: Target,
        req: ChatRequest,
        ex: Exchange,
        attempt: _Attempt,
        attempts: Attempts,
    ) -> AsyncGenerator[list[Event], None]:
        """One upstream request for a stream: its events, held until content is ready (and
        tool calls until they are complete), those released by one upstream read in one list.
        A failure is left in ``attempt.error``."""
        sent = attempt.sent
        sub = req if sent is None else sent.request(req)
        started = self._begin(target, sub, ex)
        held: list[Event] = []
        calls = 0
        content = finished = False
        trim = sent is not None and sent.trimmed
        out: list[Event] = []  # what the read at hand releases
        try:
            # A backend that gives a read's events together is read so (one resume a read).
            reads = attempts.reads(target.backend, sub, ex)
            together = reads is not None
            answer: AsyncGenerator[Any, None] = (
                reads if reads is not None else attempts.stream(target.backend, sub, ex)
            )
            async with aclosing(answer) as events:
                async for read in events:
                    evs: Sequence[Event] = read if together else (read,)
                    for ev in evs:
                        t = type(ev)
                        if isinstance(ev, Error):
                            attempt.error = ev.error
                            if out:
                                yield out  # what went before it
                            return
                        if isinstance(ev, Start):
                            if sent is not None:
                                continue  # a continuation: the client has its start
                            ev = Start(ev.id, req.model, ev.created)
                        elif trim and isinstance(ev, TextDelta):
                            trim = False
                            text = ev.text.lstrip()
                            if not text:
                                continue
                            ev = TextDelta(text)
                        elif t is ToolCallStart:
                            calls += 1
                        elif t is ToolCallEnd:
                            calls -= 1
                        elif t is Finish:
                            finished = True
                        held.append(ev)
                        # The finish (and what follows it) waits for the stream's proper end:
                        # an upstream that fails after it did not finish (no [DONE], say).
                        if calls or finished or not (content or t in _CONTENT):
                            continue
                        if not content:
                            content = True
                            self._first_content(target, started)
                        for released in held:
                            attempt.record(released)
                        out += held
                        held.clear()
                    if out:
                        yield out
                        out = []  # not held while the next read is awaited (an idle stream)
                    del read, evs
        except GatewayError as err:
            attempt.error = err
            if out:
                yield out  # released before the failure
            return
        finally:
            target.inflight -= 1
        if not finished:
            attempt.error = UpstreamError(
                f"backend '{target.backend.name}' ended the stream without finishing its answer"
            )
            return
        for released in held:
            attempt.record(released)
        if held:
            yield held


@attrs.define
class _Sent:
    """What the client has received of a stream so far."""

    text: list[str] = attrs.Factory(list)
    calls: bool = False
    #: The first failure after content was sent: what the client is told if nothing can
    #: continue the answer.
    original: GatewayError | None = None

    @property
    def trimmed(self) -> bool:
        """Whether the prefill drops trailing whitespace (providers refuse it)."""
        text = "".join(self.text)
        return text != text.rstrip()

    def continuable(self, target: Target) -> bool:
        """Whether ``target`` can continue this answer: it accepts a prefill, and what was
        sent is text a prefill can carry."""
        return target.accepts_prefill and not self.calls

    def request(self, req: ChatRequest) -> ChatRequest:
        """``req`` with the text sent so far as a trailing assistant message (the prefill)."""
        prefill = "".join(self.text).rstrip()
        messages = (
            [*req.messages, Message("assistant", [TextPart(prefill)])] if prefill else req.messages
        )
        return attrs.evolve(req, messages=messages, wire=None)


@attrs.define
class _Attempt:
    """One stream attempt's outcome: what it sent, and how it failed (if it did)."""

    sent: _Sent | None
    error: GatewayError | None = None
    flushed: bool = False

    def record(self, ev: Event) -> None:
        self.flushed = True
        sent = self.sent
        if sent is None:
            sent = self.sent = _Sent()
        if isinstance(ev, TextDelta):
            sent.text.append(ev.text)
        elif isinstance(ev, ToolCallStart):
            sent.calls = True
