"""Prometheus metrics, one set per gateway (carried over a configuration reload).

Recording sits on every request's path, so it is plain arithmetic on dicts and lists owned by the
event loop's thread: no locks and no label lookups through prometheus_client's metric objects
(which cost more than the rest of the bookkeeping together). prometheus_client still writes the
exposition: a collector turns the counts into metric families when ``/metrics`` is scraped.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, TypeVar

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

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
#: Status codes as the label text, made once.
_STATUS = {code: str(code) for code in range(100, 600)}


class Histogram:
    """Observations counted per bucket (not cumulative until exposition)."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def buckets(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        total = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            out.append(("+Inf" if bound == float("inf") else str(float(bound)), total))
        return out


class Gauge:
    """A number that goes up and down (streams open now)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self) -> None:
        self.value += 1

    def dec(self) -> None:
        self.value -= 1


class Metrics:
    """The gateway's metrics: ``record`` each request, ``exposition`` for ``/metrics``.

    ``registry`` is also where plugins register metrics of their own. ``previous`` (the metrics
    of the application a reload replaces) hands its counts on: the gateway's own counters carry
    on across reloads, while the new application's plugins register theirs afresh.
    """

    #: (route, model, status) -> requests answered
    requests: dict[tuple[str, str, str], int]
    #: route -> time from arrival to the end of the response
    duration: dict[str, Histogram]
    #: route -> time inside the gateway, upstream waits excluded
    overhead: dict[str, Histogram]
    #: (route, model) -> time to the first byte of a stream
    first_byte: dict[tuple[str, str], Histogram]
    #: (backend, kind) -> upstream failures
    upstream_errors: dict[tuple[str, str], int]
    #: (model, direction) -> tokens reported by upstreams
    tokens: dict[tuple[str, str], int]
    active_streams: Gauge
    #: Routing: (model, target) -> attempts, retries, fallbacks (moves on after its failure),
    #: circuits opened; (model, target, reason) -> failed attempts; time to first content.
    route_attempts: dict[tuple[str, str], int]
    route_retries: dict[tuple[str, str], int]
    route_fallbacks: dict[tuple[str, str], int]
    route_circuits: dict[tuple[str, str], int]
    route_failures: dict[tuple[str, str, str], int]
    route_first_bytes: dict[tuple[str, str], Histogram]
    #: With several workers: the expositions of the other workers (see :meth:`scrape`).
    peers: Callable[[], Awaitable[list[bytes]]] | None = None

    def __init__(self, previous: Metrics | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))
        if previous is not None:
            self.peers = previous.peers
            self.requests = previous.requests
            self.duration = previous.duration
            self.overhead = previous.overhead
            self.first_byte = previous.first_byte
            self.upstream_errors = previous.upstream_errors
            self.tokens = previous.tokens
            self.active_streams = previous.active_streams
            self.route_attempts = previous.route_attempts
            self.route_retries = previous.route_retries
            self.route_fallbacks = previous.route_fallbacks
            self.route_circuits = previous.route_circuits
            self.route_failures = previous.route_failures
            self.route_first_bytes = previous.route_first_bytes
            return
        self.requests = {}
        self.duration = {}
        self.overhead = {}
        self.first_byte = {}
        self.upstream_errors = {}
        self.tokens = {}
        self.active_streams = Gauge()
        self.route_attempts = {}
        self.route_retries = {}
        self.route_fallbacks = {}
        self.route_circuits = {}
        self.route_failures = {}
        self.route_first_bytes = {}

    def record(self, ex: Exchange, status: int, elapsed: float) -> None:
        """Count one finished request."""
        route = ex.route.name
        key = (route, ex.model, _STATUS.get(status) or str(status))
        requests = self.requests
        requests[key] = requests.get(key, 0) + 1
        hist = self.duration.get(route)
        if hist is None:
            hist = self.duration[route] = Histogram(_LATENCY_BUCKETS)
            self.overhead[route] = Histogram(_OVERHEAD_BUCKETS)
        hist.observe(elapsed)
        self.overhead[route].observe(max(0.0, elapsed - ex.upstream_seconds))
        if ex.first_byte is not None:
            fb_key = (route, ex.model)
            fb = self.first_byte.get(fb_key)
            if fb is None:
                fb = self.first_byte[fb_key] = Histogram(_LATENCY_BUCKETS)
            fb.observe(ex.first_byte)
        usage = ex.usage
        if usage is not None:
            tokens = self.tokens
            k_in, k_out = (ex.model, "input"), (ex.model, "output")
            tokens[k_in] = tokens.get(k_in, 0) + usage.input_tokens
            tokens[k_out] = tokens.get(k_out, 0) + usage.output_tokens

    def upstream_error(self, backend: str, err: GatewayError) -> None:
        key = (backend, err.kind)
        self.upstream_errors[key] = self.upstream_errors.get(key, 0) + 1

    # -- routing (routes with several targets or retries)

    def route_attempt(self, model: str, target: str) -> None:
        _count(self.route_attempts, (model, target))

    def route_retry(self, model: str, target: str) -> None:
        _count(self.route_retries, (model, target))

    def route_fallback(self, model: str, target: str) -> None:
        _count(self.route_fallbacks, (model, target))

    def route_circuit_opened(self, model: str, target: str) -> None:
        _count(self.route_circuits, (model, target))

    def route_failure(self, model: str, target: str, reason: str) -> None:
        _count(self.route_failures, (model, target, reason))

    def route_first_byte(self, model: str, target: str, seconds: float) -> None:
        hist = self.route_first_bytes.get((model, target))
        if hist is None:
            hist = self.route_first_bytes[(model, target)] = Histogram(_LATENCY_BUCKETS)
        hist.observe(seconds)

    def exposition(self) -> bytes:
        """This process's metrics, in Prometheus text."""
        return generate_latest(self.registry)

    async def scrape(self) -> bytes:
        """What ``/metrics`` answers: this process's metrics, added up with every other
        worker's when there are several."""
        if self.peers is None:
            return self.exposition()
        return merge([self.exposition(), *await self.peers()])


def merge(expositions: Iterable[bytes]) -> bytes:
    """Several processes' expositions as one: every sample added up across them (counters,
    gauges, histogram buckets, sums and counts), but a ``_created`` time, which is the
    earliest; plus ``hookgate_metrics_workers``, how many processes answered."""
    from prometheus_client.parser import text_string_to_metric_families

    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    count = 0
    for text in expositions:
        count += 1
        for family in text_string_to_metric_families(text.decode()):
            if family.name not in families:
                families[family.name] = Metric(family.name, family.documentation, family.type)
            samples = values.setdefault(family.name, {})
            for sample in family.samples:
                key = (sample.name, tuple(sample.labels.items()))
                if sample.name.endswith("_created"):
                    samples[key] = min(samples.get(key, sample.value), sample.value)
                else:
                    samples[key] = samples.get(key, 0.0) + sample.value
    merged = []
    for name, family in families.items():
        for (sample_name, labels), value in values[name].items():
            family.add_sample(sample_name, dict(labels), value)
        merged.append(family)
    merged.append(
        GaugeMetricFamily(
            "hookgate_metrics_workers", "Worker processes whose metrics this scrape adds up.", count
        )
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(merged))
    return generate_latest(registry)


class _Fixed:
    """A collector of metric families made already."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def _count(counts: dict[_K, int], key: _K) -> None:
    counts[key] = counts.get(key, 0) + 1


class _Collector:
    """Turns :class:`Metrics` into Prometheus metric families at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.m
        yield _counter(
            "hookgate_requests",
            "Requests answered, by route, model and status.",
            ["route", "model", "status"],
            m.requests,
        )
        yield _histogram(
            "hookgate_request_duration_seconds",
            "Time from arrival to the end of the response (streams: the last byte).",
            ["route"],
            {(k,): v for k, v in m.duration.items()},
        )
        yield _histogram(
            "hookgate_gateway_overhead_seconds",
            "Time spent inside the gateway, upstream waits excluded.",
            ["route"],
            {(k,): v for k, v in m.overhead.items()},
        )
        yield _histogram(
            "hookgate_stream_first_byte_seconds",
            "Time from arrival to the first byte of a streamed answer.",
            ["route", "model"],
            m.first_byte,
        )
        yield _counter(
            "hookgate_upstream_errors",
            "Upstream failures, by backend and kind.",
            ["backend", "kind"],
            m.upstream_errors,
        )
        yield GaugeMetricFamily(
            "hookgate_active_streams", "Streams being sent now.", value=m.active_streams.value
        )
        yield _counter(
            "hookgate_tokens",
            "Tokens reported by upstreams, by model and direction.",
            ["model", "direction"],
            m.tokens,
        )
        target = ["model", "target"]
        yield _counter(
            "hookgate_route_attempts",
            "Upstream attempts, by model and target.",
            target,
            m.route_attempts,
        )
        yield _counter(
            "hookgate_route_failures",
            "Failed upstream attempts, by model, target and reason.",
            [*target, "reason"],
            m.route_failures,
        )
        yield _counter(
            "hookgate_route_retries", "Retries on the same target.", target, m.route_retries
        )
        yield _counter(
            "hookgate_route_fallbacks",
            "Requests that moved on to the next target after this one failed.",
            target,
            m.route_fallbacks,
        )
        yield _counter(
            "hookgate_route_circuit_opened",
            "Times a target's circuit opened (skipped for its cooldown).",
            target,
            m.route_circuits,
        )
        yield _histogram(
            "hookgate_route_first_byte_seconds",
            "Time from an attempt's start to its first content (a whole answer: to its end).",
            target,
            m.route_first_bytes,
        )


#: A metric's label values, one per label.
_Labels = TypeVar("_Labels", bound=tuple[str, ...])
_K = TypeVar("_K")


def _counter(
    name: str, doc: str, labels: list[str], values: dict[_Labels, int]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=labels)
    for key, value in list(values.items()):
        family.add_metric(list(key), value)
    return family


def _histogram(
    name: str, doc: str, labels: list[str], values: dict[_Labels, Histogram]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=labels)
    for key, hist in list(values.items()):
        family.add_metric(list(key), hist.buckets(), sum_value=hist.sum)
    return family
