"""Prometheus metrics, one registry per application.

Label children are looked up once and kept, so recording a request is a few attribute reads
and additions, not a locked dict lookup per label set.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

if TYPE_CHECKING:
    from gateway.errors import GatewayError
    from gateway.exchange import Exchange

_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    120,
)
_OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "hookgate_requests",
            "Requests answered, by route, model and status.",
            ["route", "model", "status"],
            registry=r,
        )
        self.duration = Histogram(
            "hookgate_request_duration_seconds",
            "Time from arrival to the end of the response (streams: the last byte).",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.overhead = Histogram(
            "hookgate_gateway_overhead_seconds",
            "Time spent inside the gateway, upstream waits excluded.",
            ["route"],
            buckets=_OVERHEAD_BUCKETS,
            registry=r,
        )
        self.first_byte = Histogram(
            "hookgate_stream_first_byte_seconds",
            "Time from arrival to the first byte of a streamed answer.",
            ["route", "model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_errors = Counter(
            "hookgate_upstream_errors",
            "Upstream failures, by backend and kind.",
            ["backend", "kind"],
            registry=r,
        )
        self.active_streams = Gauge(
            "hookgate_active_streams", "Streams being sent now.", registry=r
        )
        self.tokens = Counter(
            "hookgate_tokens",
            "Tokens reported by upstreams, by model and direction.",
            ["model", "direction"],
            registry=r,
        )
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def record(self, ex: Exchange, status: int, elapsed: float) -> None:
        """Count one finished request."""
        route = ex.route.name
        self._child(self.requests, route, ex.model, str(status)).inc()
        self._child(self.duration, route).observe(elapsed)
        self._child(self.overhead, route).observe(max(0.0, elapsed - ex.upstream_seconds))
        if ex.first_byte is not None:
            self._child(self.first_byte, route, ex.model).observe(ex.first_byte)
        usage = ex.usage
        if usage is not None:
            self._child(self.tokens, ex.model, "input").inc(usage.input_tokens)
            self._child(self.tokens, ex.model, "output").inc(usage.output_tokens)

    def upstream_error(self, backend: str, err: GatewayError) -> None:
        self._child(self.upstream_errors, backend, err.kind).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
