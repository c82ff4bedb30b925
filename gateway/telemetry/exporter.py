"""The span exporter process: reads finished spans from its standard input and exports them with
OpenTelemetry's SDK (its OTLP/HTTP exporter, configured by the ``OTEL_*`` environment variables).

The gateway records each span as a plain tuple on the request path and hands them here in
batches (``tracing.SpanPipe``), so building the SDK's spans, encoding them (protobuf) and sending
them take no time from requests: they run in this process, on another core, under a GIL of
their own. Run as ``python exporter.py VERSION`` (by path: it imports nothing of the gateway).

Frames on stdin: a 4-byte big-endian length, then a list of records (``marshal``: the
fastest way for plain tuples, between two processes of one Python) (:data:`FIELDS`).
At end of input what is left is exported and the exporter shut down (flushed).
"""

from __future__ import annotations

import logging
import marshal
import os
import sys
from typing import Any, BinaryIO

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


def _read(stream: BinaryIO, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = stream.read(n - len(data))
        if not chunk:
            return b""
        data += chunk
    return data


def frames(stream: BinaryIO) -> Any:
    """The lists of records on ``stream``, until its end."""
    while True:
        head = _read(stream, 4)
        if not head:
            return
        body = _read(stream, int.from_bytes(head, "big"))
        if not body:
            return
        yield marshal.loads(body)


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


def run(stream: BinaryIO, exporter: Any, builder: Builder, batch: int) -> None:
    """Export what ``stream`` carries, ``batch`` spans a call at most, then shut down."""
    try:
        for records in frames(stream):
            spans = []
            for record in records:
                try:
                    spans.append(builder.span(record))
                except Exception as exc:  # one bad record must not stop the others
                    logging.getLogger(__name__).warning("span not exported: %s", exc)
            for i in range(0, len(spans), batch):
                exporter.export(spans[i : i + batch])
    finally:
        exporter.shutdown()


def main() -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    logging.basicConfig(level=logging.WARNING, format="hookgate span exporter: %(message)s")
    version = sys.argv[1] if len(sys.argv) > 1 else ""
    batch = int(os.environ.get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE") or 512)
    run(sys.stdin.buffer, OTLPSpanExporter(), Builder(version), max(1, batch))


if __name__ == "__main__":
    main()
