"""Spans recorded on the request path as tuples, and the exporter process's side: the SDK spans
it builds from them, and the bound on what waits for it."""

from __future__ import annotations

import io
import marshal

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from gateway.telemetry.exporter import Builder, run
from gateway.telemetry.tracing import Span, SpanPipe

TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
PARENT = 0x00F067AA0BA902B7


def _frame(records: list[tuple[object, ...]]) -> bytes:
    data = marshal.dumps(records)
    return len(data).to_bytes(4, "big") + data


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
