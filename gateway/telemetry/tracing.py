"""Spans: the server span of a request, a client span per upstream attempt, agent steps and
tool calls, named and described as OpenTelemetry's GenAI semantic conventions say.

The server span continues the caller's W3C trace context (``traceparent``); each upstream
attempt passes its own span's context on to the upstream. Prompt and answer content is added
(``gen_ai.input.messages``, ``gen_ai.output.messages``) only when opted in.
"""

from __future__ import annotations

import asyncio
import logging
import marshal
import os
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import aclosing
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from aiohttp import web
from opentelemetry import trace
from opentelemetry.sdk.trace import sampling
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway import (
    EXCHANGE,
    Attempts,
    Backend,
    ChatRequest,
    ChatResponse,
    Error,
    Event,
    Exchange,
    Filter,
    GatewayError,
    Outcome,
    UsageEvent,
    sidecar,
    trace_headers,
)
from gateway.telemetry.exporter import REQUEST, attempt_span, name_of, spans_of

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.sampling import Sampler

log = logging.getLogger(__name__)
T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PROPAGATOR = TraceContextTextMapPropagator()
_SERVER, _CLIENT, _INTERNAL = SpanKind.SERVER.value, SpanKind.CLIENT.value, SpanKind.INTERNAL.value
_ERROR = StatusCode.ERROR.value
_getrandbits = random.getrandbits
_time_ns = time.time_ns
_monotonic_ns = time.monotonic_ns
#: Samplers that sample every trace they start (their descriptions).
_ROOTS_SAMPLED = frozenset(
    (
        sampling.ALWAYS_ON.get_description(),
        sampling.ParentBased(sampling.ALWAYS_ON).get_description(),  # type: ignore[no-untyped-call]
    )
)
#: The span exporter process's program (see its docstring).
EXPORTER = Path(__file__).with_name("exporter.py")


class Span:
    """A span as the request path sees it: a few fields and a dict, recorded at its end as one
    tuple (``exporter.FIELDS``) for the exporter process. Not recording (its trace not sampled),
    it only carries the context passed on."""

    __slots__ = (
        "_sink",
        "attributes",
        "description",
        "flags",
        "kind",
        "name",
        "parent_id",
        "remote",
        "span_id",
        "start",
        "state",
        "status",
        "trace_id",
    )

    def __init__(
        self,
        sink: SpanPipe | None,
        name: str,
        kind: int,
        trace_id: int,
        parent_id: int,
        remote: bool,
        flags: int,
        state: str,
        attributes: dict[str, Any],
    ) -> None:
        self._sink = sink
        self.name = name
        self.kind = kind
        self.trace_id = trace_id
        self.span_id = _getrandbits(64) or 1
        self.parent_id = parent_id
        self.remote = remote
        self.flags = flags
        self.state = state
        self.attributes = attributes
        self.status = 0
        self.description: str | None = None
        self.start = _time_ns()

    def is_recording(self) -> bool:
        return self._sink is not None

    def set_attribute(self, key: str, value: Any) -> None:
        if self._sink is not None and value is not None:
            self.attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        if self._sink is not None:
            self.attributes.update(attributes)

    def update_name(self, name: str) -> None:
        self.name = name

    def set_error(self, description: str | None = None) -> None:
        self.status = _ERROR
        self.description = description

    def headers(self) -> dict[str, str]:
        """The W3C trace context of this span (``traceparent``, ``tracestate``)."""
        return trace_headers((self.trace_id, self.span_id, self.flags, self.state))

    def end(self) -> None:
        sink = self._sink
        if sink is None:
            return
        self._sink = None
        sink.add(
            (
                self.name,
                self.kind,
                self.trace_id,
                self.span_id,
                self.parent_id,
                self.remote,
                self.flags,
                self.state,
                self.start,
                _time_ns(),
                self.attributes,
                self.status,
                self.description,
            )
        )


class RequestSpan(Span):
    """A request's server span, and the client spans of its upstream attempts made directly
    under it (not an agent's), recorded at its end as one tuple (``exporter.REQUEST``) that the
    exporter process makes into those spans: on the request path the facts are kept in slots and
    tuples, not in attribute dicts, and a request is one record to send rather than two.

    What the facts do not cover goes in :attr:`attributes` (``set_attribute``)."""

    __slots__ = (
        "_pipe",
        "answered",
        "asked",
        "attempts",
        "cost",
        "method",
        "path",
        "request_id",
        "route",
        "status_code",
    )

    def __init__(
        self,
        sink: SpanPipe | None,
        method: str,
        route: str,
        path: str,
        request_id: str,
        trace_id: int,
        parent_id: int,
        remote: bool,
        flags: int,
        state: str,
        attributes: dict[str, Any],
    ) -> None:
        # Named at its end (exporter.name_of) unless update_name() names it.
        super().__init__(sink, "", _SERVER, trace_id, parent_id, remote, flags, state, attributes)
        self._pipe = sink
        self.method = method
        self.route = route
        self.path = path
        self.request_id = request_id
        #: ``http.response.status_code`` once answered.
        self.status_code: int | None = None
        #: ``hookgate.cost_usd`` once priced.
        self.cost: float | None = None
        #: The request's facts (``exporter.ASKED``), at its end.
        self.asked: tuple[Any, ...] | None = None
        #: Its outcome's facts (``exporter.ANSWERED``), at its end.
        self.answered: tuple[Any, ...] | None = None
        #: The facts of its attempts (``exporter.ATTEMPT``), as they end.
        self.attempts: list[tuple[Any, ...]] | None = None

    def attempt(self, facts: tuple[Any, ...]) -> None:
        """Keep an attempt's facts (:data:`exporter.ATTEMPT`) for the record; one that ends
        after the request (a run going on after its answer) is sent as a span of its own."""
        if self._sink is None:
            pipe = self._pipe
            if pipe is not None:  # recording, and ended
                pipe.add(attempt_span(self.trace_id, self.span_id, self.flags, self.state, facts))
            return
        if self.attempts is None:
            self.attempts = [facts]
        else:
            self.attempts.append(facts)

    def end(self) -> None:
        sink = self._sink
        if sink is None:
            return
        self._sink = None
        attempts = self.attempts
        sink.add(
            (
                REQUEST,
                self.trace_id,
                self.span_id,
                self.parent_id,
                self.remote,
                self.flags,
                self.state,
                self.start,
                _time_ns(),
                self.method,
                self.path,
                self.route,
                self.request_id,
                self.name,
                self.status_code,
                self.status,
                self.description,
                self.cost,
                self.asked,
                self.answered,
                attempts,
                self.attributes,
            ),
            1 + len(attempts) if attempts else 1,
        )


class Tracer:
    """Starts spans: sampled by the SDK's sampler of the environment (``OTEL_TRACES_SAMPLER``,
    parent-based on the caller's ``traceparent`` by default), recorded into ``sink``."""

    def __init__(self, sampler: Sampler, sink: SpanPipe) -> None:
        self.sampler = sampler
        self.sink = sink
        #: Every new trace is sampled (the default sampler, or always_on): then a root span
        #: does not ask the sampler.
        self.roots_sampled = sampler.get_description() in _ROOTS_SAMPLED

    def request(
        self, method: str, route: str, path: str, request_id: str, headers: Mapping[str, str]
    ) -> RequestSpan:
        """A request's span, continuing the caller's trace when it sent one."""
        if "traceparent" not in headers:
            if self.roots_sampled:
                trace_id = _getrandbits(128) or 1
                return RequestSpan(
                    self.sink, method, route, path, request_id, trace_id, 0, False, 1, "", {}
                )
            context = parent = None
        else:
            context = PROPAGATOR.extract(headers)
            found = trace.get_current_span(context).get_span_context()
            parent = found if found.is_valid else None
        # What the sampler is told: the span's name and attributes as they are at its start.
        facts = {
            "http.request.method": method,
            "url.path": path,
            "http.route": route,
            "hookgate.request_id": request_id,
        }
        sink, trace_id, flags, state, added = self._sample(
            f"{method} {route}", _SERVER, context, parent, facts
        )
        return RequestSpan(
            sink,
            method,
            route,
            path,
            request_id,
            trace_id,
            parent.span_id if parent is not None else 0,
            parent is not None,
            flags,
            state,
            added,
        )

    def _root(
        self,
        name: str,
        kind: int,
        context: Any,
        parent: trace.SpanContext | None,
        attributes: dict[str, Any],
    ) -> Span:
        if parent is None and self.roots_sampled:
            return Span(self.sink, name, kind, _getrandbits(128) or 1, 0, False, 1, "", attributes)
        sink, trace_id, flags, state, added = self._sample(name, kind, context, parent, attributes)
        return Span(
            sink,
            name,
            kind,
            trace_id,
            parent.span_id if parent is not None else 0,
            parent is not None,
            flags,
            state,
            {**attributes, **added} if added else attributes,
        )

    def _sample(
        self,
        name: str,
        kind: int,
        context: Any,
        parent: trace.SpanContext | None,
        attributes: dict[str, Any],
    ) -> tuple[SpanPipe | None, int, int, str, dict[str, Any]]:
        """The sampler's decision on a new span: where it is recorded (``None``: nowhere), its
        trace id, flags, trace state, and the attributes the sampler adds."""
        trace_id = parent.trace_id if parent is not None else (_getrandbits(128) or 1)
        result = self.sampler.should_sample(context, trace_id, name, SpanKind(kind), attributes)
        sampled = result.decision is sampling.Decision.RECORD_AND_SAMPLE
        added = dict(result.attributes) if sampled and result.attributes else {}
        state = result.trace_state.to_header() if result.trace_state else ""
        return (self.sink if sampled else None), trace_id, (1 if sampled else 0), state, added

    def child(self, parent: Span | None, name: str, kind: int, attributes: dict[str, Any]) -> Span:
        """A span under ``parent`` (recording: the caller checks), or a new trace's root."""
        if parent is None:
            return self._root(name, kind, None, None, attributes)
        return Span(
            self.sink,
            name,
            kind,
            parent.trace_id,
            parent.span_id,
            False,
            parent.flags,
            parent.state,
            attributes,
        )


class SpanStats:
    def __init__(self) -> None:
        #: Spans handed to the exporter process.
        self.sent = 0
        #: Spans dropped: the exporter process was behind (or gone).
        self.dropped = 0


class SpanPipe:
    """Finished spans on their way to the exporter process (``exporter.py``, started and
    stopped with the app by :meth:`run`): kept in a list, written to its standard input in
    batches (``OTEL_BSP_MAX_EXPORT_BATCH_SIZE`` spans, or what is there after
    ``OTEL_BSP_SCHEDULE_DELAY`` ms). Bounded: at most ``OTEL_BSP_MAX_QUEUE_SIZE`` spans wait
    here and :attr:`MAX_PENDING` bytes in the pipe's buffer; past that spans are dropped and
    counted (``hookgate_trace_spans_total{outcome="dropped"}``)."""

    #: Bytes written and not yet read by the exporter process, at most.
    MAX_PENDING = 8 * 1024 * 1024
    #: Seconds the exporter process has to export what is left, when the app stops.
    STOP_TIMEOUT = 30.0

    def __init__(
        self, version: str, environ: Mapping[str, str] = os.environ, priority: str = "idle"
    ) -> None:
        self.version = version
        #: The exporter process's CPU priority (``[telemetry] exporter_priority``).
        self.priority = priority
        self.batch = max(1, int(_number(environ, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)))
        self.max_queue = max(self.batch, int(_number(environ, "OTEL_BSP_MAX_QUEUE_SIZE", 2048)))
        self.delay = max(0.0, _number(environ, "OTEL_BSP_SCHEDULE_DELAY", 5000) / 1000)
        self.stats = SpanStats()
        self._records: list[tuple[Any, ...]] = []
        #: Spans in :attr:`_records`.
        self._spans = 0
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stdin: asyncio.StreamWriter | None = None
        self._broken = False

    def add(self, record: tuple[Any, ...], spans: int = 1) -> None:
        """Keep ``record`` (of ``spans`` spans: a request's may hold its attempts') for the
        exporter process."""
        pending = self._spans + spans
        if pending > self.max_queue:
            self.stats.dropped += spans
            return
        self._records.append(record)
        self._spans = pending
        if pending >= self.batch:
            self.flush()
        elif self._timer is None and self._loop is not None:
            self._timer = self._loop.call_later(self.delay, self.flush)

    def flush(self) -> None:
        """Hand what is kept to the exporter process (kept while it is not started yet)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        stdin = self._stdin
        records = self._records
        if stdin is None or not records:
            return
        spans = self._spans
        self._records = []
        self._spans = 0
        if stdin.is_closing() or stdin.transport.get_write_buffer_size() > self.MAX_PENDING:
            self.stats.dropped += spans
            if not self._broken and stdin.is_closing():
                self._broken = True
                log.error("the span exporter process is gone: spans are dropped")
            return
        try:
            data = sidecar.frame(records, _monotonic_ns())
        except ValueError:  # an attribute of a type of its own: that record goes
            records = [r for r in records if _marshals(r)]
            data = sidecar.frame(records, _monotonic_ns())
            kept = sum(map(spans_of, records))
            self.stats.dropped += spans - kept
            spans = kept
        stdin.write(data)
        self.stats.sent += spans

    async def run(self, app: web.Application) -> AsyncIterator[None]:
        """``cleanup_ctx``: the exporter process for the app's lifetime; at the end what is left
        is exported, then it is shut down."""
        self._loop = asyncio.get_running_loop()
        proc = await sidecar.start(EXPORTER, self.version, self.priority)
        assert proc.stdin is not None
        self._stdin = proc.stdin
        if self._records:
            self._timer = self._loop.call_later(self.delay, self.flush)
        try:
            yield
        finally:
            self.flush()
            await sidecar.stop(proc, self.STOP_TIMEOUT, "the span exporter process")
            self._loop = None


def _number(environ: Mapping[str, str], name: str, default: float) -> float:
    """``name``'s number, or ``default`` when unset or not a number (as the SDK does)."""
    value = environ.get(name)
    if not value:
        return default
    try:
        return float(value)
    except ValueError:
        log.warning("%s=%r is not a number: %s is used", name, value, default)
        return default


def _marshals(record: tuple[Any, ...]) -> bool:
    try:
        marshal.dumps(record)
    except ValueError:
        log.warning("span %r not exported: an attribute is not a plain value", name_of(record))
        return False
    return True


class _SpanKey:
    """The exchange note holding the request's server span (a :class:`RequestSpan`)."""


class _ParentKey:
    """The exchange note holding the span new spans of this request hang under."""


SERVER = _SpanKey()
PARENT = _ParentKey()


def _parent(ex: Exchange) -> Span | None:
    notes = ex.notes
    if notes is None:
        return None
    span: Span | None = notes.get(PARENT) or notes.get(SERVER)
    return span


def _set_usage(span: Span, usage: Any) -> None:
    if usage is not None:
        span.set_attributes(
            {
                "gen_ai.usage.input_tokens": usage.input_tokens,
                "gen_ai.usage.output_tokens": usage.output_tokens,
            }
        )


def _failure(err: BaseException) -> tuple[str, str | None]:
    """What a failure is to a span: its ``error.type``, and its status description (a gateway
    error's message; ``None`` for any other exception, whose text may hold anything)."""
    if isinstance(err, GatewayError):
        return err.kind, str(err)
    return type(err).__qualname__, None


def _failed(span: Span, err: BaseException) -> None:
    kind, description = _failure(err)
    span.set_attribute("error.type", kind)
    span.set_error(description)


def server_middleware(tracer: Tracer) -> Callable[..., Awaitable[web.StreamResponse]]:
    """The server span of every request (after the exchange is made, before authentication)."""

    @web.middleware
    async def traced(request: web.Request, handler: Handler) -> web.StreamResponse:
        ex = request._state[EXCHANGE]
        # The path as sent when decoding it changes nothing (an origin-form target without
        # escapes, query or dot segments): aiohttp's decoded path is two properties and a URL's
        # decoding away, on every request.
        raw = request.raw_path
        if raw[:1] != "/" or "%" in raw or "?" in raw or "#" in raw or "/." in raw:
            raw = request.path
        span = tracer.request(request.method, ex.route.name, raw, ex.request_id, request.headers)
        ex.note(SERVER, span)
        try:
            resp = await handler(request)
        except GatewayError as err:
            span.status_code = err.status
            if err.status >= 500:
                _failed(span, err)
            else:
                span.set_attribute("error.type", err.kind)
            raise
        except BaseException as exc:
            _failed(span, exc)
            raise
        else:
            status = span.status_code = resp.status
            if status >= 500:
                span.set_error()
            return resp
        finally:
            span.cost = ex.cost
            span.end()

    return traced


class TracingFilter(Filter):
    """Describes the request's server span as a GenAI operation (``chat <model>``): at the
    request's end, what was asked (the request as the filters left it: what went to the model)
    and what came of it. End hooks run for refused requests too, with the request as it was
    before the filter that refused it, so their spans say what was asked as well."""

    name = "telemetry"
    #: First among the end hooks (the spend filter's, later, prices the request: the server
    #: middleware adds the cost when the span ends).
    order = -1000
    reads_relayed = False

    async def on_end(self, request: ChatRequest, exchange: Exchange, outcome: Outcome) -> None:
        span = _server(exchange)
        if span is None or span._sink is None:  # none, or not recording
            return
        principal = exchange.principal
        span.asked = (
            request.model,
            request.max_tokens,
            request.temperature,
            request.top_p,
            principal.name if principal.id != "anonymous" else None,
        )
        usage = outcome.usage
        span.answered = (
            # The model it was routed to (none: refused before routing, nothing answered).
            request.upstream_model,
            outcome.status,
            None if usage is None else usage.input_tokens,
            None if usage is None else usage.output_tokens,
        )


class ContentTracingFilter(TracingFilter):
    """:class:`TracingFilter` that also records the prompt and the answer (opted in)."""

    reads_relayed = True

    async def on_request(self, request: ChatRequest, exchange: Exchange) -> ChatRequest | None:
        span = _server(exchange)
        if span is not None:
            span.set_attribute("gen_ai.input.messages", _messages(request.messages))
        return None

    async def on_success(
        self, request: ChatRequest, response: ChatResponse, exchange: Exchange
    ) -> None:
        span = _server(exchange)
        if span is not None:
            span.set_attribute("gen_ai.output.messages", _messages([response.message]))
            span.set_attribute("gen_ai.response.finish_reasons", [response.finish_reason])


def _messages(messages: Any) -> str:
    out = []
    for m in messages:
        parts = []
        for p in m.parts:
            text = getattr(p, "text", None)
            if text is not None:
                parts.append({"type": "text", "content": text})
            elif hasattr(p, "arguments") and hasattr(p, "name"):
                parts.append({"type": "tool_call", "name": p.name, "arguments": p.arguments})
            else:
                parts.append({"type": type(p).__name__})
        out.append({"role": m.role, "parts": parts})
    return orjson.dumps(out).decode()


def _server(ex: Exchange) -> RequestSpan | None:
    notes = ex.notes
    return notes.get(SERVER) if notes is not None else None


class TracedAttempts(Attempts):
    """A client span around each upstream attempt (an agent's steps included: each is one),
    an internal one around an agent's run and each of its tool calls; the attempt's trace
    context goes to the upstream in ``traceparent``.

    An attempt made right under the request's span (not an agent's step) is not a span object
    of its own: its facts are kept in the request's (:meth:`RequestSpan.attempt`), and the
    exporter process makes its span."""

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer

    def _start(self, backend: Backend, request: ChatRequest, ex: Exchange) -> Span | None:
        """The attempt's span, or ``None`` when its trace is not sampled: then no span is made
        and the upstream gets the request's context."""
        parent = _parent(ex)
        if parent is not None and parent._sink is None:
            if ex.trace_context is None:
                ex.trace_context = (parent.trace_id, parent.span_id, parent.flags, parent.state)
            return None
        model = request.upstream_model or request.model
        agent = backend.kind == "agent"
        operation = "invoke_agent" if agent else "chat"
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "gen_ai.request.model": model,
            # OpenTelemetry's provider names are the backend kinds ("openai", "anthropic").
            "gen_ai.provider.name": backend.kind,
            "hookgate.backend": backend.label,
        }
        if agent:
            attributes["gen_ai.agent.name"] = backend.name
        if request.max_tokens is not None:
            attributes["gen_ai.request.max_tokens"] = request.max_tokens
        name = f"{operation} {backend.name if agent else model}"
        kind = _INTERNAL if agent else _CLIENT
        span = self.tracer.child(parent, name, kind, attributes)
        ex.trace_context = (span.trace_id, span.span_id, span.flags, span.state)
        return span

    async def complete(self, backend: Backend, request: ChatRequest, ex: Exchange) -> ChatResponse:
        server = _under(ex, backend)
        if server is not None:
            # Right under the request's span: the attempt's facts are kept in it.
            span_id = _getrandbits(64) or 1
            ex.trace_context = (server.trace_id, span_id, server.flags, server.state)
            start = _time_ns()
            try:
                resp = await backend.complete(request, ex)
            except BaseException as err:
                server.attempt(_attempt(span_id, start, backend, request, None, err, None))
                raise
            server.attempt(_attempt(span_id, start, backend, request, resp.usage, None, None, resp))
            return resp
        span = self._start(backend, request, ex)
        if span is None:
            return await backend.complete(request, ex)
        # Only an agent's steps and tool calls hang under an attempt's span: other backends
        # answer without the exchange's parent being swapped (and swapped back).
        agent = backend.kind == "agent"
        previous = _swap_parent(ex, span) if agent else None
        try:
            resp = await backend.complete(request, ex)
        except BaseException as err:
            _failed(span, err)
            raise
        else:
            if span._sink is not None:
                attributes = span.attributes
                attributes["gen_ai.response.model"] = resp.model
                attributes["gen_ai.response.finish_reasons"] = [resp.finish_reason]
                usage = resp.usage
                if usage is not None:
                    attributes["gen_ai.usage.input_tokens"] = usage.input_tokens
                    attributes["gen_ai.usage.output_tokens"] = usage.output_tokens
            return resp
        finally:
            if agent:
                _swap_parent(ex, previous)
            span.end()

    async def stream(
        self, backend: Backend, request: ChatRequest, ex: Exchange
    ) -> AsyncGenerator[Event, None]:
        server = _under(ex, backend)
        if server is not None:
            stream_reads = backend._stream_reads
            reads = (
                stream_reads(request, ex)
                if stream_reads is not None
                else _one_by_one(backend.stream(request, ex))
            )
            async with aclosing(_observed(server, reads, backend, request, ex)) as batches:
                async for batch in batches:
                    for ev in batch:
                        yield ev
            return
        span = self._start(backend, request, ex)
        if span is None:
            async with aclosing(backend.stream(request, ex)) as events:
                async for ev in events:
                    yield ev
            return
        previous = _swap_parent(ex, span)
        try:
            async for ev in backend.stream(request, ex):
                if type(ev) is UsageEvent:
                    _set_usage(span, ev.usage)
                elif type(ev) is Error:
                    _failed(span, ev.error)
                yield ev
        except GeneratorExit:
            span.set_attribute("hookgate.outcome", "client_gone")
            raise
        except BaseException as err:
            _failed(span, err)
            raise
        finally:
            _swap_parent(ex, previous)
            span.end()

    def reads(
        self, backend: Backend, request: ChatRequest, ex: Exchange
    ) -> AsyncGenerator[list[Event], None] | None:
        stream_reads = backend._stream_reads
        if stream_reads is None:
            return None
        server = _under(ex, backend)
        if server is None:
            return None
        return _observed(server, stream_reads(request, ex), backend, request, ex)

    async def tool(self, name: str, call_id: str, run: Awaitable[T], ex: Exchange) -> T:
        parent = _parent(ex)
        if parent is not None and not parent.is_recording():
            return await run
        span = self.tracer.child(
            parent,
            f"execute_tool {name}",
            _INTERNAL,
            {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": name,
                "gen_ai.tool.call.id": call_id,
            },
        )
        try:
            result = await run
        except BaseException as err:
            _failed(span, err)
            raise
        else:
            if getattr(result, "is_error", False):
                span.set_attribute("error.type", "tool_error")
                span.set_error()
            return result
        finally:
            span.end()


def _under(ex: Exchange, backend: Backend) -> RequestSpan | None:
    """The request's span when an attempt at ``backend`` is kept in it: the attempt hangs right
    under it (not under an agent's run), is not an agent's run itself, and the request's span
    is recording."""
    notes = ex.notes
    if notes is None or backend.kind == "agent" or notes.get(PARENT) is not None:
        return None
    server: RequestSpan | None = notes.get(SERVER)
    return server if server is not None and server._sink is not None else None


async def _observed(
    server: RequestSpan,
    reads: AsyncGenerator[list[Event], None],
    backend: Backend,
    request: ChatRequest,
    ex: Exchange,
) -> AsyncGenerator[list[Event], None]:
    """An attempt's stream (``reads``: lists of events) passed on, its facts kept in the
    request's span at its end. Its context goes to the upstream before the stream starts."""
    span_id = _getrandbits(64) or 1
    ex.trace_context = (server.trace_id, span_id, server.flags, server.state)
    start = _time_ns()
    usage = None
    failure: BaseException | None = None
    outcome = None
    try:
        async with aclosing(reads) as batches:
            async for batch in batches:
                for ev in batch:
                    if type(ev) is UsageEvent:
                        usage = ev.usage
                    elif type(ev) is Error:
                        failure = ev.error
                yield batch
    except GeneratorExit:
        outcome = "client_gone"
        raise
    except BaseException as err:
        failure = err
        raise
    finally:
        server.attempt(_attempt(span_id, start, backend, request, usage, failure, outcome))


async def _one_by_one(events: AsyncGenerator[Event, None]) -> AsyncGenerator[list[Event], None]:
    """``events`` as lists of one."""
    async with aclosing(events) as each:
        async for ev in each:
            yield [ev]


def _attempt(
    span_id: int,
    start: int,
    backend: Backend,
    request: ChatRequest,
    usage: Any,
    failure: BaseException | None,
    outcome: str | None,
    answer: ChatResponse | None = None,
) -> tuple[Any, ...]:
    """An attempt's facts (``exporter.ATTEMPT``), at its end: ``answer`` when it answered
    whole, ``usage`` what it reported, ``failure`` why it failed, ``outcome`` ``client_gone``
    when its stream was closed early."""
    kind, description = (None, None) if failure is None else _failure(failure)
    return (
        span_id,
        start,
        _time_ns(),
        backend.kind,
        backend.label,
        request.upstream_model or request.model,
        request.max_tokens,
        None if answer is None else answer.model,
        None if answer is None else answer.finish_reason,
        None if usage is None else usage.input_tokens,
        None if usage is None else usage.output_tokens,
        kind,
        0 if failure is None else _ERROR,
        description,
        outcome,
    )


def _swap_parent(ex: Exchange, span: Span | None) -> Span | None:
    notes = ex.notes
    if notes is None:
        ex.notes = {PARENT: span}
        return None
    previous: Span | None = notes.get(PARENT)
    notes[PARENT] = span
    return previous
