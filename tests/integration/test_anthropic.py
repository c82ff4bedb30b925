"""POST /v1/messages and /v1/messages/count_tokens with the official anthropic package as the
caller, over the echo backend and a fake Anthropic upstream (the same-protocol fast path)."""

from __future__ import annotations

import asyncio

import anthropic
import orjson
import pydantic
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from anthropic.types.shared import ErrorResponse
from fakes.anthropic_upstream import CANCELLED, COUNT, HEADERS
from support.configs import claude_config, recorded

from gateway import GATEWAY

MESSAGES = [{"role": "user", "content": "hello gateway"}]
STREAM_EVENT = pydantic.TypeAdapter(RawMessageStreamEvent)
ECHO = {"backends": {"echo": {"kind": "echo"}}, "models": {"*": {"backend": "echo"}}}


def sse_frames(body: str) -> list[tuple[str | None, dict]]:
    """(event name, data) of every frame of an SSE body."""
    out = []
    for chunk in body.split("\n\n"):
        if not chunk.strip():
            continue
        event, data = None, []
        for line in chunk.split("\n"):
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
        if data:
            out.append((event, orjson.loads("\n".join(data))))
    return out


def check_stream(frames: list[tuple[str | None, dict]]) -> list[str]:
    """Every frame names its type in its event line and parses as the SDK's own event types;
    returns the types in order."""
    for event, data in frames:
        assert event == data["type"], (event, data)
        if event not in ("ping", "error"):
            STREAM_EVENT.validate_python(data)
    return [event for event, _ in frames]


async def test_echo_message_parses_as_the_sdk_type(make_gateway, claude_sdk):
    client = await make_gateway()
    api = claude_sdk(client)
    raw = await api.messages.with_raw_response.create(
        model="echo", max_tokens=64, messages=MESSAGES
    )
    Message.model_validate(orjson.loads(await raw.read()))
    msg = await raw.parse()
    assert [b.text for b in msg.content] == ["hello gateway"]
    assert msg.stop_reason == "end_turn" and msg.usage.output_tokens > 0
    assert raw.headers["x-hookgate-backend"] == "echo:echo"


async def test_stream_has_the_full_event_sequence(make_gateway, claude_sdk):
    client = await make_gateway()
    resp = await client.post(
        "/v1/messages",
        json={"model": "echo", "max_tokens": 64, "stream": True, "messages": MESSAGES},
    )
    assert resp.status == 200 and resp.headers["content-type"].startswith("text/event-stream")
    types = check_stream(sse_frames(await resp.text()))
    assert types[:3] == ["message_start", "ping", "content_block_start"]
    assert types[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(types[3:-3]) == {"content_block_delta"}
    async with claude_sdk(client).messages.stream(
        model="echo", max_tokens=64, messages=[{"role": "user", "content": "one two three"}]
    ) as stream:
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert text == "one two three" == final.content[0].text
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0


async def test_both_auth_styles_and_any_version(make_gateway, claude_sdk):
    client = await make_gateway({**ECHO, "auth": {"keys": ["sk-gate"]}})
    # anthropic SDK 2.x: Authorization: Bearer and its own (new) anthropic-version
    msg = await claude_sdk(client, api_key="sk-gate").messages.create(
        model="m", max_tokens=8, messages=MESSAGES
    )
    assert msg.content[0].text == "hello gateway"
    body = {"model": "m", "max_tokens": 8, "messages": MESSAGES}
    for headers in (
        {"x-api-key": "sk-gate", "anthropic-version": "2023-06-01"},  # older SDKs
        {"x-api-key": "sk-gate", "anthropic-version": "1999-01-01"},  # unknown: still accepted
        {"x-api-key": "sk-gate"},  # none at all
    ):
        resp = await client.post("/v1/messages", json=body, headers=headers)
        assert resp.status == 200, headers
    with pytest.raises(anthropic.AuthenticationError) as caught:
        await claude_sdk(client, api_key="wrong").messages.create(
            model="m", max_tokens=8, messages=MESSAGES
        )
    assert caught.value.body["error"]["type"] == "authentication_error"
    resp = await client.post("/v1/messages", json=body)
    assert resp.status == 401
    ErrorResponse.model_validate(await resp.json())


async def test_errors_in_anthropic_shape(make_gateway, claude_upstream, claude_sdk):
    client = await make_gateway(claude_config(claude_upstream))
    api = claude_sdk(client)
    for body, status, kind in (
        ({"model": "claude-test", "messages": MESSAGES}, 400, "invalid_request_error"),
        (
            {
                "model": "claude-test",
                "max_tokens": 5,
                "messages": [{"role": "bot", "content": "x"}],
            },
            400,
            "invalid_request_error",
        ),
        (
            {
                "model": "claude-test",
                "max_tokens": 5,
                "messages": MESSAGES,
                "tool_choice": {"type": ["any"]},
            },
            400,
            "invalid_request_error",
        ),
        ({"model": "nope", "max_tokens": 5, "messages": MESSAGES}, 404, "not_found_error"),
    ):
        resp = await client.post("/v1/messages", json=body)
        assert resp.status == status
        err = await resp.json()
        ErrorResponse.model_validate(err)
        assert err["error"]["type"] == kind
    resp = await client.post("/v1/messages", data=b"{not json")
    assert resp.status == 400 and (await resp.json())["type"] == "error"
    with pytest.raises(anthropic.BadRequestError) as caught:
        await api.messages.create(model="claude-test", max_tokens=8, messages=[])
    assert "messages" in caught.value.message
    with pytest.raises(anthropic.RateLimitError) as limited:
        await api.messages.create(
            model="claude-test", max_tokens=8, messages=[{"role": "user", "content": "STATUS:429"}]
        )
    assert limited.value.response.headers["retry-after"] == "7"
    assert "(status 429, type rate_limit_error)" in limited.value.message
    with pytest.raises(anthropic.InternalServerError) as overloaded:
        await api.messages.create(
            model="claude-test", max_tokens=8, messages=[{"role": "user", "content": "STATUS:529"}]
        )
    assert overloaded.value.body["error"]["type"] == "overloaded_error"


async def test_count_tokens_estimates_or_asks_the_upstream(
    make_gateway, claude_upstream, claude_sdk
):
    cfg = claude_config(claude_upstream)
    cfg["backends"]["echo"] = {"kind": "echo"}
    cfg["models"]["echo"] = {"backend": "echo"}
    client = await make_gateway(cfg)
    api = claude_sdk(client)
    short = await api.messages.with_raw_response.count_tokens(model="echo", messages=MESSAGES)
    assert short.headers["x-hookgate-token-count"] == "estimate"
    long = await api.messages.count_tokens(
        model="echo",
        system="You are a careful assistant. " * 20,
        messages=MESSAGES,
        tools=[{"name": "lookup", "input_schema": {"type": "object", "properties": {}}}],
    )
    assert 0 < (await short.parse()).input_tokens < long.input_tokens
    exact = await api.messages.with_raw_response.count_tokens(
        model="claude-test", system="be brief", messages=MESSAGES
    )
    assert (await exact.parse()).input_tokens == COUNT
    assert exact.headers["x-hookgate-token-count"] == "exact"
    sent = recorded(claude_upstream)[-1]
    assert sent["model"] == "up-claude" and sent["system"] == "be brief"
    assert "max_tokens" not in sent
    resp = await client.post("/v1/messages/count_tokens", json={"model": "echo"})
    assert resp.status == 400 and (await resp.json())["error"]["type"] == "invalid_request_error"


async def test_same_protocol_request_and_answer_pass_unchanged(
    make_gateway, claude_upstream, claude_sdk
):
    client = await make_gateway(claude_config(claude_upstream, version="2023-06-01"))
    system = [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}]
    tools = [
        {
            "name": "get_weather",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
            "cache_control": {"type": "ephemeral"},
        }
    ]
    raw = await claude_sdk(client).messages.with_raw_response.create(
        model="claude-test",
        max_tokens=100,
        system=system,
        messages=MESSAGES,
        tools=tools,
        metadata={"user_id": "u-1"},
        extra_body={"context_management": {"edits": []}, "top_k": 5},
        extra_headers={"anthropic-beta": "context-management-2025-06-27"},
    )
    msg = await raw.parse()
    assert msg.id == "msg_fake" and msg.content[0].text == "upstream says: hello gateway"
    assert msg.usage.cache_read_input_tokens == 5  # the upstream body, as it was
    sent = recorded(claude_upstream)[-1]
    assert sent["model"] == "up-claude"
    assert sent["system"] == system and sent["tools"] == tools
    assert sent["top_k"] == 5 and sent["metadata"] == {"user_id": "u-1"}
    assert sent["context_management"] == {"edits": []}
    headers = claude_upstream.app[HEADERS][-1]
    assert headers["x-api-key"] == "claude-secret"
    assert headers["anthropic-version"] == "2023-06-01"
    assert headers["anthropic-beta"] == "context-management-2025-06-27"
    assert "authorization" not in {k.lower() for k in headers}


async def test_streams_are_relayed_frame_for_frame(make_gateway, claude_upstream, claude_sdk):
    client = await make_gateway(claude_config(claude_upstream))
    resp = await client.post(
        "/v1/messages",
        json={
            "model": "claude-test",
            "max_tokens": 64,
            "stream": True,
            "messages": [{"role": "user", "content": "THINK"}],
        },
    )
    frames = sse_frames(await resp.text())
    types = check_stream(frames)
    assert types[:2] == ["message_start", "ping"] and types[-1] == "message_stop"
    assert frames[0][1]["message"]["id"] == "msg_fake"
    async with claude_sdk(client).messages.stream(
        model="claude-test", max_tokens=64, messages=[{"role": "user", "content": "THINK"}]
    ) as stream:
        final = await stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].signature == "sig-fake"
    assert final.usage.input_tokens == 11 and final.usage.cache_read_input_tokens == 5


async def test_stop_sequence_is_kept(make_gateway, claude_upstream, claude_sdk):
    from gateway import Filter, hookimpl

    class Observe(Filter):
        async def on_event(self, event, exchange):
            return event

    class Plugin:
        @hookimpl
        def gateway_register_filters(self, register):
            register("observe", lambda gw: Observe())

    for plugins in ((), [("observe", Plugin())]):  # relayed, then re-encoded by the gateway
        client = await make_gateway(claude_config(claude_upstream), plugins=plugins)
        async with claude_sdk(client).messages.stream(
            model="claude-test",
            max_tokens=64,
            stop_sequences=["###"],
            messages=[{"role": "user", "content": "STOPSEQ"}],
        ) as stream:
            final = await stream.get_final_message()
        assert (final.stop_reason, final.stop_sequence) == ("stop_sequence", "###"), plugins
        assert final.usage.output_tokens == 7


async def test_failure_mid_stream_is_an_error_event(make_gateway, claude_upstream, claude_sdk):
    client = await make_gateway(claude_config(claude_upstream))
    for trigger in ("BREAK", "HALFFRAME", "ERRFRAME", "NOFINISH"):
        body = {
            "model": "claude-test",
            "max_tokens": 64,
            "stream": True,
            "messages": [{"role": "user", "content": trigger}],
        }
        frames = sse_frames(await (await client.post("/v1/messages", json=body)).text())
        types = check_stream(frames)
        assert types[-1] == "error" and "message_stop" not in types, (trigger, types)
        seen = []
        with pytest.raises(anthropic.APIStatusError):
            async with claude_sdk(client).messages.stream(
                model="claude-test", max_tokens=64, messages=body["messages"]
            ) as stream:
                async for event in stream:
                    seen.append(event.type)
        assert "message_start" in seen and "message_stop" not in seen, trigger


async def test_ping_keeps_an_idle_stream_alive(make_gateway):
    client = await make_gateway(
        {
            "backends": {"slow": {"kind": "echo", "delay": "200ms"}},
            "models": {"*": {"backend": "slow"}},
        }
    )
    client.server.app[GATEWAY].protocols["anthropic"].ping_interval = 0.05
    resp = await client.post(
        "/v1/messages",
        json={
            "model": "slow",
            "max_tokens": 64,
            "stream": True,
            "messages": [{"role": "user", "content": "one two"}],
        },
    )
    types = check_stream(sse_frames(await resp.text()))
    assert types.count("ping") >= 2  # the one after message_start, then keep-alives
    assert types[-1] == "message_stop"


async def test_client_disconnect_cancels_the_upstream_request(make_gateway, claude_upstream):
    client = await make_gateway(claude_config(claude_upstream))
    resp = await client.post(
        "/v1/messages",
        json={
            "model": "claude-test",
            "max_tokens": 64,
            "stream": True,
            "messages": [{"role": "user", "content": "DRIP"}],
        },
    )
    await resp.content.readline()
    resp.close()
    for _ in range(100):
        if claude_upstream.app[CANCELLED]:
            break
        await asyncio.sleep(0.05)
    assert claude_upstream.app[CANCELLED] == ["DRIP"]


async def test_base_url_must_be_the_bare_host(make_gateway):
    from gateway import ConfigError

    with pytest.raises(ConfigError) as caught:
        await make_gateway(claude_config("http://127.0.0.1:9/v1"))
    assert "bare host" in str(caught.value)
