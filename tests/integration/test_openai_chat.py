"""POST /v1/chat/completions with the official openai package as the caller."""

from __future__ import annotations

import asyncio

import openai
import orjson
import pytest
from fakes.openai_upstream import CANCELLED, HEADERS
from support.configs import recorded, upstream_config
from support.openapi import validate

MESSAGES = [{"role": "user", "content": "hello gateway"}]


async def test_echo_default_non_streaming(make_gateway, sdk):
    client = await make_gateway()
    resp = await sdk(client).chat.completions.with_raw_response.create(
        model="echo", messages=MESSAGES
    )
    assert resp.headers["x-hookgate-backend"] == "echo:echo"
    completion = resp.parse()
    assert completion.choices[0].message.content == "hello gateway"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.completion_tokens > 0
    assert (
        completion.usage.total_tokens
        == completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    validate(orjson.loads(resp.content), "CreateChatCompletionResponse")


async def test_echo_streams_word_by_word_with_usage(make_gateway, sdk):
    client = await make_gateway()
    stream = await sdk(client).chat.completions.create(
        model="echo",
        messages=[{"role": "user", "content": "one two three"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert texts == ["one ", "two ", "three"]
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    assert len({c.id for c in chunks}) == 1


async def test_stream_frames_conform_to_openai_schema(make_gateway):
    client = await make_gateway()
    resp = await client.post(
        "/v1/chat/completions",
        json={
            "model": "echo",
            "messages": MESSAGES,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    assert resp.status == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    body = (await resp.read()).decode()
    frames = [f for f in body.split("\n\n") if f]
    assert frames[-1] == "data: [DONE]"
    for frame in frames[:-1]:
        assert frame.startswith("data: ")
        chunk = orjson.loads(frame[6:])
        validate(chunk, "CreateChatCompletionStreamResponse")
        assert chunk["usage"] is None or chunk["choices"] == []


async def test_sync_client_works(make_gateway):
    client = await make_gateway()
    sync = openai.OpenAI(base_url=str(client.make_url("/v1")), api_key="x", max_retries=0)

    def call():
        with sync:
            done = sync.chat.completions.create(model="echo", messages=MESSAGES)
            streamed = "".join(
                c.choices[0].delta.content or ""
                for c in sync.chat.completions.create(model="echo", messages=MESSAGES, stream=True)
            )
            return done.choices[0].message.content, streamed

    assert await asyncio.to_thread(call) == ("hello gateway", "hello gateway")


async def test_relay_to_openai_upstream(make_gateway, upstream, sdk):
    client = await make_gateway(upstream_config(upstream))
    resp = await sdk(client).chat.completions.with_raw_response.create(
        model="gpt-test",
        messages=MESSAGES,
        temperature=0.2,
        extra_body={"repetition_penalty": 1.1, "chat_template_kwargs": {"thinking": False}},
    )
    completion = resp.parse()
    assert completion.choices[0].message.content == "upstream says: hello gateway"
    assert completion.system_fingerprint == "fp_fake"  # the upstream body is relayed unchanged
    body = recorded(upstream)[-1]
    assert body["model"] == "up-model"
    assert body["repetition_penalty"] == 1.1 and body["chat_template_kwargs"] == {"thinking": False}
    assert body["temperature"] == 0.2
    headers = upstream.app[HEADERS][-1]
    assert headers["Authorization"] == "Bearer upstream-secret"
    assert headers["X-Request-Id"] == resp.headers["x-request-id"]


async def test_extra_headers_reach_upstream(make_gateway, upstream, sdk):
    client = await make_gateway(upstream_config(upstream, headers={"OpenAI-Organization": "org-1"}))
    await sdk(client).chat.completions.create(model="gpt-test", messages=MESSAGES)
    assert upstream.app[HEADERS][-1]["OpenAI-Organization"] == "org-1"


async def test_streamed_tool_calls_reassembled_by_sdk_helper(make_gateway, upstream, sdk):
    client = await make_gateway(upstream_config(upstream))
    tools = [
        {
            "type": "function",
            "function": {"name": n, "parameters": {"type": "object", "properties": {}}},
        }
        for n in ("get_weather", "get_time")
    ]
    async with sdk(client).chat.completions.stream(
        model="gpt-test",
        messages=[{"role": "user", "content": "TOOLS"}],
        tools=tools,
    ) as stream:
        final = await stream.get_final_completion()
    calls = final.choices[0].message.tool_calls
    assert [(c.id, c.function.name, orjson.loads(c.function.arguments)) for c in calls] == [
        ("call_weather_1", "get_weather", {"city": "Paris"}),
        ("call_time_2", "get_time", {"tz": "CET"}),
    ]
    assert final.choices[0].finish_reason == "tool_calls"


async def test_tool_calls_through_a_rewriting_filter_are_reencoded(make_gateway, upstream, sdk):
    """With an event filter the raw relay is off: the gateway re-encodes the stream itself."""
    from gateway import Filter, hookimpl

    class Upper(Filter):
        name = "upper"

        async def on_event(self, event, exchange):
            if type(event).__name__ == "TextDelta":
                event.text = event.text.upper()
            return event

    class Plugin:
        @hookimpl
        def gateway_register_filters(self, register):
            register("upper", lambda gw: Upper())

    client = await make_gateway(upstream_config(upstream), plugins=[("upper", Plugin())])
    tools = [{"type": "function", "function": {"name": "get_weather"}}]
    async with sdk(client).chat.completions.stream(
        model="gpt-test", messages=[{"role": "user", "content": "TOOLS"}], tools=tools
    ) as stream:
        final = await stream.get_final_completion()
    assert [c.function.arguments for c in final.choices[0].message.tool_calls] == [
        '{"city": "Paris"}',
        '{"tz": "CET"}',
    ]
    stream = await sdk(client).chat.completions.create(
        model="gpt-test", messages=MESSAGES, stream=True
    )
    assert (
        "".join([c.choices[0].delta.content or "" async for c in stream])
        == "UPSTREAM SAYS: HELLO GATEWAY"
    )


async def test_multi_turn_tool_history_is_passed_on(make_gateway, upstream, sdk):
    client = await make_gateway(upstream_config(upstream))
    api = sdk(client)
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "ROUNDS"}]
    for _ in range(3):
        out = await api.chat.completions.create(model="gpt-test", messages=messages)
        call = out.choices[0].message.tool_calls[0]
        messages.append(out.choices[0].message.model_dump(exclude_none=True))
        messages.append(
            {"role": "tool", "tool_call_id": call.id, "content": f"result of {call.id}"}
        )
    final = await api.chat.completions.create(model="gpt-test", messages=messages)
    assert final.choices[0].message.content == "upstream says: ROUNDS"
    sent = recorded(upstream)[-1]["messages"]
    assert [m["role"] for m in sent] == ["system", "user"] + ["assistant", "tool"] * 3
    assert [m["tool_call_id"] for m in sent if m["role"] == "tool"] == [
        "call_round_0",
        "call_round_1",
        "call_round_2",
    ]


async def test_upstream_failure_mid_stream_is_an_error_not_a_stop(make_gateway, upstream, sdk):
    client = await make_gateway(upstream_config(upstream))
    for trigger in ("BREAK", "HALFFRAME", "ERRFRAME", "NOFINISH"):
        stream = await sdk(client).chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": trigger}], stream=True
        )
        seen = []
        with pytest.raises(openai.APIError):
            async for chunk in stream:
                seen.append(chunk)
        assert seen, trigger
        assert all(c.choices[0].finish_reason is None for c in seen if c.choices), trigger


async def test_mid_stream_failure_while_re_encoding(make_gateway, upstream):
    """The same failures surface when the gateway encodes frames itself (include_usage on a
    rewritten stream): an error frame, never a finish."""
    from gateway import Filter, hookimpl

    class Observe(Filter):
        async def on_event(self, event, exchange):
            return event

    class Plugin:
        @hookimpl
        def gateway_register_filters(self, register):
            register("observe", lambda gw: Observe())

    client = await make_gateway(upstream_config(upstream), plugins=[("observe", Plugin())])
    resp = await client.post(
        "/v1/chat/completions",
        json={
            "model": "gpt-test",
            "stream": True,
            "messages": [{"role": "user", "content": "BREAK"}],
        },
    )
    body = (await resp.read()).decode()
    frames = [orjson.loads(f[6:]) for f in body.split("\n\n") if f.startswith("data: {")]
    assert "error" in frames[-1] and "closed the connection" in frames[-1]["error"]["message"]
    assert "[DONE]" not in body
    assert not any(f.get("choices") and f["choices"][0]["finish_reason"] for f in frames[:-1])


async def test_client_disconnect_cancels_the_upstream_request(make_gateway, upstream):
    client = await make_gateway(upstream_config(upstream))
    resp = await client.post(
        "/v1/chat/completions",
        json={
            "model": "gpt-test",
            "stream": True,
            "messages": [{"role": "user", "content": "DRIP"}],
        },
    )
    frames = 0
    async with asyncio.timeout(10):  # relayed frames go out as they arrive, not at the end
        while frames < 3:
            if (await resp.content.readline()).startswith(b"data: "):
                frames += 1
    resp.close()  # the client goes away mid-stream
    for _ in range(100):
        if upstream.app[CANCELLED]:
            break
        await asyncio.sleep(0.05)
    assert upstream.app[CANCELLED] == ["DRIP"]


async def test_upstream_as_a_separate_process(make_gateway, upstream_process, sdk):
    client = await make_gateway(upstream_config(upstream_process))
    api = sdk(client)
    done = await api.chat.completions.create(model="gpt-test", messages=MESSAGES)
    assert done.choices[0].message.content == "upstream says: hello gateway"
    stream = await api.chat.completions.create(model="gpt-test", messages=MESSAGES, stream=True)
    assert (
        "".join([c.choices[0].delta.content or "" async for c in stream])
        == "upstream says: hello gateway"
    )


async def test_models_list_and_lookup(make_gateway, upstream, sdk):
    cfg = upstream_config(upstream)
    cfg["models"]["llama"] = {"backend": "up"}
    cfg["models"]["gpt-*"] = {"backend": "up"}
    client = await make_gateway(cfg)
    api = sdk(client)
    page = await api.models.list()
    # the glob lists the names of the upstream's own list that it matches
    assert sorted(m.id for m in page.data) == ["gpt-fake-1", "gpt-fake-2", "gpt-test", "llama"]
    raw = await client.get("/v1/models")
    validate(await raw.json(), "ListModelsResponse")
    assert (await api.models.retrieve("llama")).id == "llama"
    # a glob routes names it matches, upstream model = the requested name
    out = await api.chat.completions.create(model="gpt-anything", messages=MESSAGES)
    assert out.choices[0].message.content == "upstream says: hello gateway"
    assert recorded(upstream)[-1]["model"] == "gpt-anything"
