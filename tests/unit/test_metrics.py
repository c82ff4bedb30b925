"""The metrics' own arithmetic: buckets are "less than or equal", counts add up."""

from __future__ import annotations

from gateway.canonical import Usage
from gateway.core.metrics import Histogram, Metrics
from gateway.exchange import Exchange, RouteInfo


def test_histogram_buckets_are_cumulative_and_inclusive():
    hist = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 1.0, 7.0):
        hist.observe(value)
    assert hist.buckets() == [("0.1", 2), ("1.0", 4), ("+Inf", 5)]
    assert hist.sum == 8.65


def test_exposition_has_every_family_with_its_labels():
    metrics = Metrics()
    ex = Exchange("r1", RouteInfo("chat_completions"), model="gpt", upstream_seconds=0.5)
    ex.first_byte, ex.usage = 0.2, Usage(3, 4)
    metrics.record(ex, 200, 0.75)
    metrics.record(ex, 200, 0.25)
    metrics.active_streams.inc()
    text = metrics.exposition().decode()
    for line in (
        'hookgate_requests_total{model="gpt",route="chat_completions",status="200"} 2.0',
        'hookgate_request_duration_seconds_count{route="chat_completions"} 2.0',
        'hookgate_request_duration_seconds_sum{route="chat_completions"} 1.0',
        'hookgate_gateway_overhead_seconds_bucket{le="0.1",route="chat_completions"} 1.0',
        'hookgate_stream_first_byte_seconds_count{model="gpt",route="chat_completions"} 2.0',
        'hookgate_tokens_total{direction="input",model="gpt"} 6.0',
        "hookgate_active_streams 1.0",
    ):
        assert line in text, line


def test_a_reloaded_gateway_carries_counts_on_and_lets_plugins_register_again():
    from prometheus_client import Counter

    first = Metrics()
    Counter("plugin_things", "A plugin's own metric.", registry=first.registry).inc()
    first.record(Exchange("r1", RouteInfo("chat"), model="m"), 200, 0.1)
    second = Metrics(previous=first)
    Counter("plugin_things", "Registered again by the new application.", registry=second.registry)
    second.record(Exchange("r2", RouteInfo("chat"), model="m"), 200, 0.1)
    text = second.exposition().decode()
    assert 'hookgate_requests_total{model="m",route="chat",status="200"} 2.0' in text
    assert "plugin_things_total 0.0" in text
