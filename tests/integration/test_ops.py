"""Health, metrics, request ids and the gateway-time header."""

from __future__ import annotations

import re

from support.configs import upstream_config

MESSAGES = [{"role": "user", "content": "hi"}]


async def test_health(make_gateway):
    client = await make_gateway()
    resp = await client.get("/health")
    assert resp.status == 200
    assert (await resp.json())["status"] == "ok"


async def test_every_response_has_a_request_id_and_gateway_time(make_gateway):
    client = await make_gateway()
    for resp in (
        await client.get("/health"),
        await client.get("/nowhere"),
        await client.post("/v1/chat/completions", json={"model": "echo", "messages": MESSAGES}),
    ):
        assert re.fullmatch(r"[0-9a-f]{24}", resp.headers["x-request-id"])
        timing = resp.headers["server-timing"]
        assert re.fullmatch(r"gateway;dur=\d+\.\d{3}, upstream;dur=\d+\.\d{3}", timing)
    resp = await client.get("/health", headers={"x-request-id": "trace-123"})
    assert resp.headers["x-request-id"] == "trace-123"
    resp = await client.get("/health", headers={"x-request-id": "bad id with spaces"})
    assert resp.headers["x-request-id"] != "bad id with spaces"


async def test_gateway_time_excludes_the_upstream(make_gateway, upstream):
    client = await make_gateway(upstream_config(upstream))
    resp = await client.post(
        "/v1/chat/completions",
        json={"model": "gpt-test", "messages": [{"role": "user", "content": "SLOW:0.3"}]},
    )
    assert resp.status == 200
    timing = dict(part.split(";dur=") for part in resp.headers["server-timing"].split(", "))
    assert float(timing["upstream"]) >= 300
    assert float(timing["gateway"]) < 100


def _sample(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        named = line.startswith((name + "{", name + " "))
        if named and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {name} {labels} in metrics")


async def test_metrics_count_requests_streams_and_upstream_errors(make_gateway, upstream):
    client = await make_gateway(upstream_config(upstream))
    await client.post("/v1/chat/completions", json={"model": "gpt-test", "messages": MESSAGES})
    resp = await client.post(
        "/v1/chat/completions", json={"model": "gpt-test", "messages": MESSAGES, "stream": True}
    )
    await resp.read()
    await client.post(
        "/v1/chat/completions",
        json={"model": "gpt-test", "messages": [{"role": "user", "content": "STATUS:500"}]},
    )
    await client.post("/v1/chat/completions", json={"model": "nope", "messages": MESSAGES})
    text = await (await client.get("/metrics")).text()
    assert (
        _sample(
            text,
            "hookgate_requests_total",
            route="chat_completions",
            model="gpt-test",
            status="200",
        )
        == 2
    )
    assert (
        _sample(
            text,
            "hookgate_requests_total",
            route="chat_completions",
            model="gpt-test",
            status="502",
        )
        == 1
    )
    assert (
        _sample(text, "hookgate_requests_total", route="chat_completions", model="", status="404")
        == 1
    )
    assert (
        _sample(text, "hookgate_upstream_errors_total", backend="openai:up", kind="upstream") == 1
    )
    assert _sample(text, "hookgate_request_duration_seconds_count", route="chat_completions") == 4
    assert (
        _sample(
            text,
            "hookgate_stream_first_byte_seconds_count",
            route="chat_completions",
            model="gpt-test",
        )
        == 1
    )
    assert _sample(text, "hookgate_gateway_overhead_seconds_count", route="chat_completions") == 4
    assert _sample(text, "hookgate_active_streams") == 0
    assert _sample(text, "hookgate_tokens_total", model="gpt-test", direction="output") == 7
