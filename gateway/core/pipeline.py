"""The per-request chain, compiled once: filters, routing, the backend call, bookkeeping.

Protocol adapters only decode and encode; everything between a decoded :class:`ChatRequest`
and the events or response they encode happens here, the same for every protocol.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import warnings
from collections.abc import AsyncGenerator, Awaitable, Callable, Hashable, Sequence
from contextlib import aclosing
from typing import TYPE_CHECKING, Generic, Literal, TypeVar, cast

from gateway.canonical import (
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    Error,
    Event,
    Finish,
    Raw,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    ToolRunDelta,
    UsageEvent,
)
from gateway.core.attempts import Attempts
from gateway.core.filters import Filter, Outcome, overrides
from gateway.core.tokens import part_tokens, request_tokens
from gateway.errors import GatewayError, UpstreamError
from gateway.streaming.assembler import Assembler

if TYPE_CHECKING:
    from gateway.backends.base import Backend
    from gateway.core.metrics import Metrics
    from gateway.core.router import Route, Router
    from gateway.exchange import Exchange

log = logging.getLogger(__name__)


EndHook = Callable[["ChatRequest", "Exchange", Outcome], Awaitable[None]]
SuccessHook = Callable[["ChatRequest", "ChatResponse", "Exchange"], Awaitable[None]]
EventHook = Callable[["Event", "Exchange"], Awaitable["Event | None"]]
Status = Literal["success", "error", "client_gone"]
Hook = TypeVar("Hook")
#: The note under which :meth:`Pipeline.prepare_route` keeps a request a filter returned, for
#: the end hooks when a later step (a filter, routing) fails before it is returned.
_FILTERED = object()


class Pipeline:
    def __init__(self, router: Router, filters: Sequence[Filter], metrics: Metrics) -> None:
        ordered = sorted(filters, key=lambda f: f.order)
        self.router = router
        self.metrics = metrics
        #: How each upstream attempt is made (observability plugins wrap it).
        self.attempts = Attempts()
        self.request_filters = [f.on_request for f in ordered if overrides(f, "on_request")]
        self.event_filters = [_event_hook(f) for f in ordered if overrides(f, "on_event")]
        self.response_filters = [f.on_response for f in ordered if overrides(f, "on_response")]
        #: The success and end hooks, with the note each needs (``Filter.success_note``,
        #: ``Filter.end_note``).
        self._success: _Noted[SuccessHook] = _Noted(
            [(f.success_note, f.on_success) for f in ordered if overrides(f, "on_success")]
        )
        self._ends: _Noted[EndHook] = _Noted(
            [(f.end_note, f.on_end) for f in ordered if overrides(f, "on_end")]
        )
        self.success_hooks: list[SuccessHook] = self._success.every
        self.end_hooks: list[EndHook] = self._ends.every
        #: End hooks running shielded after their request was cancelled.
        self._ending: set[asyncio.Future[None]] = set()
        #: Same-protocol raw frames may be relayed only while no filter rewrites events.
        self.raw_relay = not self.event_filters
        #: Relayed frames need parsing into events only when a success or end hook reads them.
        self.parse_relayed = any(
            f.reads_relayed for f in ordered if overrides(f, "on_success") or overrides(f, "on_end")
        )

    async def prepare(self, req: ChatRequest, ex: Exchange) -> tuple[ChatRequest, Backend]:
        """Run request filters and route; returns the request as the filters left it (they may
        return a new one) and the backend of its (first) target. A filter may clear
        ``req.raw_relay`` to have its request's stream encoded by the gateway."""
        req, route = await self.prepare_route(req, ex)
        return req, route.backend

    async def prepare_route(self, req: ChatRequest, ex: Exchange) -> tuple[ChatRequest, Route]:
        """:meth:`prepare`, returning the route: its backend answers, or its policy when it
        has several targets or retries (:mod:`gateway.routing`)."""
        req.raw_relay = self.raw_relay
        req.parse_relayed = self.parse_relayed
        for flt in self.request_filters:
            changed = await flt(req, ex)
            if changed is not None:
                req = changed
                req.wire = None
                ex.note(_FILTERED, req)
        route = self._resolve(req, ex)
        ex.stream = req.stream
        return req, route

    def _resolve(self, req: ChatRequest | EmbeddingRequest, ex: Exchange) -> Route:
        route = self.router.resolve(req.model, ex.principal)
        req.upstream_model = route.upstream_for(req.model)
        ex.model = route.name
        ex.backend = route.backend.label
        ex.served = route.served or f"{ex.backend}/{req.upstream_model}"
        ex.attempts = 1
        return route

    def _route(self, req: ChatRequest | EmbeddingRequest, ex: Exchange) -> Backend:
        """The backend of the route's first target (embeddings and token counts)."""
        return self._resolve(req, ex).backend

    async def embed(self, req: EmbeddingRequest, ex: Exchange) -> EmbeddingResponse:
        """Embeddings from the routed backend (chat filters do not apply to them)."""
        backend = self._route(req, ex)
        try:
            resp = await backend.embed(req, ex)
        except GatewayError as err:
            if err.code != "model_not_supported":
                self.metrics.upstream_error(ex.backend, err)
            raise
        ex.usage = resp.usage
        return resp

    async def count_tokens(self, req: ChatRequest, ex: Exchange) -> tuple[int, bool]:
        """The input tokens of ``req`` and whether the count is exact: the routed backend's
        count when its upstream can give one, else the gateway's estimate. Routing and key
        permissions apply; filters do not (nothing is generated)."""
        backend = self._route(req, ex)
        count = await backend.count_tokens(req, ex)
        if count is not None:
            return count, True
        return request_tokens(req), False

    async def complete(self, req: ChatRequest, ex: Exchange) -> ChatResponse:
        """A whole answer. Raises :class:`GatewayError` on failure."""
        status: Status = "client_gone"
        error: GatewayError | None = None
        answer: ChatResponse | None = None
        try:
            req, route = await self.prepare_route(req, ex)
            try:
                policy = route.policy
                attempts = self.attempts
                if policy is None:
                    resp = await (
                        # Unobserved attempts call straight through: one coroutine fewer.
                        route.backend.complete(req, ex)
                        if type(attempts) is Attempts
                        else attempts.complete(route.backend, req, ex)
                    )
                else:
                    resp = await policy.complete(req, ex, attempts)
            except GatewayError as err:
                self.metrics.upstream_error(ex.backend, err)
                raise
            for flt in self.response_filters:
                changed = await flt(req, resp, ex)
                if changed is not None:
                    resp = changed
                    resp.raw = None
            ex.usage = resp.usage
            for hook in self._success.of(ex):
                await hook(req, resp, ex)
            status, answer = "success", resp
            return resp
        except Exception as exc:
            status, error = "error", _as_error(exc)
            raise
        finally:
            hooks = self._ends.of(ex)
            if hooks:
                if status != "success":
                    req = _left(req, ex)
                # What was sent, estimated only for a request an end hook reads it of.
                output = 0 if answer is None else sum(map(part_tokens, answer.message.parts))
                outcome = Outcome(status, error, ex.usage, output, False)
                if status == "client_gone":
                    await self._shielded(hooks, req, ex, outcome)
                elif len(hooks) == 1:
                    # _run_end_hooks for one hook, without its coroutine.
                    try:
                        await hooks[0](req, ex, outcome)
                    except Exception:
                        _end_hook_failed(hooks[0], ex)
                else:
                    await self._run_end_hooks(hooks, req, ex, outcome)

    async def stream(self, req: ChatRequest, ex: Exchange) -> AsyncGenerator[Event, None]:
        """A streamed answer as events, filters applied.

        Failures before the first event raise :class:`GatewayError` (the adapter can still send
        a plain error response); later ones arrive as an :class:`Error` event, and the stream
        always ends with a :class:`Finish` or an :class:`Error`, never silently. Closing the
        iterator early (the client went away) cancels the backend's stream.
        """
        async with aclosing(self.stream_reads(req, ex)) as reads:
            async for read in reads:
                for ev in read:
                    yield ev
                    del ev  # not held while the next event is awaited (an idle stream)
                del read

    async def stream_reads(
        self, req: ChatRequest, ex: Exchange
    ) -> AsyncGenerator[list[Event], None]:
        """:meth:`stream`'s events, those that came together (one upstream read's) in one list,
        never empty: one resume of the generator a read rather than one an event, for a
        consumer that handles them together (:meth:`ProtocolAdapter.stream_response
        <gateway.protocols.base.ProtocolAdapter.stream_response>` writes a read's frames at
        once)."""
        status: Status = "client_gone"
        error: GatewayError | None = None
        # What was sent, for the end hooks' estimate: characters of text, and relayed frames.
        metered = bool(self.end_hooks)
        chars = frames = 0
        try:
            req, route = await self.prepare_route(req, ex)
            policy = route.policy
            answer: AsyncGenerator[Event | list[Event], None]
            # An attempt at a backend that can give a read's events together (its own stream()
            # gives them one by one), or a policy's (which gives them so): one resume of its
            # generator a read.
            reads = self.attempts.reads(route.backend, req, ex) if policy is None else None
            if reads is not None:
                answer = reads
            elif policy is None:
                answer = self.attempts.stream(route.backend, req, ex)
            else:
                answer = reads = policy.stream_reads(req, ex, self.attempts)
            together = reads is not None
            success = self._success.of(ex)
            assembler = Assembler(req.model) if success else None
            filters = self.event_filters
            count_raw = req.raw_relay and not req.parse_relayed
            finished = sent = False
            out: list[Event] = []  # the events of the read at hand that go on
            try:
                async with aclosing(answer) as events:
                    async for read in events:
                        evs: Sequence[Event] = read if together else (read,)  # type: ignore[assignment]
                        for ev in evs:
                            if filters:
                                kept: Event | None = ev
                                for flt in filters:
                                    kept = await flt(ev, ex)
                                    if kept is None:
                                        break
                                    ev = kept
                                if kept is None:
                                    continue
                            if type(ev) is TextDelta:  # the most frequent event: one test
                                if metered:
                                    chars += len(ev.text)
                            elif type(ev) is Finish:
                                finished = True
                            elif type(ev) is UsageEvent:
                                ex.usage = ev.usage
                            elif type(ev) is Error:
                                failed = ev.error
                                self.metrics.upstream_error(ex.backend, failed)
                                status, error = "error", failed
                                out.append(ev)
                                yield out
                                return
                            elif metered:
                                if type(ev) is ReasoningDelta:
                                    chars += len(ev.text)
                                elif type(ev) is ToolCallDelta or type(ev) is ToolRunDelta:
                                    chars += len(ev.arguments)
                                elif type(ev) is Raw and count_raw:
                                    frames += ev.frames or ev.data.count(b"\n\n")
                            if assembler is not None:
                                assembler.add(ev)
                            out.append(ev)
                        if out:
                            sent = True
                            yield out
                            # Nothing of a read is held while the next one is awaited (an idle
                            # stream).
                            del ev
                            out = []
                        del read, evs
            except GatewayError as err:
                self.metrics.upstream_error(ex.backend, err)
                status, error = "error", err
                if not sent and not out:
                    raise
                # After what went on before it (of the read at hand too, when a filter failed).
                out.append(Error(err))
                yield out
                return
            if not finished:
                cut = UpstreamError("the backend ended the stream without finishing its answer")
                self.metrics.upstream_error(ex.backend, cut)
                status, error = "error", cut
                yield [Error(cut)]
                return
            if assembler is not None:
                resp = assembler.response()
                try:
                    for hook in success:
                        await hook(req, resp, ex)
                except GatewayError as err:
                    # E.g. the session store could not keep the turn: the client must know, and
                    # the answer's bytes are out already, so it is the protocol's error frame.
                    status, error = "error", err
                    yield [Error(err)]
                    return
            status = "success"
        except Exception as exc:
            # Refused or failed before the first event (a filter, routing, the backend).
            status, error = "error", _as_error(exc)
            raise
        finally:
            # ``client_gone`` here: the consumer closed the stream (GeneratorExit) or the task
            # was cancelled; either way that goes on once the end hooks have run.
            if metered:
                outcome = Outcome(status, error, ex.usage, (chars + 3) // 4 + frames, True)
                await self._end(req if status == "success" else _left(req, ex), ex, outcome)

    async def _end(self, req: ChatRequest, ex: Exchange, outcome: Outcome) -> None:
        """Run the end hooks. When the client is gone the request is being cancelled or closed:
        the hooks then run shielded, so a second cancellation (a drain's deadline) cannot cut
        them short; it still reaches the caller."""
        hooks = self._ends.of(ex)
        if not hooks:
            return
        if outcome.status == "client_gone":
            await self._shielded(hooks, req, ex, outcome)
        else:
            await self._run_end_hooks(hooks, req, ex, outcome)

    async def _run_end_hooks(
        self, hooks: Sequence[EndHook], req: ChatRequest, ex: Exchange, outcome: Outcome
    ) -> None:
        """Each hook once, in order; one that fails is logged and the others still run."""
        for i, hook in enumerate(hooks):
            try:
                await hook(req, ex, outcome)
            except asyncio.CancelledError:
                # Cancelled meanwhile: the remaining hooks still run, then the cancellation
                # goes on.
                if i + 1 < len(hooks):
                    await self._shielded(hooks[i + 1 :], req, ex, outcome)
                raise
            except Exception:
                _end_hook_failed(hook, ex)

    async def _shielded(
        self, hooks: Sequence[EndHook], req: ChatRequest, ex: Exchange, outcome: Outcome
    ) -> None:
        task = asyncio.ensure_future(self._run_end_hooks(hooks, req, ex, outcome))
        # Held until done: a task only the shield refers to could be collected mid-way.
        self._ending.add(task)
        task.add_done_callback(self._ending.discard)
        await asyncio.shield(task)


class _Noted(Generic[Hook]):
    """Hooks of which some run only for the requests whose notes hold a key (their filter's
    ``success_note`` or ``end_note``), sorted out once."""

    def __init__(self, noted: list[tuple[Hashable | None, Hook]]) -> None:
        #: Every hook, in order.
        self.every: list[Hook] = [hook for _, hook in noted]
        #: The hooks with the key each needs, when one needs a key; else ``None`` (every hook
        #: runs for every request).
        self._noted: list[tuple[Hashable | None, Hook]] | None = (
            noted if any(key is not None for key, _ in noted) else None
        )
        self._keys = frozenset(key for key, _ in noted if key is not None)
        #: The hooks that need no key (all a request holding none of the keys gets).
        self._unnoted: list[Hook] = [hook for key, hook in noted if key is None]

    def of(self, ex: Exchange) -> list[Hook]:
        """The hooks for this request (once its request filters have run)."""
        noted = self._noted
        if noted is None:
            return self.every
        notes = ex.notes
        if notes is None or self._keys.isdisjoint(notes):
            return self._unnoted
        return [hook for key, hook in noted if key is None or key in notes]


def _left(req: ChatRequest, ex: Exchange) -> ChatRequest:
    """The request as the filters left it: ``req``, or the one a filter returned when what
    followed (a later filter, routing) failed before :meth:`Pipeline.prepare_route` returned."""
    notes = ex.notes
    return req if notes is None else notes.get(_FILTERED, req)


def _as_error(exc: Exception) -> GatewayError:
    """What a failure is to the end hooks: itself, or the gateway's own failure when it is not a
    :class:`GatewayError` (the client is answered the same)."""
    if isinstance(exc, GatewayError):
        return exc
    return GatewayError("The gateway failed to handle the request.")


def _end_hook_failed(hook: EndHook, ex: Exchange) -> None:
    """Log the failure being handled (an end hook's: the request's other hooks still run)."""
    log.exception("filter %s failed at the end of request %s", _filter_name(hook), ex.request_id)


def _filter_name(hook: Callable[..., object]) -> str:
    flt = getattr(hook, "__self__", hook)
    return getattr(flt, "name", "") or type(flt).__name__


def _event_hook(flt: Filter) -> EventHook:
    """The filter's ``on_event``, awaitable; a synchronous one (the 0.1 form) is wrapped."""
    on_event = flt.on_event
    if inspect.iscoroutinefunction(on_event):
        return on_event
    warnings.warn(
        f"filter {_filter_name(on_event)!r}: a synchronous on_event is deprecated since "
        "hookgate 0.2 and will be removed; define it with 'async def'",
        DeprecationWarning,
        stacklevel=2,
    )
    call = cast("Callable[[Event, Exchange], Event | None]", on_event)

    async def awaitable(event: Event, exchange: Exchange) -> Event | None:
        return call(event, exchange)

    return awaitable
