"""The telemetry plugin: ``[telemetry]``, and OpenTelemetry traces exported over OTLP/HTTP.

Everything about the export is configured the standard way, by ``OTEL_*`` environment variables
(``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, ``..._HEADERS``,
``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``,
``OTEL_BSP_*``, ...). The request path only records each span as a tuple; the SDK builds,
encodes and sends them in a process of its own (``exporter.py``), fed in batches through a
bounded pipe (spans that find it full are dropped and counted); what is pending is exported
when the app stops.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

import attrs
from aiohttp import web
from prometheus_client.core import CounterMetricFamily, Metric

from gateway import hookimpl

if TYPE_CHECKING:
    from gateway import Gateway
    from gateway.telemetry.tracing import SpanPipe

log = logging.getLogger(__name__)

_ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_CONTENT = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"


@attrs.frozen
class TelemetryConfig:
    """``[telemetry]``: OpenTelemetry traces (``pip install 'hookgate[otel]'``)."""

    #: Export traces: "auto" (when ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
    #: ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set), true or false.
    traces: str = "auto"
    #: Record prompts and answers in the spans (``gen_ai.input.messages``,
    #: ``gen_ai.output.messages``); also on with
    #: ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``.
    capture_content: bool = False
    #: The span exporter process's CPU priority: "idle" (Linux's idle scheduling class: it
    #: runs on the time requests leave, never taking a core from them; a batch that waited in
    #: its pipe more than 0.25 s, the cores all busy, is exported at ordinary priority) or
    #: "normal" (it competes for the cores as the gateway's workers do).
    exporter_priority: Literal["idle", "normal"] = "idle"


def _enabled(cfg: TelemetryConfig) -> bool:
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    if cfg.traces == "auto":
        return any(os.environ.get(name) for name in _ENDPOINTS)
    if cfg.traces in ("true", "false"):
        return cfg.traces == "true"
    raise ValueError(f"traces: expected 'auto', 'true' or 'false', not {cfg.traces!r}")


def _content(cfg: TelemetryConfig) -> bool:
    return cfg.capture_content or os.environ.get(_CONTENT, "").lower() == "true"


class _Collector:
    def __init__(self, pipe: SpanPipe) -> None:
        self.pipe = pipe

    def collect(self) -> Iterator[Metric]:
        spans = CounterMetricFamily(
            "hookgate_trace_spans",
            "Spans handed to the exporter process (sent) or dropped (it was behind or gone).",
            labels=["outcome"],
        )
        spans.add_metric(["sent"], self.pipe.stats.sent)
        spans.add_metric(["dropped"], self.pipe.stats.dropped)
        yield spans


@hookimpl
def gateway_config_sections(register: Any) -> None:
    register("telemetry", TelemetryConfig)


@hookimpl
def gateway_register_filters(register: Any) -> None:
    def factory(gateway: Gateway) -> Any:
        cfg: TelemetryConfig = gateway.config.section("telemetry")
        if not _enabled(cfg):
            return None
        try:
            from gateway.telemetry.tracing import ContentTracingFilter, TracingFilter
        except ImportError as exc:
            raise ImportError(
                f"traces need opentelemetry-sdk: pip install 'hookgate[otel]' ({exc})"
            ) from exc
        return ContentTracingFilter() if _content(cfg) else TracingFilter()

    register("telemetry", factory)


@hookimpl
def gateway_configure_app(app: web.Application, gateway: Gateway) -> None:
    cfg: TelemetryConfig = gateway.config.section("telemetry")
    if not _enabled(cfg):
        return
    from opentelemetry.sdk.trace.sampling import _get_from_env_or_default

    from gateway import __version__
    from gateway.telemetry.tracing import SpanPipe, TracedAttempts, Tracer, server_middleware

    # The app's own exporter process (started and stopped with the app: a reload gets a fresh
    # one, and the old one exports what is left and stops with its app).
    pipe = SpanPipe(__version__, priority=cfg.exporter_priority)
    tracer = Tracer(_get_from_env_or_default(), pipe)
    # Right after the exchange: refused and unauthenticated requests have their span too.
    app.middlewares.insert(1, server_middleware(tracer))
    gateway.pipeline.attempts = TracedAttempts(tracer)
    app.cleanup_ctx.append(pipe.run)
    gateway.metrics.registry.register(_Collector(pipe))
    log.info("traces exported over OTLP/HTTP%s", " with content" if _content(cfg) else "")
