"""Spans recorded on the request path as tuples, and the exporter process's side: the SDK spans
it builds from them, and the bound on what waits for it."""

from __future__ import annotations

import io
import time

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from gateway import sidecar
from gateway.canonical import ChatRequest, ChatResponse, Message, TextPart, Usage
from gateway.errors import UpstreamError
from gateway.telemetry.exporter import Builder, run, spans, spans_of
from gateway.telemetry.tracing import RequestSpan, Span, SpanPipe, _attempt

TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
PARENT = 0x00F067AA0BA902B7


def _frame(records: list[tuple[object, ...]], age: float = 0.0) -> bytes:
    """A frame of ``records`` as the gateway writes it, ``age`` seconds ago."""
    return sidecar.frame(records, time.monotonic_ns() - int(age * 1e9))


def test_records_become_the_sdk_spans_they_describe() -> None:
    pipe = SpanPipe("9.9", environ={})
    server = Span(pipe, "chat m", 1, TRACE_ID, PARENT, True, 1, "k=v", {"a": 1})
    server.set_attributes({"gen_ai.request.model": "m"})
    server.set_attribute("skipped", None)
    attempt = Span(pipe, "chat up", 2, TRACE_ID, server.span_id, False, 1, "k=v", {})
    attempt.set_error("upstream down")
    attempt.end()
    server.end()
    server.end()  # a second end records nothing
    stream = io.BytesIO(_frame(pipe._records[:1]) + _frame(pipe._records[1:]))
    exporter = InMemorySpanExporter()
    run(stream, exporter, Builder("9.9"), batch=1)
    first, second = exporter.get_finished_spans()
    assert (first.name, first.kind, first.parent.span_id) == (
        "chat up",
        SpanKind.CLIENT,
        server.span_id,
    )
    assert not first.parent.is_remote
    assert first.status.status_code == StatusCode.ERROR
    assert first.status.description == "upstream down"
    assert second.name == "chat m" and second.kind == SpanKind.SERVER
    assert second.context.trace_id == TRACE_ID and second.context.span_id == server.span_id
    assert second.parent.span_id == PARENT and second.parent.is_remote
    assert second.context.trace_state.to_header() == "k=v"
    assert dict(second.attributes) == {"a": 1, "gen_ai.request.model": "m"}
    assert second.resource.attributes["service.name"] == "hookgate"
    assert second.resource.attributes["service.version"] == "9.9"
    assert second.instrumentation_scope.name == "hookgate"
    assert second.end_time >= second.start_time > 0
    # The end of input shut the exporter down (what it held is flushed).
    assert exporter._stopped


def test_an_unsampled_span_records_nothing_but_carries_the_context() -> None:
    pipe = SpanPipe("1", environ={})
    span = Span(None, "chat m", 1, TRACE_ID, PARENT, True, 0, "", {})
    span.set_attribute("x", 1)
    span.end()
    assert not span.is_recording() and pipe._records == [] and span.attributes == {}
    assert span.headers() == {"traceparent": f"00-{TRACE_ID:032x}-{span.span_id:016x}-00"}


def test_spans_past_the_bound_are_dropped_and_counted() -> None:
    # Not started (no exporter process yet): spans wait, up to OTEL_BSP_MAX_QUEUE_SIZE.
    pipe = SpanPipe(
        "1", environ={"OTEL_BSP_MAX_QUEUE_SIZE": "3", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "3"}
    )
    for i in range(5):
        Span(pipe, f"s{i}", 0, TRACE_ID, 0, False, 1, "", {}).end()
    assert [r[0] for r in pipe._records] == ["s0", "s1", "s2"]
    assert (pipe.stats.sent, pipe.stats.dropped) == (0, 2)


def _records() -> list[tuple[object, ...]]:
    pipe = SpanPipe("2.0", environ={})
    server = Span(
        pipe,
        "chat gpt-test",
        1,
        TRACE_ID,
        PARENT,
        True,
        1,
        "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7",
        {"http.request.method": "POST", "gen_ai.request.max_tokens": 50},
    )
    server.set_attributes(
        {
            "gen_ai.request.temperature": 0.25,
            "hookgate.cost_usd": 1.5e-05,
            "flag": True,
            "off": False,
            "zero": 0,
            "negative": -3,
            "big": 2**40,
            "empty": "",
            "unicode": "héllo ☃",
            "gen_ai.response.finish_reasons": ["stop", None],
            "tuple": (1, 2),
            "nested": {"a": "b"},
        }
    )
    attempt = Span(pipe, "chat up-model", 2, TRACE_ID, server.span_id, False, 1, "", {})
    attempt.set_attributes({"gen_ai.provider.name": "openai", "error.type": "upstream"})
    attempt.set_error("Upstream said 500.")
    attempt.end()
    tool = Span(pipe, "execute_tool x", 0, 7, 0, False, 1, "", {"gen_ai.tool.name": "x"})
    tool.set_error()
    tool.end()
    server.end()
    return pipe._records


def test_the_spans_encoded_here_decode_as_the_sdks_encoding_of_them() -> None:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    from gateway.telemetry.exporter import Encoder

    records = _records()
    builder = Builder("2.0")
    sdk = encode_spans([builder.span(r) for r in records]).SerializeToString()
    encoder = Encoder(builder)
    ours = encoder.request(records)
    theirs, mine = ExportTraceServiceRequest(), ExportTraceServiceRequest()
    theirs.ParseFromString(sdk)
    mine.ParseFromString(ours)
    assert mine == theirs
    assert len(mine.resource_spans[0].scope_spans[0].spans) == 3
    assert ours == sdk  # byte for byte, even
    # Again: the fields the encoder kept from the first time make the same bytes.
    assert encoder.request(records) == sdk
    # Values a dict takes for one key (1, True, 1.0; 0.0 and -0.0), under one name, in turn.
    pipe = SpanPipe("2.0", environ={})
    for value in (1, True, 1.0, 0.0, -0.0, 0, False, 1, True, -0.0, "1"):
        Span(pipe, "chat m", 2, TRACE_ID, PARENT, False, 1, "", {"v": value}).end()
    mixed = pipe._records
    sdk = encode_spans([builder.span(r) for r in mixed]).SerializeToString()
    assert encoder.request(mixed) == sdk
    assert encoder.request(mixed) == sdk


def test_batch_settings_come_from_the_sdks_variables() -> None:
    pipe = SpanPipe(
        "1",
        environ={
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "64",
            "OTEL_BSP_MAX_QUEUE_SIZE": "100",
            "OTEL_BSP_SCHEDULE_DELAY": "250",
        },
    )
    assert (pipe.batch, pipe.max_queue, pipe.delay) == (64, 100, 0.25)
    # Not numbers: the SDK's defaults, as the SDK itself does.
    pipe = SpanPipe("1", environ={"OTEL_BSP_MAX_QUEUE_SIZE": "lots", "OTEL_BSP_SCHEDULE_DELAY": ""})
    assert (pipe.batch, pipe.max_queue, pipe.delay) == (512, 2048, 5.0)


class _Backend:
    kind = "openai"
    label = "openai:up"


def _request_record(pipe: SpanPipe) -> RequestSpan:
    """A request's span with three attempts: failed, answered, and a stream closed early."""
    server = RequestSpan(
        pipe,
        "POST",
        "chat",
        "/v1/chat/completions",
        "r1",
        TRACE_ID,
        PARENT,
        True,
        1,
        "k=v",
        {"sampler.says": "yes"},
    )
    server.asked = ("m", 50, 0.5, None, "alice")
    asked = ChatRequest(model="m", messages=[], protocol="openai", max_tokens=50)
    asked.upstream_model = "up-model"
    backend = _Backend()
    server.attempt(_attempt(11, 1, backend, asked, None, UpstreamError("down"), None))
    answer = ChatResponse(
        id="c",
        model="up-model-2024",
        message=Message("assistant", [TextPart("hi")]),
        usage=Usage(11, 7),
    )
    server.attempt(_attempt(12, 2, backend, asked, answer.usage, None, None, answer))
    server.attempt(_attempt(13, 3, backend, asked, None, None, "client_gone"))
    server.set_attribute("gen_ai.input.messages", "[]")
    server.status_code = 200
    server.cost = 1.5e-05
    server.answered = ("up-model", "success", 11, 7)
    return server


def test_a_request_is_one_record_of_its_server_span_and_its_attempts() -> None:
    pipe = SpanPipe("9.9", environ={})
    server = _request_record(pipe)
    server.end()
    server.end()  # a second end records nothing
    (record,) = pipe._records
    assert spans_of(record) == 4 and pipe._spans == 4
    # An attempt that ends after its request (a run going on) is a span of its own.
    asked = ChatRequest(model="m", messages=[], protocol="openai")
    server.attempt(_attempt(14, 4, _Backend(), asked, Usage(1, 2), None, None))
    late = pipe._records[1]
    assert spans_of(late) == 1 and pipe._spans == 5
    exporter = InMemorySpanExporter()
    run(io.BytesIO(_frame(pipe._records)), exporter, Builder("9.9"), batch=2)
    failed, answered, gone, made, after = exporter.get_finished_spans()
    for attempt in (failed, answered, gone, after):
        assert attempt.kind == SpanKind.CLIENT and attempt.parent.span_id == server.span_id
        assert attempt.context.trace_id == TRACE_ID and not attempt.parent.is_remote
        assert attempt.context.trace_state.to_header() == "k=v"
    assert [s.context.span_id for s in (failed, answered, gone, after)] == [11, 12, 13, 14]
    assert failed.name == "chat up-model" and failed.status.status_code == StatusCode.ERROR
    assert failed.status.description == "down"
    assert dict(failed.attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "up-model",
        "gen_ai.provider.name": "openai",
        "hookgate.backend": "openai:up",
        "gen_ai.request.max_tokens": 50,
        "error.type": "upstream",
    }
    assert answered.status.status_code == StatusCode.UNSET
    assert answered.attributes["gen_ai.response.model"] == "up-model-2024"
    assert list(answered.attributes["gen_ai.response.finish_reasons"]) == ["stop"]
    assert answered.attributes["gen_ai.usage.input_tokens"] == 11
    assert answered.attributes["gen_ai.usage.output_tokens"] == 7
    assert gone.attributes["hookgate.outcome"] == "client_gone"
    assert "gen_ai.usage.input_tokens" not in gone.attributes
    assert after.name == "chat m" and after.attributes["gen_ai.usage.output_tokens"] == 2
    assert made.name == "chat m" and made.kind == SpanKind.SERVER
    assert made.context.span_id == server.span_id and made.parent.span_id == PARENT
    assert made.parent.is_remote
    assert dict(made.attributes) == {
        "http.request.method": "POST",
        "url.path": "/v1/chat/completions",
        "http.route": "chat",
        "hookgate.request_id": "r1",
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "m",
        "gen_ai.request.max_tokens": 50,
        "gen_ai.request.temperature": 0.5,
        "hookgate.principal": "alice",
        "http.response.status_code": 200,
        "sampler.says": "yes",
        "gen_ai.input.messages": "[]",
        "gen_ai.response.model": "up-model",
        "hookgate.outcome": "success",
        "gen_ai.usage.input_tokens": 11,
        "gen_ai.usage.output_tokens": 7,
        "hookgate.cost_usd": 1.5e-05,
    }


def test_a_request_refused_before_the_pipeline_is_named_by_its_route() -> None:
    pipe = SpanPipe("9.9", environ={})
    server = RequestSpan(pipe, "GET", "models", "/v1/models", "r2", TRACE_ID, 0, False, 1, "", {})
    server.status_code = 401
    server.set_attribute("error.type", "authentication")
    server.end()
    ((name, kind, *_, attributes, status, _),) = spans(pipe._records[0])
    assert (name, kind, status) == ("GET models", 1, 0)
    assert attributes["http.response.status_code"] == 401
    assert attributes["error.type"] == "authentication"


def test_an_unsampled_request_keeps_no_attempt() -> None:
    server = RequestSpan(None, "POST", "chat", "/", "r3", TRACE_ID, PARENT, True, 0, "", {})
    asked = ChatRequest(model="m", messages=[], protocol="openai")
    server.attempt(_attempt(1, 1, _Backend(), asked, None, None, None))
    server.end()
    server.attempt(_attempt(2, 2, _Backend(), asked, None, None, None))
    assert server.attempts is None and not server.is_recording()


def test_a_request_counts_its_spans_against_the_bound() -> None:
    pipe = SpanPipe(
        "1", environ={"OTEL_BSP_MAX_QUEUE_SIZE": "5", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "5"}
    )
    _request_record(pipe).end()  # 4 spans
    _request_record(pipe).end()  # 4 more: past the bound, dropped
    Span(pipe, "s", 0, TRACE_ID, 0, False, 1, "", {}).end()  # 1: fits
    assert [spans_of(r) for r in pipe._records] == [4, 1]
    assert (pipe.stats.sent, pipe.stats.dropped) == (0, 4)


def test_request_records_encode_as_the_sdk_encodes_their_spans() -> None:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    from gateway.telemetry.exporter import Encoder

    pipe = SpanPipe("2.0", environ={})
    _request_record(pipe).end()
    records = spans(pipe._records[0])
    builder = Builder("2.0")
    sdk = encode_spans([builder.span(r) for r in records]).SerializeToString()
    assert Encoder(builder).request(records) == sdk


def test_an_idle_exporter_takes_ordinary_priority_while_frames_wait() -> None:
    """Idle while frames come in time; a frame that waited past LATE (the machine busy) is
    exported at ordinary priority, and the idle class is taken again after one in time."""
    pipe = SpanPipe("1", environ={})
    ages = [0.0, 0.0, sidecar.LATE * 4, sidecar.LATE * 4, 0.0]
    names = [f"span {i}" for i in range(len(ages))]
    for name in names:
        Span(pipe, name, 1, TRACE_ID, 0, False, 1, "", {}).end()
    frames = [_frame([r], age) for r, age in zip(pipe._records, ages, strict=True)]
    exporter = InMemorySpanExporter()
    asked: list[tuple[bool, int]] = []

    def idle(yes: bool) -> bool:
        # When it was asked: after how many spans were exported.
        asked.append((yes, len(exporter.get_finished_spans())))
        return yes

    run(io.BytesIO(b"".join(frames)), exporter, Builder("1"), batch=8, idle=idle)
    assert [s.name for s in exporter.get_finished_spans()] == names
    # Started ordinary: idle after the first frame; ordinary before the first late one; idle
    # again after the frame in time that follows the late ones.
    assert asked == [(True, 1), (False, 2), (True, 5)]


def _plain_request(
    pipe: SpanPipe,
    state: str = "",
    parent: int = PARENT,
    asked: tuple[object, ...] | None = ("m", 50, 0.5, None, "alice"),
    answered: tuple[object, ...] | None = ("up-model", "success", 11, 7),
    name: str = "",
    attempts: int = 2,
    request_id: str = "r1",
    cost: float | int | None = 1.5e-05,
) -> RequestSpan:
    """A request's span whose attributes are its facts alone (the encoder's own way)."""
    server = RequestSpan(
        pipe, "POST", "chat", "/v1/chat/completions", request_id, TRACE_ID, parent,
        bool(parent), 1, state, {},
    )  # fmt: skip
    server.asked = asked
    if name:
        server.update_name(name)
    request = ChatRequest(model="m", messages=[], protocol="openai", max_tokens=50)
    request.upstream_model = "up-model"
    answer = ChatResponse(
        id="c", model="up-2024", message=Message("assistant", [TextPart("hi")]), usage=Usage(3, 4)
    )
    facts = [
        _attempt(21, 1, _Backend(), request, None, UpstreamError("down"), None),
        _attempt(22, 2, _Backend(), request, answer.usage, None, None, answer),
        _attempt(23, 3, _Backend(), request, None, None, "client_gone"),
    ]
    for f in facts[:attempts]:
        server.attempt(f)
    server.status_code = 200 if answered else 401
    server.cost = cost if answered else None
    server.answered = answered
    return server


def test_a_request_record_encodes_as_its_spans_do() -> None:
    """``Encoder.fields`` writes a request's record straight from its facts, keeping the parts
    that repeat: the same bytes as its spans encoded one by one, the first time and from what it
    kept, whatever the values (a value a dict takes for another's key is not mistaken for it)."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    from gateway.telemetry.exporter import Encoder, _len

    pipe = SpanPipe("2.0", environ={})
    for make in (
        lambda: _plain_request(pipe),
        lambda: _plain_request(pipe, state="k=v,a=b", parent=0),
        lambda: _plain_request(pipe, asked=None, answered=None, attempts=0),
        lambda: _plain_request(pipe, name="renamed", attempts=3),
        lambda: _plain_request(pipe, answered=("up-model", "error", None, None), attempts=1),
        # Refused before routing: no response model.
        lambda: _plain_request(pipe, answered=(None, "error", None, None), attempts=0),
        lambda: _plain_request(pipe, asked=("m", None, None, None, None)),
        # 1, True and 1.0; 0.0 and -0.0: one key to a dict, four encodings.
        lambda: _plain_request(pipe, asked=("m", 1, -0.0, 1, None)),
        lambda: _plain_request(pipe, asked=("m", True, 0.0, 1.0, None)),
        lambda: _plain_request(pipe, asked=("m", 1, 0.0, True, None)),
        lambda: _plain_request(pipe, answered=("up-model", "success", True, 1)),
        # Request ids whose field's lengths take one byte each, or not (a client's, up to 128).
        *(lambda n=n: _plain_request(pipe, request_id="x" * n) for n in (0, 99, 100, 103, 128)),
        lambda: _plain_request(pipe, request_id="é" * 60),  # 120 bytes
        # A cost that is no float, and one of 0.0 and -0.0.
        *(lambda c=c: _plain_request(pipe, cost=c) for c in (0, 0.0, -0.0, 1e300)),
    ):
        make().end()
    # And a record whose own attributes may stand for the facts': as its spans.
    _request_record(pipe).end()
    records = pipe._records
    builder = Builder("2.0")
    encoder, one_by_one = Encoder(builder), Encoder(builder)
    for _ in range(2):  # the second time from what the encoder kept
        for record in records:
            expected = [_len(b"\x12", one_by_one.span(s)) for s in spans(record)]
            assert encoder.fields(record) == expected
    sdk = encode_spans([builder.span(s) for r in records for s in spans(r)]).SerializeToString()
    assert encoder.joined([f for r in records for f in encoder.fields(r)]) == sdk
    # A request that nothing answered names no response model, in either encoding.
    unanswered = _plain_request(pipe, answered=(None, "error", None, None), attempts=0)
    unanswered.end()
    record = pipe._records[-1]
    (span,) = spans(record)
    assert "gen_ai.response.model" not in builder.span(span).attributes
    assert b"gen_ai.response.model" not in b"".join(Encoder(builder).fields(record))


def test_a_span_that_cannot_be_encoded_leaves_the_others() -> None:
    pipe = SpanPipe("1", environ={})
    server = _plain_request(pipe)
    server.set_attribute("odd", {1, 2})  # a set: not a type an attribute may have
    server.end()
    Span(pipe, "after", 1, TRACE_ID, 0, False, 1, "", {}).end()
    sent: list[bytes] = []

    class Client:
        def export(self, data: bytes) -> None:
            sent.append(data)

    class Exporter:
        _client = Client()

        def shutdown(self) -> None:
            pass

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    run(io.BytesIO(_frame(pipe._records)), Exporter(), Builder("1"), batch=8)
    (data,) = sent
    request = ExportTraceServiceRequest()
    request.ParseFromString(data)
    names = [s.name for s in request.resource_spans[0].scope_spans[0].spans]
    # The server span went; its two attempts and the span after it did not.
    assert names == ["chat up-model", "chat up-model", "after"]
