"""Spans: the server span of a request, a client span per upstream attempt, agent steps and
tool calls, named and described as OpenTelemetry's GenAI semantic conventions say.

The server span continues the caller's W3C trace context (``traceparent``); each upstream
attempt passes its own span's context on to the upstream. Prompt and answer content is added
(``gen_ai.input.messages``, ``gen_ai.output.messages``) only when opted in.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from aiohttp import web
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
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
)

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

log = logging.getLogger(__name__)
T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PROPAGATOR = TraceContextTextMapPropagator()


class _SpanKey:
    """The exchange note holding the request's server span."""


class _ParentKey:
    """The exchange note holding the span new spans of this request hang under."""


SERVER = _SpanKey()
PARENT = _ParentKey()


def _provider_name(backend: Backend) -> str:
    return {"openai": "openai", "anthropic": "anthropic"}.get(backend.kind, backend.kind)


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


def _failed(span: Span, err: BaseException) -> None:
    kind = err.kind if isinstance(err, GatewayError) else type(err).__qualname__
    span.set_attribute("error.type", kind)
    span.set_status(Status(StatusCode.ERROR, str(err) if isinstance(err, GatewayError) else None))


def server_middleware(tracer: Tracer) -> Callable[..., Awaitable[web.StreamResponse]]:
    """The server span of every request (after the exchange is made, before authentication)."""

    @web.middleware
    async def traced(request: web.Request, handler: Handler) -> web.StreamResponse:
        ex = request[EXCHANGE]
        context = PROPAGATOR.extract(request.headers)
        route = ex.route.name
        # Not made the current span (attaching a context costs, and nothing here reads it):
        # the exchange carries it to the filter and the attempts.
        span = tracer.start_span(
            f"{request.method} {route}",
            context=context,
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": request.method,
                "url.path": request.path,
                "http.route": route,
                "hookgate.request_id": ex.request_id,
            },
        )
        ex.note(SERVER, span)
        try:
            resp = await handler(request)
        except GatewayError as err:
            span.set_attribute("http.response.status_code", err.status)
            if err.status >= 500:
                _failed(span, err)
            else:
                span.set_attribute("error.type", err.kind)
            raise
        except BaseException as exc:
            _failed(span, exc)
            raise
        else:
            span.set_attribute("http.response.status_code", resp.status)
            if resp.status >= 500:
                span.set_status(Status(StatusCode.ERROR))
            return resp
        finally:
            span.end()

    return traced


class TracingFilter(Filter):
    """Describes the request's server span as a GenAI operation (``chat <model>``)."""

    name = "telemetry"
    #: First: the span says what was asked even when a later filter refuses it.
    order = -1000
    reads_relayed = False

    async def on_request(self, request: ChatRequest, exchange: Exchange) -> ChatRequest | None:
        span = _server(exchange)
        if span is None or not span.is_recording():
            return None
        span.update_name(f"chat {request.model}")
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": request.model,
        }
        for name, value in (
            ("gen_ai.request.max_tokens", request.max_tokens),
            ("gen_ai.request.temperature", request.temperature),
            ("gen_ai.request.top_p", request.top_p),
        ):
            if value is not None:
                attributes[name] = value
        if exchange.principal.id != "anonymous":
            attributes["hookgate.principal"] = exchange.principal.name
        span.set_attributes(attributes)
        return None

    async def on_end(self, request: ChatRequest, exchange: Exchange, outcome: Outcome) -> None:
        span = _server(exchange)
        if span is None or not span.is_recording():
            return
        attributes: dict[str, Any] = {
            "gen_ai.response.model": request.upstream_model or request.model,
            "hookgate.outcome": outcome.status,
        }
        usage = outcome.usage
        if usage is not None:
            attributes["gen_ai.usage.input_tokens"] = usage.input_tokens
            attributes["gen_ai.usage.output_tokens"] = usage.output_tokens
        if exchange.cost is not None:
            attributes["hookgate.cost_usd"] = exchange.cost
        span.set_attributes(attributes)


class ContentTracingFilter(TracingFilter):
    """:class:`TracingFilter` that also records the prompt and the answer (opted in)."""

    reads_relayed = True

    async def on_request(self, request: ChatRequest, exchange: Exchange) -> ChatRequest | None:
        await super().on_request(request, exchange)
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


def _server(ex: Exchange) -> Span | None:
    notes = ex.notes
    return notes.get(SERVER) if notes is not None else None


class TracedAttempts(Attempts):
    """A client span around each upstream attempt (an agent's steps included: each is one),
    an internal one around an agent's run and each of its tool calls; the attempt's trace
    context goes to the upstream in ``traceparent``."""

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer

    def _start(self, backend: Backend, request: ChatRequest, ex: Exchange) -> Span | None:
        """The attempt's span, or ``None`` when its trace is not sampled: then no span is made
        (the SDK's unsampled spans still cost), and the upstream gets the request's context."""
        parent = _parent(ex)
        if parent is not None and not parent.is_recording():
            if ex.upstream_headers is None or "traceparent" not in ex.upstream_headers:
                carrier: dict[str, str] = {}
                PROPAGATOR.inject(carrier, context=trace.set_span_in_context(parent))
                ex.upstream_headers = {**(ex.upstream_headers or {}), **carrier}
            return None
        context = trace.set_span_in_context(parent) if parent is not None else None
        model = request.upstream_model or request.model
        agent = backend.kind == "agent"
        operation = "invoke_agent" if agent else "chat"
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "gen_ai.request.model": model,
            "gen_ai.provider.name": _provider_name(backend),
            "hookgate.backend": backend.label,
        }
        if agent:
            attributes["gen_ai.agent.name"] = backend.name
        if request.max_tokens is not None:
            attributes["gen_ai.request.max_tokens"] = request.max_tokens
        span = self.tracer.start_span(
            f"{operation} {backend.name if agent else model}",
            context=context,
            kind=SpanKind.INTERNAL if agent else SpanKind.CLIENT,
            attributes=attributes,
        )
        headers: dict[str, str] = {}
        PROPAGATOR.inject(headers, context=trace.set_span_in_context(span))
        ex.upstream_headers = {**(ex.upstream_headers or {}), **headers}
        return span

    async def complete(self, backend: Backend, request: ChatRequest, ex: Exchange) -> ChatResponse:
        span = self._start(backend, request, ex)
        if span is None:
            return await backend.complete(request, ex)
        previous = _swap_parent(ex, span)
        try:
            resp = await backend.complete(request, ex)
        except BaseException as err:
            _failed(span, err)
            raise
        else:
            if span.is_recording():
                span.set_attributes(
                    {
                        "gen_ai.response.model": resp.model,
                        "gen_ai.response.finish_reasons": [resp.finish_reason],
                    }
                )
                _set_usage(span, resp.usage)
            return resp
        finally:
            _swap_parent(ex, previous)
            span.end()

    async def stream(
        self, backend: Backend, request: ChatRequest, ex: Exchange
    ) -> AsyncGenerator[Event, None]:
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

    async def tool(self, name: str, call_id: str, run: Awaitable[T], ex: Exchange) -> T:
        parent = _parent(ex)
        if parent is not None and not parent.is_recording():
            return await run
        context = trace.set_span_in_context(parent) if parent is not None else None
        with self.tracer.start_as_current_span(
            f"execute_tool {name}",
            context=context,
            kind=SpanKind.INTERNAL,
            record_exception=False,
            set_status_on_exception=False,
            attributes={
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": name,
                "gen_ai.tool.call.id": call_id,
            },
        ) as span:
            try:
                result = await run
            except BaseException as err:
                _failed(span, err)
                raise
            if getattr(result, "is_error", False):
                span.set_attribute("error.type", "tool_error")
                span.set_status(Status(StatusCode.ERROR))
            return result


def _swap_parent(ex: Exchange, span: Span | None) -> Span | None:
    notes = ex.notes
    previous: Span | None = notes.get(PARENT) if notes is not None else None
    ex.note(PARENT, span)
    return previous
