"""The request logs plugin: ``[request_logs]``, the filter that makes a record at the end of
every chat request, and the writer that hands them to the sink in batches, off the request
path, through a bounded queue (drops counted in ``hookgate_request_logs_total``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import attrs
from aiohttp import web
from prometheus_client.core import CounterMetricFamily, Metric

from gateway import (
    BatchWriter,
    ChatRequest,
    ChatResponse,
    Count,
    Exchange,
    Filter,
    Outcome,
    hookimpl,
    import_path,
)
from gateway.requestlog.records import Redactor, record
from gateway.requestlog.sinks import BUILTIN, Sink

if TYPE_CHECKING:
    from gateway import Gateway

#: Secrets that never reach a log: API keys of the usual shapes, bearer tokens, JWTs.
DEFAULT_REDACT = (
    r"\b(?:sk|hg|pk|rk)-[A-Za-z0-9_\-]{8,}",
    r"[Bb][Ee][Aa][Rr][Ee][Rr]\s+[A-Za-z0-9._\-]{8,}",
    r"\beyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+",
)


@attrs.frozen
class RequestLogsConfig:
    """``[request_logs]``: a record of every chat request, to a sink."""

    #: "" (off), "file", "database", "redis", or a plugin's sink as "package.module:Class".
    sink: str = ""
    #: The file sink's file (JSON lines, appended).
    path: str = ""
    #: The redis sink's stream (under ``[redis] prefix``).
    stream: str = "request-logs"
    #: The redis sink's stream is trimmed to about this many entries.
    max_entries: Count = Count(100_000)
    #: Add the messages asked and answered to each record (redacted).
    bodies: bool = False
    #: Regular expressions of what the bodies never show (replaced by ``[redacted]``); the
    #: default finds API keys, bearer tokens and JWTs.
    redact: tuple[str, ...] = DEFAULT_REDACT
    #: Records waiting at most; past it records are dropped and counted.
    queue: Count = Count(10_000)
    #: Records handed to the sink at once at most.
    batch: Count = Count(500)


class _Answer:
    """The exchange note that keeps the answer for the record."""


ANSWER = _Answer()


class RequestLogFilter(Filter):
    name = "request_logs"
    #: Last: the record sees what every other filter made of the request (its cost, say).
    order = 1000
    reads_relayed = False

    def __init__(self, writer: BatchWriter[dict[str, Any]], sink: Sink) -> None:
        self.writer = writer
        self.sink = sink

    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        """``cleanup_ctx``: the sink and the writer, for the app's lifetime."""
        await self.sink.start()
        try:
            async for _ in self.writer.run(app):
                yield
        finally:
            await self.sink.close()

    async def on_end(self, request: ChatRequest, exchange: Exchange, outcome: Outcome) -> None:
        self.writer.add(record(request, exchange, outcome, None))


class BodiesLogFilter(RequestLogFilter):
    """:class:`RequestLogFilter` with the (redacted) messages in each record."""

    reads_relayed = True

    def __init__(self, writer: BatchWriter[dict[str, Any]], sink: Sink, redact: Redactor) -> None:
        super().__init__(writer, sink)
        self.redact = redact

    async def on_success(
        self, request: ChatRequest, response: ChatResponse, exchange: Exchange
    ) -> None:
        exchange.note(ANSWER, response)

    async def on_end(self, request: ChatRequest, exchange: Exchange, outcome: Outcome) -> None:
        notes = exchange.notes
        answer = notes.get(ANSWER) if notes is not None else None
        self.writer.add(record(request, exchange, outcome, (self.redact, answer)))


def _sink(cfg: RequestLogsConfig, gateway: Gateway) -> Sink:
    cls: Any = BUILTIN.get(cfg.sink)
    if cls is None:
        if ":" not in cfg.sink:
            raise ValueError(
                f"sink: expected file, database, redis or 'package.module:Class', not {cfg.sink!r}"
            )
        cls = import_path(cfg.sink)
    sink: Sink = cls(cfg, gateway)
    return sink


class _Collector:
    def __init__(self, writer: BatchWriter[dict[str, Any]]) -> None:
        self.writer = writer

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "hookgate_request_logs",
            "Request log records: written, dropped (the queue was full) or failed.",
            labels=["outcome"],
        )
        stats = self.writer.stats
        for name, value in (
            ("written", stats.written),
            ("dropped", stats.dropped),
            ("failed", stats.failed),
        ):
            family.add_metric([name], value)
        yield family


@hookimpl
def gateway_config_sections(register: Any) -> None:
    register("request_logs", RequestLogsConfig)


@hookimpl
def gateway_register_filters(register: Any) -> None:
    def factory(gateway: Gateway) -> RequestLogFilter | None:
        cfg: RequestLogsConfig = gateway.config.section("request_logs")
        if not cfg.sink:
            return None
        sink = _sink(cfg, gateway)
        writer: BatchWriter[dict[str, Any]] = BatchWriter(
            "request logs", sink.write, int(cfg.queue), int(cfg.batch)
        )
        # Checked with bodies off too: turning them on later must not find it broken.
        redact = Redactor(cfg.redact)
        if cfg.bodies:
            return BodiesLogFilter(writer, sink, redact)
        return RequestLogFilter(writer, sink)

    register("request_logs", factory)


@hookimpl
def gateway_configure_app(app: web.Application, gateway: Gateway) -> None:
    flt = next((f for f in gateway.filters if isinstance(f, RequestLogFilter)), None)
    if flt is not None:
        gateway.metrics.registry.register(_Collector(flt.writer))
        app.cleanup_ctx.append(flt.lifespan)
