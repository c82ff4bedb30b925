"""Tool calls in ``/metrics``: ``hookgate_mcp_tool_calls_total`` and their duration, by server
(``agent`` for the gateway's agents through ``/mcp``), tool and outcome (``ok``, ``error``: the
tool's own, ``timeout``, ``failed``: no result, ``rejected``: the server refused the call,
``forbidden``: the caller's key may not use it).

Counted in plain dicts (as the core's metrics are) and turned into metric families when
scraped.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, Metric

Labels = tuple[str, str, str]


class ToolCallMetrics:
    def __init__(self) -> None:
        self.calls: dict[Labels, int] = {}
        self.seconds: dict[Labels, float] = {}

    @classmethod
    def of(cls, registry: CollectorRegistry) -> ToolCallMetrics:
        """New counts, registered with the gateway's metrics registry."""
        made = cls()
        registry.register(_Collector(made))
        return made

    def record(self, server: str, tool: str, outcome: str, seconds: float) -> None:
        key = (server, tool, outcome)
        self.calls[key] = self.calls.get(key, 0) + 1
        self.seconds[key] = self.seconds.get(key, 0.0) + seconds


class _Collector:
    def __init__(self, metrics: ToolCallMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        labels = ["server", "tool", "outcome"]
        calls = CounterMetricFamily(
            "hookgate_mcp_tool_calls", "MCP tool calls, by server, tool and outcome", labels=labels
        )
        seconds = CounterMetricFamily(
            "hookgate_mcp_tool_call_seconds",
            "Time spent in MCP tool calls, by server, tool and outcome",
            labels=labels,
        )
        for key, count in self.metrics.calls.items():
            calls.add_metric(list(key), count)
            seconds.add_metric(list(key), self.metrics.seconds[key])
        yield calls
        yield seconds
