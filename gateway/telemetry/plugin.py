"""The telemetry plugin: ``[telemetry]``, and OpenTelemetry traces exported over OTLP/HTTP.

Everything about the export is configured the standard way, by ``OTEL_*`` environment variables
(``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, ``..._HEADERS``,
``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``, ...). Spans are
batched and sent from the SDK's own thread, off the event loop; what is pending is flushed when
the app stops.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import attrs
from aiohttp import web

from gateway import hookimpl

if TYPE_CHECKING:
    from gateway import Gateway

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
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from gateway import __version__
    from gateway.telemetry.tracing import TracedAttempts, server_middleware

    # The app's own provider (not the process-wide one): a reload gets a fresh one, and the old
    # one is flushed and shut down with its app.
    resource = Resource.create({"service.name": "hookgate", "service.version": __version__})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    tracer = provider.get_tracer("hookgate", __version__)
    # Right after the exchange: refused and unauthenticated requests have their span too.
    app.middlewares.insert(1, server_middleware(tracer))
    gateway.pipeline.attempts = TracedAttempts(tracer)

    async def lifespan(app: web.Application) -> AsyncIterator[None]:
        try:
            yield
        finally:
            # Flushing sends what is pending (a blocking HTTP call): off the event loop.
            await asyncio.get_running_loop().run_in_executor(None, provider.shutdown)

    app.cleanup_ctx.append(lifespan)
    log.info("traces exported over OTLP/HTTP%s", " with content" if _content(cfg) else "")
