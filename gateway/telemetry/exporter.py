"""The span exporter process: reads finished spans from its standard input and exports them with
OpenTelemetry's SDK (its OTLP/HTTP exporter, configured by the ``OTEL_*`` environment variables).

The gateway records each span as a plain tuple on the request path and hands them here in
batches (``tracing.SpanPipe``), so building the SDK's spans, encoding them (protobuf) and sending
them take no time from requests: they run in this process, on another core, under a GIL of
their own. Started as ``python gateway/core/sidecar.py exporter.py VERSION [PRIORITY]``, by path
(it imports nothing of the gateway: see :mod:`gateway.core.sidecar`); with PRIORITY ``idle`` (the gateway's
default) it keeps to Linux's idle scheduling class while it keeps up
(:class:`gateway.core.sidecar.Turns`).

Frames on stdin (:func:`gateway.core.sidecar.frame`), each a list of records: a span
(:data:`FIELDS`), or a request (:data:`REQUEST_FIELDS`), the facts of its server span and of the upstream
attempts made right under it, which :func:`spans` makes into those spans here.
At end of input what is left is exported and the exporter shut down (flushed).

Encoding: the SDK's OTLP encoder builds a protobuf object per span and per attribute (about
40 us a span); :class:`Encoder` writes the same ``ExportTraceServiceRequest`` bytes straight
from the records (a few us a span; the attribute lines that repeat, kept; a request's record
written from its facts, :meth:`Encoder.fields`: about 30,000 instructions a span, 2 to 4 us,
its own fields written as parts of one join), and the SDK
exporter's HTTP client sends them (endpoint, headers, compression, retries and timeout as the
``OTEL_EXPORTER_OTLP_*`` variables say). The bytes decode to what the SDK's encoder makes of
the same spans (``tests/unit/test_span_export.py`` compares them). Should an SDK release lack
that client, the SDK's own ``export`` (and encoder) is used.
"""

from __future__ import annotations

import logging
import os
import struct
import sys
from collections.abc import Callable, Mapping
from typing import Any, BinaryIO

if __package__:
    from gateway import sidecar
else:  # started through gateway/core/sidecar.py, by path (see there)
    sidecar = sys.modules["hookgate_sidecar"]

log = logging.getLogger("hookgate.span_exporter")

#: A record's fields, in order.
FIELDS = (
    "name",
    "kind",  # opentelemetry.trace.SpanKind value
    "trace_id",
    "span_id",
    "parent_id",  # 0: a root span
    "parent_remote",
    "flags",
    "trace_state",  # W3C tracestate header value, "" when none
    "start",  # ns since the epoch
    "end",
    "attributes",
    "status",  # opentelemetry.trace.StatusCode value
    "description",
)


#: The first field of a request's record (a span's is its name, a string).
REQUEST = 0
#: A request's record's fields, in order.
REQUEST_FIELDS = (
    "marker",  # REQUEST
    "trace_id",
    "span_id",
    "parent_id",
    "parent_remote",
    "flags",
    "trace_state",
    "start",
    "end",
    "method",  # http.request.method
    "path",  # url.path
    "route",  # http.route
    "request_id",  # hookgate.request_id
    "name",  # the span's name when set; else "chat <model>" (asked) or "<method> <route>"
    "status_code",  # http.response.status_code, or None
    "status",
    "description",
    "cost",  # hookgate.cost_usd, or None
    "asked",  # ASKED, or None
    "answered",  # ANSWERED, or None
    "attempts",  # a list of ATTEMPT, or None
    "attributes",  # the others
)
#: What was asked (the pipeline's request), in order.
ASKED = ("model", "max_tokens", "temperature", "top_p", "principal")
#: How it ended, in order.
ANSWERED = ("response_model", "outcome", "input_tokens", "output_tokens")  # model: or None
#: An upstream attempt's facts, in order.
ATTEMPT = (
    "span_id",
    "start",
    "end",
    "provider",  # gen_ai.provider.name: the backend's kind
    "backend",  # hookgate.backend: its label
    "model",  # gen_ai.request.model: the upstream model
    "max_tokens",
    "response_model",  # or None
    "finish_reason",  # or None
    "input_tokens",  # or None
    "output_tokens",  # or None
    "error_type",  # or None
    "status",
    "description",
    "outcome",  # "client_gone" when its stream was closed early, else None
)
_SERVER_KIND, _CLIENT_KIND = 1, 2  # opentelemetry.trace.SpanKind values


def spans_of(record: tuple[Any, ...]) -> int:
    """How many spans ``record`` holds."""
    if record[0] != REQUEST:
        return 1
    attempts = record[20]
    return 1 + len(attempts) if attempts else 1


def name_of(record: tuple[Any, ...]) -> str:
    """The name of the (server) span of ``record``."""
    if record[0] != REQUEST:
        return str(record[0])
    name, asked = record[13], record[18]
    if name:
        return str(name)
    return f"chat {asked[0]}" if asked else f"{record[9]} {record[11]}"


def attempt_span(
    trace_id: int, parent_id: int, flags: int, state: str, facts: tuple[Any, ...]
) -> tuple[Any, ...]:
    """The client span (:data:`FIELDS`) of an attempt's facts (:data:`ATTEMPT`)."""
    (span_id, start, end, provider, backend, model, max_tokens, response_model) = facts[:8]
    (finish, input_tokens, output_tokens, error, status, description, outcome) = facts[8:]
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": model,
        "gen_ai.provider.name": provider,
        "hookgate.backend": backend,
    }
    if max_tokens is not None:
        attributes["gen_ai.request.max_tokens"] = max_tokens
    if response_model is not None:
        attributes["gen_ai.response.model"] = response_model
    if finish is not None:
        attributes["gen_ai.response.finish_reasons"] = [finish]
    if input_tokens is not None:
        attributes["gen_ai.usage.input_tokens"] = input_tokens
        attributes["gen_ai.usage.output_tokens"] = output_tokens
    if error is not None:
        attributes["error.type"] = error
    if outcome is not None:
        attributes["hookgate.outcome"] = outcome
    return (
        f"chat {model}",
        _CLIENT_KIND,
        trace_id,
        span_id,
        parent_id,
        False,
        flags,
        state,
        start,
        end,
        attributes,
        status,
        description,
    )


def spans(record: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """The spans (:data:`FIELDS`) of a record: itself when it is one, else its request's server
    span after the client spans of its attempts (which ended first)."""
    if record[0] != REQUEST:
        return [record]
    (_, trace_id, span_id, parent_id, remote, flags, state, start, end) = record[:9]
    (method, path, route, request_id, _name, status_code, status, description) = record[9:17]
    (cost, asked, answered, attempts, others) = record[17:]
    out = [attempt_span(trace_id, span_id, flags, state, a) for a in attempts or ()]
    attributes: dict[str, Any] = {
        "http.request.method": method,
        "url.path": path,
        "http.route": route,
        "hookgate.request_id": request_id,
    }
    if asked:
        model, max_tokens, temperature, top_p, principal = asked
        attributes["gen_ai.operation.name"] = "chat"
        attributes["gen_ai.request.model"] = model
        if max_tokens is not None:
            attributes["gen_ai.request.max_tokens"] = max_tokens
        if temperature is not None:
            attributes["gen_ai.request.temperature"] = temperature
        if top_p is not None:
            attributes["gen_ai.request.top_p"] = top_p
        if principal is not None:
            attributes["hookgate.principal"] = principal
    if status_code is not None:
        attributes["http.response.status_code"] = status_code
    if others:
        attributes.update(others)
    if answered:
        response_model, outcome, input_tokens, output_tokens = answered
        if response_model is not None:
            attributes["gen_ai.response.model"] = response_model
        attributes["hookgate.outcome"] = outcome
        if input_tokens is not None:
            attributes["gen_ai.usage.input_tokens"] = input_tokens
            attributes["gen_ai.usage.output_tokens"] = output_tokens
    if cost is not None:
        attributes["hookgate.cost_usd"] = cost
    name = name_of(record)
    out.append(
        (
            name,
            _SERVER_KIND,
            trace_id,
            span_id,
            parent_id,
            remote,
            flags,
            state,
            start,
            end,
            attributes,
            status,
            description,
        )
    )
    return out


# --- protobuf, written by hand -----------------------------------------------------------------

_FIXED64 = struct.Struct("<Q").pack
_DOUBLE = struct.Struct("<d").pack
_SMALL = [bytes((i,)) for i in range(128)]
_INT64 = (1 << 64) - 1


def _varint(n: int) -> bytes:
    if n < 128:
        return _SMALL[n]
    out = bytearray()
    while n > 127:
        out.append((n & 127) | 128)
        n >>= 7
    out.append(n)
    return bytes(out)


def _len(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field."""
    n = len(payload)
    return tag + (_SMALL[n] if n < 128 else _varint(n)) + payload


def any_value(value: Any) -> bytes:
    """An ``AnyValue`` message (as the SDK's encoder makes it)."""
    if value is None:
        return b""
    if value is True or value is False:
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _len(b"\x0a", value.encode())
    if isinstance(value, int):
        return b"\x18" + _varint(value & _INT64)
    if isinstance(value, float):
        return b"\x21" + _DOUBLE(value)
    if isinstance(value, bytes):
        return _len(b"\x3a", value)
    if isinstance(value, list | tuple):
        return _len(b"\x2a", b"".join(_len(b"\x0a", any_value(v)) for v in value))
    if isinstance(value, Mapping):
        return _len(
            b"\x32", b"".join(_len(b"\x0a", key_value(str(k), v)) for k, v in value.items())
        )
    raise TypeError(f"invalid attribute value type {type(value).__name__}")


def key_value(key: str, value: Any) -> bytes:
    """A ``KeyValue`` message."""
    return _len(b"\x0a", key.encode()) + _len(b"\x12", any_value(value))


#: Types of the values a part of a request is kept under (see ``Encoder._kept``): strings and
#: ``None``; integers too where the lookup checks the value's type first (``True``, ``1`` and
#: ``1.0`` are one key to a dict).
_TEXT = frozenset((str, type(None)))
_KEYS = _TEXT | {int}


def _status(status: int, description: str | None) -> bytes:
    """A span's ``status`` field (always there, as the SDK's encoder has it, empty when unset):
    message, then code."""
    if description or status:
        st = (_len(b"\x12", description.encode()) if description else b"") + (
            b"\x18" + _SMALL[status] if status else b""
        )
        return _len(b"\x7a", st)
    return b"\x7a\x00"


def _cost_head() -> bytes:
    """The ``hookgate.cost_usd`` attribute's field up to its double's eight bytes."""
    kv = _len(b"\x0a", b"hookgate.cost_usd") + b"\x12\x09\x21"
    return b"\x4a" + _varint(len(kv) + 8) + kv


#: A cost's whole field but its value (a double: the same length whatever it is).
_COST_HEAD = _cost_head()
#: What comes before a request id's bytes in its attribute's field, but the lengths; and how
#: many bytes its key-value holds besides the id's (the key, the value's tag and length, the
#: string's tag and length).
_RID_KEY = _len(b"\x0a", b"hookgate.request_id") + b"\x12"
_RID_OVER = len(_RID_KEY) + 3

#: A span's flags: SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE, and ..._IS_REMOTE when the parent is.
_FLAGS_REMOTE = b"\x85\x01\x00\x03\x00\x00"
_FLAGS_LOCAL = b"\x85\x01\x00\x01\x00\x00"
#: A span's status when unset, then its flags: the common end.
_UNSET_REMOTE = _status(0, None) + _FLAGS_REMOTE
_UNSET_LOCAL = _status(0, None) + _FLAGS_LOCAL


class Encoder:
    """Records to an ``ExportTraceServiceRequest``, its resource and scope those of
    :class:`Builder`."""

    #: Values remembered per attribute name at most: past that (ids, say), they are not.
    KEPT = 64
    #: Span names remembered at most.
    NAMES = 1024

    def __init__(self, builder: Builder) -> None:
        resource = b"".join(
            _len(b"\x0a", key_value(k, v)) for k, v in builder.resource.attributes.items()
        )
        scope = _len(b"\x0a", builder.scope.name.encode())
        if builder.scope.version:
            scope += _len(b"\x12", builder.scope.version.encode())
        self._resource = _len(b"\x0a", resource)
        self._scope = _len(b"\x0a", scope)
        #: name -> value -> (its type, the attribute's field): strings, booleans and integers,
        #: whose values repeat from span to span (a model, a status, a token count); the type
        #: tells ``1`` from ``True``, which a dict takes for the same key. Floats are not kept
        #: (``0.0`` and ``-0.0`` are one key too; a cost seldom repeats).
        self._fields: dict[str, dict[Any, tuple[type, bytes]]] = {}
        #: name -> its ``KeyValue.key`` field (numbers' fields are made around it)
        self._keys: dict[str, bytes] = {}
        #: span name -> its ``Span.name`` field (``chat <model>``: a few, repeating)
        self._names: dict[str, bytes] = {}
        #: A request's parts that repeat (see :meth:`fields`): (method, path, route), (model,
        #: max_tokens) asked, (response model, outcome), and an attempt's (model, provider,
        #: backend, max_tokens) -> their attributes' fields (an attempt's: its name's too).
        self._wheres: dict[tuple[Any, ...], bytes] = {}
        self._asks: dict[tuple[Any, ...], tuple[bytes, bytes]] = {}
        self._answers: dict[tuple[Any, ...], bytes] = {}
        self._targets: dict[tuple[Any, ...], tuple[bytes, bytes]] = {}
        #: finish reason -> its ``gen_ai.response.finish_reasons`` field
        self._finishes: dict[str, bytes] = {}

    def _attribute(self, key: str, value: Any) -> bytes:
        """An attribute's field, kept (see ``_fields``) for the next span with that value."""
        kind = type(value)
        if kind is int or kind is float:
            head = self._keys.get(key)
            if head is None:
                head = self._keys[key] = _len(b"\x0a", key.encode())
            if kind is float:
                kv = head + b"\x12\x09\x21" + _DOUBLE(value)
                return b"\x4a" + _varint(len(kv)) + kv
            number = _varint(value & _INT64)
            kv = head + b"\x12" + _SMALL[len(number) + 1] + b"\x18" + number
            field = b"\x4a" + _varint(len(kv)) + kv
        elif kind is str or kind is bool:
            field = _len(b"\x4a", key_value(key, value))
        else:
            return _len(b"\x4a", key_value(key, value))
        values = self._fields.get(key)
        if values is None:
            values = self._fields[key] = {}
        if len(values) < self.KEPT and value not in values:
            values[value] = (kind, field)
        return field

    def span(self, record: tuple[Any, ...]) -> bytes:
        """A ``Span`` message."""
        (name, kind, trace_id, span_id, parent_id, remote, _flags, state) = record[:8]
        (start, end, attributes, status, description) = record[8:]
        out = [
            b"\x0a\x10",
            trace_id.to_bytes(16, "big"),
            b"\x12\x08",
            span_id.to_bytes(8, "big"),
        ]
        if state:
            out.append(_len(b"\x1a", state.encode()))
        if parent_id:
            out += (b"\x22\x08", parent_id.to_bytes(8, "big"))
        named = self._names.get(name)
        if named is None:
            named = _len(b"\x2a", name.encode())
            if len(self._names) < self.NAMES:
                self._names[name] = named
        out += (
            named,
            b"\x30",
            _SMALL[kind + 1],  # OTLP's SpanKind numbers: the API's plus one
            b"\x39",
            _FIXED64(start),
            b"\x41",
            _FIXED64(end),
        )
        # An attribute seen before with this value: its field as kept (the call is spared).
        fields = self._fields
        attribute = self._attribute
        for key, value in attributes.items():
            vtype = type(value)
            if vtype is str or vtype is int or vtype is bool:
                values = fields.get(key)
                if values is not None:
                    kept = values.get(value)
                    if kept is not None and kept[0] is vtype:
                        out.append(kept[1])
                        continue
            out.append(attribute(key, value))
        out.append(_status(status, description))
        out.append(_FLAGS_REMOTE if remote else _FLAGS_LOCAL)
        return b"".join(out)

    def request(self, records: list[tuple[Any, ...]]) -> bytes:
        """The ``ExportTraceServiceRequest`` of ``records`` (spans, :data:`FIELDS`; one
        resource, one scope)."""
        return self.joined([_len(b"\x12", self.span(r)) for r in records])

    def joined(self, fields: list[bytes]) -> bytes:
        """The ``ExportTraceServiceRequest`` of spans' fields (:meth:`fields`)."""
        resource_spans = self._resource + _len(b"\x12", self._scope + b"".join(fields))
        return _len(b"\x0a", resource_spans)

    def fields(self, record: tuple[Any, ...]) -> list[bytes]:
        """The ``ScopeSpans.spans`` fields of a record (:func:`spans`), in its spans' order:
        the same bytes as :meth:`span` makes of each. A request's record is written from its
        facts straight, the parts that repeat from request to request (its route, what was
        asked, the outcome; an attempt's model and backend) kept, without the spans' tuples
        and attribute dicts :func:`spans` makes."""
        if record[0] != REQUEST or record[21]:  # a span, or a request with attributes of
            # its own (they may replace the facts' attributes): as its spans.
            return [_len(b"\x12", self.span(r)) for r in spans(record)]
        (_, trace_id, span_id, parent_id, remote, _flags, state, start, end) = record[:9]
        (method, path, route, request_id, name, status_code, status, description) = record[9:17]
        (cost, asked, answered, attempts) = record[17:21]
        cached = self._cached
        trace = b"\x0a\x10" + trace_id.to_bytes(16, "big")
        # The trace state's field goes after the span's id.
        stated = _len(b"\x1a", state.encode()) if state else b""
        out = []
        if attempts:
            under = stated + b"\x22\x08" + span_id.to_bytes(8, "big")
            for facts in attempts:
                out.append(_len(b"\x12", self._attempt(trace, under, facts)))
        what = named = b""
        if asked:
            model, max_tokens, temperature, top_p, principal = asked
            # Only str, int and None look a part up: 1, 1.0 and True are one key to a dict.
            key = (model, max_tokens)
            found = self._asks.get(key) if type(max_tokens) in _KEYS else None
            if found is None:
                found = self._kept(
                    self._asks,
                    key,
                    (("gen_ai.operation.name", "chat"), ("gen_ai.request.model", model))
                    + (() if max_tokens is None else (("gen_ai.request.max_tokens", max_tokens),)),
                    f"chat {model}",
                    numbers=True,
                )
            named, what = found
            if temperature is not None:
                what += cached("gen_ai.request.temperature", temperature)
            if top_p is not None:
                what += cached("gen_ai.request.top_p", top_p)
            if principal is not None:
                what += cached("hookgate.principal", principal)
        if name:
            named = self._name(name)
        elif not asked:
            named = self._name(f"{method} {route}")
        where = self._wheres.get((method, path, route))
        if where is None:
            where = self._kept(
                self._wheres,
                (method, path, route),
                (("http.request.method", method), ("url.path", path), ("http.route", route)),
            )
        parts = [trace, b"\x12\x08", span_id.to_bytes(8, "big"), stated]
        if parent_id:
            parts += (b"\x22\x08", parent_id.to_bytes(8, "big"))
        parts += (named, b"\x30\x02\x39", _FIXED64(start), b"\x41", _FIXED64(end), where)
        rid = request_id.encode() if type(request_id) is str else None
        if rid is not None and len(rid) < 100:
            # A string attribute's field, its three lengths each one byte (see _string()).
            n = len(rid)
            parts += (
                b"\x4a",
                _SMALL[n + _RID_OVER],
                _RID_KEY,
                _SMALL[n + 2],
                b"\x0a",
                _SMALL[n],
                rid,
            )
        else:
            parts.append(self._string("hookgate.request_id", request_id))
        parts.append(what)
        if status_code is not None:
            parts.append(cached("http.response.status_code", status_code))
        if answered:
            response_model, outcome, input_tokens, output_tokens = answered
            how = self._answers.get((response_model, outcome))
            if how is None:
                how = self._kept(
                    self._answers,
                    (response_model, outcome),
                    (("gen_ai.response.model", response_model), ("hookgate.outcome", outcome))
                    if response_model is not None
                    else (("hookgate.outcome", outcome),),
                )
            parts.append(how)
            if input_tokens is not None:
                parts.append(cached("gen_ai.usage.input_tokens", input_tokens))
                parts.append(cached("gen_ai.usage.output_tokens", output_tokens))
        if cost is not None:
            if type(cost) is float:
                parts += (_COST_HEAD, _DOUBLE(cost))
            else:
                parts.append(cached("hookgate.cost_usd", cost))
        if status or description:
            parts.append(_status(status, description))
            parts.append(_FLAGS_REMOTE if remote else _FLAGS_LOCAL)
        else:
            parts.append(_UNSET_REMOTE if remote else _UNSET_LOCAL)
        out.append(_len(b"\x12", b"".join(parts)))
        return out

    def _attempt(self, trace: bytes, under: bytes, facts: tuple[Any, ...]) -> bytes:
        """An attempt's client span (:func:`attempt_span`), from its facts."""
        (span_id, start, end, provider, backend, model, max_tokens, response_model) = facts[:8]
        (finish, input_tokens, output_tokens, error, status, description, outcome) = facts[8:]
        cached = self._cached
        key = (model, provider, backend, max_tokens)
        head = self._targets.get(key) if type(max_tokens) in _KEYS else None
        if head is None:
            head = self._kept(
                self._targets,
                key,
                (
                    ("gen_ai.operation.name", "chat"),
                    ("gen_ai.request.model", model),
                    ("gen_ai.provider.name", provider),
                    ("hookgate.backend", backend),
                )
                + (() if max_tokens is None else (("gen_ai.request.max_tokens", max_tokens),)),
                f"chat {model}",
                numbers=True,
            )
        parts = [
            trace,
            b"\x12\x08",
            span_id.to_bytes(8, "big"),
            under,
            head[0],
            b"\x30\x03\x39",  # SpanKind CLIENT
            _FIXED64(start),
            b"\x41",
            _FIXED64(end),
            head[1],
        ]
        if response_model is not None:
            parts.append(cached("gen_ai.response.model", response_model))
        if finish is not None:
            reasons = self._finishes.get(finish)
            if reasons is None:
                reasons = self._attribute("gen_ai.response.finish_reasons", [finish])
                if type(finish) is str and len(self._finishes) < self.KEPT:
                    self._finishes[finish] = reasons
            parts.append(reasons)
        if input_tokens is not None:
            parts.append(cached("gen_ai.usage.input_tokens", input_tokens))
            parts.append(cached("gen_ai.usage.output_tokens", output_tokens))
        if error is not None:
            parts.append(cached("error.type", error))
        if outcome is not None:
            parts.append(cached("hookgate.outcome", outcome))
        if status or description:
            parts.append(_status(status, description))
            parts.append(_FLAGS_LOCAL)
        else:
            parts.append(_UNSET_LOCAL)
        return b"".join(parts)

    def _cached(self, key: str, value: Any) -> bytes:
        """An attribute's field: as kept when seen before with this value (and type)."""
        values = self._fields.get(key)
        if values is not None:
            kept = values.get(value)
            if kept is not None and kept[0] is type(value):
                return kept[1]
        return self._attribute(key, value)

    def _string(self, key: str, value: Any) -> bytes:
        """A string attribute's field, not kept (a value seen once: a request id)."""
        if type(value) is not str:
            return self._attribute(key, value)
        head = self._keys.get(key)
        if head is None:
            head = self._keys[key] = _len(b"\x0a", key.encode())
        data = value.encode()
        string = b"\x0a" + _varint(len(data)) + data
        kv = head + b"\x12" + _varint(len(string)) + string
        return b"\x4a" + _varint(len(kv)) + kv

    def _kept(
        self,
        kept: dict[Any, Any],
        key: tuple[Any, ...],
        attributes: tuple[tuple[str, Any], ...],
        name: str | None = None,
        numbers: bool = False,
    ) -> Any:
        """The fields of ``attributes``, one after the other, kept under
        ``key`` when the cache has room and its values are strings or ``None`` (integers too
        with ``numbers``: the caller looks an integer's part up only by an ``int``). With
        ``name``: that name's field, then the attributes'."""
        found: Any = b"".join(self._attribute(k, v) for k, v in attributes)
        if name is not None:
            found = (self._name(name), found)
        types = _KEYS if numbers else _TEXT
        if len(kept) < self.NAMES and all(type(v) in types for v in key):
            kept[key] = found
        return found

    def _name(self, name: str) -> bytes:
        """A span's ``name`` field (kept)."""
        named = self._names.get(name)
        if named is None:
            named = _len(b"\x2a", name.encode())
            if len(self._names) < self.NAMES:
                self._names[name] = named
        return named


class Builder:
    """Records to the SDK's finished spans (``ReadableSpan``)."""

    def __init__(self, version: str) -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        self.resource = Resource.create({"service.name": "hookgate", "service.version": version})
        self.scope = InstrumentationScope("hookgate", version)

    def span(self, record: tuple[Any, ...]) -> Any:
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.trace import SpanContext, SpanKind, TraceFlags, TraceState
        from opentelemetry.trace.status import Status, StatusCode

        (name, kind, trace_id, span_id, parent_id, remote, flags, state) = record[:8]
        (start, end, attributes, status, description) = record[8:]
        trace_state = TraceState.from_header([state]) if state else None
        context = SpanContext(trace_id, span_id, False, TraceFlags(flags), trace_state)
        parent = (
            SpanContext(trace_id, parent_id, remote, TraceFlags(flags), trace_state)
            if parent_id
            else None
        )
        return ReadableSpan(
            name=name,
            context=context,
            parent=parent,
            resource=self.resource,
            attributes=attributes,
            kind=SpanKind(kind),
            status=Status(StatusCode(status), description),
            start_time=start,
            end_time=end,
            instrumentation_scope=self.scope,
        )


def run(
    stream: BinaryIO,
    exporter: Any,
    builder: Builder,
    batch: int,
    idle: Callable[[bool], bool] | None = None,
) -> None:
    """Export what ``stream`` carries, ``batch`` spans a call at most, then shut down.

    With ``idle`` (:func:`gateway.core.sidecar.background`), the process keeps to the idle
    scheduling class while it keeps up (:class:`gateway.core.sidecar.Turns`): spans are late by
    about ``LATE`` at most when the machine is saturated, never held back for as long as it
    stays so."""
    client = getattr(exporter, "_client", None)
    send = getattr(client, "export", None) if client is not None else None
    encoder = Encoder(builder) if send is not None else None
    turns = sidecar.Turns(idle)
    try:
        for written, received in sidecar.frames(stream):
            turns.arrived(written)
            if encoder is not None:
                fields = [f for record in received for f in _fields(encoder, record)]
                for i in range(0, len(fields), batch):
                    _send(send, encoder, fields[i : i + batch])
            else:
                records = [span for record in received for span in _spans(record)]
                for i in range(0, len(records), batch):
                    chunk = records[i : i + batch]
                    exporter.export([s for s in (_built(builder, r) for r in chunk) if s])
            turns.handled()
    finally:
        exporter.shutdown()


def _spans(record: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    try:
        return spans(record)
    except Exception as exc:  # one bad record must not stop the others
        log.warning("record %r not exported: %s", record[:1], exc)
        return []


def _fields(encoder: Encoder, record: tuple[Any, ...]) -> list[bytes]:
    try:
        return encoder.fields(record)
    except Exception as exc:  # one bad span must not stop the others: one at a time
        log.warning("spans not encoded (%s): encoding one at a time", exc)
    fields = []
    for span in _spans(record):
        try:
            fields.append(_len(b"\x12", encoder.span(span)))
        except Exception as exc:
            log.warning("span %r not exported: %s", span[0], exc)
    return fields


def _send(send: Any, encoder: Encoder, fields: list[bytes]) -> None:
    result = send(encoder.joined(fields))
    if not getattr(result, "success", True):
        log.warning("%d spans not exported", len(fields))


def _built(builder: Builder, record: tuple[Any, ...]) -> Any:
    try:
        return builder.span(record)
    except Exception as exc:  # one bad record must not stop the others
        log.warning("span %r not exported: %s", record[0], exc)
        return None


def main() -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    logging.basicConfig(level=logging.WARNING, format="hookgate span exporter: %(message)s")
    version = sys.argv[1] if len(sys.argv) > 1 else ""
    idle = sidecar.background if len(sys.argv) > 2 and sys.argv[2] == "idle" else None
    try:
        batch = int(os.environ.get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE") or 512)
    except ValueError:
        batch = 512
    run(sys.stdin.buffer, OTLPSpanExporter(), Builder(version), max(1, batch), idle)


if __name__ == "__main__":
    main()
