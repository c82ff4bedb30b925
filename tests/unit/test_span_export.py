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
