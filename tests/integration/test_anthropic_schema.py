"""Anthropic answers hookgate writes itself (translated from another upstream, or errors) carry
every field of the current Messages schema, as the official SDK's types (generated from it)
declare them: ``stop_details``, ``container``, the usage breakdown, ``citations`` on text
blocks; errors carry the request id, and a 413 is ``request_too_large``."""

from __future__ import annotations

import anthropic
import orjson
import pytest
from anthropic.types import Message, TextBlock, Usage
from anthropic.types.raw_message_delta_event import Delta
from support.configs import upstream_config


def fields(model: type) -> set[str]:
    return set(model.model_fields)


def frames(body: str) -> list[dict]:
    return [orjson.loads(line[6:]) for line in body.splitlines() if line.startswith("data: ")]


@pytest.fixture
async def gateway(make_gateway, upstream):
    return await make_gateway(upstream_config(upstream))


ASK = {"model": "gpt-test", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}


async def test_a_whole_answer_has_every_schema_field(gateway):
    resp = await gateway.post("/v1/messages", json=ASK)
    body = await resp.json()
    assert fields(Message) <= body.keys()
    assert fields(Usage) <= body["usage"].keys()
    assert fields(TextBlock) <= body["content"][0].keys()
    assert body["usage"]["cache_creation"] == {
        "ephemeral_5m_input_tokens": 0,
        "ephemeral_1h_input_tokens": 0,
    }
    assert body["usage"]["service_tier"] == "standard"
    assert body["stop_details"] is None and body["container"] is None
    Message.model_validate(body)


async def test_a_stream_has_every_schema_field(gateway):
    resp = await gateway.post("/v1/messages", json={**ASK, "stream": True})
    events = frames(await resp.text())
    start = events[0]["message"]
    assert fields(Message) <= start.keys() and fields(Usage) <= start["usage"].keys()
    text = next(e for e in events if e["type"] == "content_block_start")["content_block"]
    assert fields(TextBlock) <= text.keys()
    delta = next(e for e in events if e["type"] == "message_delta")
    assert fields(Delta) <= delta["delta"].keys()


async def test_errors_carry_the_request_id(gateway, claude_sdk):
    with pytest.raises(anthropic.NotFoundError) as info:
        await claude_sdk(gateway).messages.create(**{**ASK, "model": "nope"})
    body = info.value.body
    assert body["request_id"] == info.value.response.headers["x-request-id"]
    assert info.value.request_id == body["request_id"]  # the SDK reads request-id


async def test_a_body_too_large_is_request_too_large(make_gateway, claude_sdk):
    gateway = await make_gateway({"server": {"max_body_size": "1KiB"}})
    big = [{"role": "user", "content": "x" * 4096}]
    with pytest.raises(anthropic.APIStatusError) as info:
        await claude_sdk(gateway).messages.create(model="echo", max_tokens=5, messages=big)
    assert info.value.status_code == 413
    assert info.value.body["error"]["type"] == "request_too_large"
