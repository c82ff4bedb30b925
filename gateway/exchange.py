"""Per-request state: who is calling, which route and model, and where the time went.

The first middleware creates one :class:`Exchange` per request and stores it under
:data:`EXCHANGE`; every later step (auth, the pipeline, backends, metrics) reads and fills it.
"""

from __future__ import annotations

import time
from binascii import hexlify
from typing import TYPE_CHECKING, Any

import attrs
from aiohttp import web

if TYPE_CHECKING:
    from gateway.canonical import Usage
    from gateway.protocols.base import ProtocolAdapter


@attrs.frozen
class Principal:
    """An authenticated caller. ``id`` scopes its data (sessions, limits); it is never the key.

    ``rpm`` and ``tpm`` are the caller's own request and token limits per minute (``None``: the
    ``[limits]`` defaults apply; ``0``: no limit).
    """

    id: str
    name: str
    models: frozenset[str] | None = None
    attributes: dict[str, Any] = attrs.Factory(dict)
    rpm: int | None = None
    tpm: int | None = None

    def may_use(self, model: str) -> bool:
        return self.models is None or model in self.models


#: The caller when no authenticator is enabled (an open gateway).
ANONYMOUS = Principal(id="anonymous", name="anonymous")


@attrs.frozen
class RouteInfo:
    """What the gateway knows about a route, compiled at startup.

    ``protocol`` shapes its errors; ``auth`` says whether a key is needed; ``query_token`` lets
    browsers pass the key as ``?token=`` (EventSource cannot set headers).
    """

    name: str
    protocol: ProtocolAdapter | None = None
    auth: bool = True
    query_token: bool = False


#: Routes the gateway did not add (unknown paths, 405s) are reported under this name.
UNKNOWN_ROUTE = RouteInfo("unmatched", auth=False)


@attrs.define(slots=True)
class Exchange:
    """One request's passage through the gateway."""

    request_id: str
    route: RouteInfo
    started: float = attrs.Factory(time.perf_counter)
    principal: Principal = ANONYMOUS
    #: The public model name, once routed.
    model: str = ""
    #: ``"<kind>:<name>"`` of the backend that answers, once routed.
    backend: str = ""
    #: ``"<kind>:<name>/<upstream model>"`` of the target that answered (or answers).
    served: str = ""
    #: Upstream attempts made for this request (retries and fallbacks included).
    attempts: int = 0
    #: Seconds spent waiting on upstreams (a backend adds to it).
    upstream_seconds: float = 0.0
    #: Seconds from arrival to the first byte of a streamed body.
    first_byte: float | None = None
    stream: bool = False
    usage: Usage | None = None
    #: What the request cost in USD, once known (the ``spend`` plugin prices it).
    cost: float | None = None
    upstream_failed: bool = False
    #: Bytes of this request's body counted against ``[server] max_bodies_in_flight``.
    body_held: int = 0
    #: Whether this request's body could not be read whole (its connection is not reused).
    body_broken: bool = False
    #: The HTTP request this exchange answers while it is handled (``None`` for runs started by
    #: triggers, and once the handler has returned).
    http: web.Request | None = None
    #: Headers the response to this exchange carries (a plugin's: ``x-ratelimit-*``).
    response_headers: dict[str, str] | None = None
    #: Headers every upstream request of this exchange carries (a plugin's), replacing the
    #: backend's of the same name; the request id and the trace context stay the gateway's.
    upstream_headers: dict[str, str] | None = None
    #: The W3C trace context upstream requests of this exchange are made under, set by a
    #: tracer: ``(trace id, span id, flags, trace state)``. HTTP backends send it as
    #: ``traceparent`` (and ``tracestate``): see :func:`trace_lines`, :func:`trace_headers`.
    trace_context: TraceContext | None = None
    #: What plugins keep for the rest of this request (a filter's ``on_request`` leaving what its
    #: ``on_success`` needs), keyed by an object the plugin owns; ``None`` until one is kept.
    notes: dict[Any, Any] | None = None

    def note(self, key: Any, value: Any) -> None:
        """Keep ``value`` under ``key`` in :attr:`notes` for the rest of the request."""
        if self.notes is None:
            self.notes = {key: value}
        else:
            self.notes[key] = value

    def gateway_seconds(self) -> float:
        """Time spent inside the gateway so far, upstream waits excluded."""
        return max(0.0, time.perf_counter() - self.started - self.upstream_seconds)


#: ``(trace id, span id, flags, trace state)``: see :attr:`Exchange.trace_context`.
TraceContext = tuple[int, int, int, str]

#: ``-xx``: the trace flags' part of a ``traceparent``, by value (and with its line's end).
_FLAGS = tuple(f"-{i:02x}" for i in range(256))
_FLAG_LINES = tuple(f"-{i:02x}\r\n".encode() for i in range(256))


def traceparent(trace_id: int, span_id: int, flags: int) -> str:
    """A W3C ``traceparent`` (ids in hex as bytes' ``hex()`` writes them: half the
    instructions of an f-string's ``032x``, on every upstream request of a traced request)."""
    return f"00-{trace_id.to_bytes(16).hex()}-{span_id.to_bytes(8).hex()}{_FLAGS[flags]}"


def trace_headers(context: TraceContext) -> dict[str, str]:
    """``context`` as request headers (``traceparent``, and ``tracestate`` when it has one)."""
    trace_id, span_id, flags, state = context
    headers = {"traceparent": traceparent(trace_id, span_id, flags)}
    if state:
        headers["tracestate"] = state
    return headers


def trace_lines(context: TraceContext) -> bytes:
    """:func:`trace_headers` as the request head's lines, written straight as bytes (on every
    upstream request of a traced request: a fifth of the instructions of making the headers
    and encoding them). A ``tracestate`` that would break the head is left out."""
    trace_id, span_id, flags, state = context
    line = b"traceparent: 00-%b-%b%b" % (
        hexlify(trace_id.to_bytes(16)),
        hexlify(span_id.to_bytes(8)),
        _FLAG_LINES[flags],
    )
    if state and state.isascii() and state.isprintable():
        return line + b"tracestate: " + state.encode() + b"\r\n"
    return line


EXCHANGE: web.RequestKey[Exchange] = web.RequestKey("hookgate.exchange", Exchange)
