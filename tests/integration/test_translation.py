"""Every client with every upstream: the official openai and anthropic packages against fake
OpenAI and Anthropic upstreams, through the canonical model (and the same-protocol fast paths).

For each of the four client x upstream pairs: a streamed tool call is reassembled by the SDK's
own stream helper and matches what the upstream sent; a three-round tool conversation survives
the round trip; a failure mid-stream surfaces as an error in the client. Then the mapping
details: what each direction sends upstream, and usage and stop reasons on the way back.
"""

from __future__ import annotations

import logging

import anthropic
import openai
import orjson
import pytest
from anthropic.types import Message
from fakes import anthropic_upstream, openai_upstream
from support.configs import both_config, recorded
from support.openapi import validate

from gateway import Filter, hookimpl

PAIRS = [
    ("openai", "gpt-test"),
    ("openai", "claude-test"),
    ("anthropic", "gpt-test"),
    ("anthropic", "claude-test"),
]
IDS = [f"{c}-client-{m.split('-')[0]}-upstream" for c, m in PAIRS]
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}}


@pytest.fixture
async def gateway(make_gateway, upstream, claude_upstream):
    return await make_gateway(both_config(upstream, claude_upstream))


class Observe(Filter):
    """An event filter: with one installed, same-protocol streams are re-encoded, not relayed."""

    async def on_event(self, event, exchange):
        return event


class ObservePlugin:
    @hookimpl
    def gateway_register_filters(self, register):
        register("observe", lambda gw: Observe())


def block_discipline(body: str) -> list[dict]:
    """The frames of an Anthropic stream, checked: each content block is started, filled and
    stopped before the next one starts, and every event line names its data's type."""
    frames, open_block, last = [], None, -1
    for chunk in body.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in chunk.splitlines() if ": " in line)
        if "data" not in lines:
            continue
        data = orjson.loads(lines["data"])
        assert lines.get("event") == data["type"]
        if data["type"] == "content_block_start":
            assert open_block is None and data["index"] == last + 1
            open_block = last = data["index"]
        elif data["type"] == "content_block_delta":
            assert data["index"] == open_block
        elif data["type"] == "content_block_stop":
            assert data["index"] == open_block
            open_block = None
        frames.append(data)
    assert open_block is None
    return frames


def expected_calls(model: str) -> list[tuple[str, str, dict]]:
    """The tool calls the fake upstream behind ``model`` sends for ``TOOLS``."""
    fake = openai_upstream if model == "gpt-test" else anthropic_upstream
    return [(cid, name, orjson.loads("".join(args))) for cid, name, args in fake.TOOL_CALLS]


def openai_tools() -> list[dict]:
    return [
        {"type": "function", "function": {"name": n, "parameters": WEATHER}}
        for n in ("get_weather", "get_time", "step")
    ]


def claude_tools() -> list[dict]:
    return [{"name": n, "input_schema": WEATHER} for n in ("get_weather", "get_time", "step")]


@pytest.mark.parametrize("relay", [True, False], ids=["relayed", "re-encoded"])
@pytest.mark.parametrize(("client_kind", "model"), PAIRS, ids=IDS)
async def test_streamed_tool_calls_are_reassembled_by_the_sdk(
    make_gateway, upstream, claude_upstream, sdk, claude_sdk, client_kind, model, relay
):
    plugins = () if relay else [("observe", ObservePlugin())]
    gateway = await make_gateway(both_config(upstream, claude_upstream), plugins=plugins)
    messages = [{"role": "user", "content": "TOOLS"}]
    if client_kind == "openai":
        async with sdk(gateway).chat.completions.stream(
            model=model, messages=messages, tools=openai_tools()
        ) as stream:
            final = await stream.get_final_completion()
        choice = final.choices[0]
        calls = [
            (c.id, c.function.name, orjson.loads(c.function.arguments))
            for c in choice.message.tool_calls
        ]
        assert [c.index for c in choice.message.tool_calls] == [0, 1]
        assert choice.finish_reason == "tool_calls"
    else:
        async with claude_sdk(gateway).messages.stream(
            model=model, max_tokens=256, messages=messages, tools=claude_tools()
        ) as stream:
            final = await stream.get_final_message()
        calls = [(b.id, b.name, b.input) for b in final.content if b.type == "tool_use"]
        assert final.stop_reason == "tool_use"
        resp = await gateway.post(
            "/v1/messages",
            json={"model": model, "max_tokens": 256, "stream": True, "messages": messages},
        )
        frames = block_discipline(await resp.text())
        starts = [f["content_block"]["type"] for f in frames if f["type"] == "content_block_start"]
        assert starts == ["text"] * (model == "claude-test") + ["tool_use", "tool_use"]
    assert calls == expected_calls(model)


async def openai_rounds(api: openai.AsyncOpenAI, model: str, stream: bool) -> str:
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "ROUNDS"}]
    for _ in range(4):
        if stream:
            async with api.chat.completions.stream(
                model=model, messages=messages, tools=openai_tools()
            ) as s:
                out = await s.get_final_completion()
        else:
            out = await api.chat.completions.create(
                model=model, messages=messages, tools=openai_tools()
            )
        message = out.choices[0].message
        if not message.tool_calls:
            return message.content
        messages.append(
            {
                "role": "assistant",
                "content": message.content or None,
                "tool_calls": [
                    {"id": c.id, "type": "function", "function": c.function.model_dump()}
                    for c in message.tool_calls
                ],
            }
        )
        for call in message.tool_calls:
            messages.append({"role": "tool", "tool_call_id": call.id, "content": f"ok {call.id}"})
    raise AssertionError("the conversation did not end")


async def claude_rounds(api: anthropic.AsyncAnthropic, model: str, stream: bool) -> str:
    messages = [{"role": "user", "content": "ROUNDS"}]
    for _ in range(4):
        kwargs = {
            "model": model,
            "max_tokens": 256,
            "system": "be brief",
            "messages": messages,
            "tools": claude_tools(),
        }
        if stream:
            async with api.messages.stream(**kwargs) as s:
                out = await s.get_final_message()
        else:
            out = await api.messages.create(**kwargs)
        calls = [b for b in out.content if b.type == "tool_use"]
        if not calls:
            return "".join(b.text for b in out.content if b.type == "text")
        messages.append({"role": "assistant", "content": [b.model_dump() for b in out.content]})
        messages.append(
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": c.id, "content": f"ok {c.id}"}
                    for c in calls
                ],
            }
        )
    raise AssertionError("the conversation did not end")


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize(("client_kind", "model"), PAIRS, ids=IDS)
async def test_three_tool_rounds_survive_the_round_trip(
    gateway, upstream, claude_upstream, sdk, claude_sdk, client_kind, model, stream
):
    if client_kind == "openai":
        answer = await openai_rounds(sdk(gateway), model, stream)
    else:
        answer = await claude_rounds(claude_sdk(gateway), model, stream)
    assert answer == "upstream says: ROUNDS"
    if model == "gpt-test":
        sent = recorded(upstream)[-1]["messages"]
        assert [m["role"] for m in sent] == ["system", "user"] + ["assistant", "tool"] * 3
        ids = [m["tool_call_id"] for m in sent if m["role"] == "tool"]
        calls = [m["tool_calls"][0]["id"] for m in sent if m["role"] == "assistant"]
        assert ids == calls == ["call_round_0", "call_round_1", "call_round_2"]
    else:
        body = recorded(claude_upstream)[-1]
        assert body["system"] in ("be brief", [{"type": "text", "text": "be brief"}])
        sent = body["messages"]
        assert [m["role"] for m in sent] == ["user"] + ["assistant", "user"] * 3
        for turn, answer_turn in zip(sent[1::2], sent[2::2], strict=True):
            (use,) = [b for b in turn["content"] if b["type"] == "tool_use"]
            (result,) = answer_turn["content"]
            assert result == {
                "type": "tool_result",
                "tool_use_id": use["id"],
                "content": f"ok {use['id']}",
            }
        assert [t["content"][-1]["input"] for t in sent[1::2]] == [{"n": 0}, {"n": 1}, {"n": 2}]


@pytest.mark.parametrize(("client_kind", "model"), PAIRS, ids=IDS)
async def test_a_failure_mid_stream_is_an_error_in_the_client(
    gateway, sdk, claude_sdk, client_kind, model
):
    for trigger in ("BREAK", "HALFFRAME", "ERRFRAME", "NOFINISH"):
        messages = [{"role": "user", "content": trigger}]
        seen = []
        if client_kind == "openai":
            with pytest.raises(openai.APIError):
                stream = await sdk(gateway).chat.completions.create(
                    model=model, messages=messages, stream=True
                )
                async for chunk in stream:
                    seen.append(chunk.choices[0].finish_reason if chunk.choices else None)
            assert seen and not any(seen), (trigger, seen)
        else:
            with pytest.raises(anthropic.APIStatusError):
                async with claude_sdk(gateway).messages.stream(
                    model=model, max_tokens=64, messages=messages
                ) as stream:
                    async for event in stream:
                        seen.append(event.type)
            assert "message_start" in seen, trigger
            assert "message_delta" not in seen or model == "claude-test", (trigger, seen)
            assert "message_stop" not in seen, (trigger, seen)


async def test_openai_request_to_anthropic_upstream(gateway, claude_upstream, sdk, caplog):
    image = "data:image/png;base64,iVBORw0KGgo="
    with caplog.at_level(logging.DEBUG, logger="gateway.protocols.anthropic.messages"):
        out = await sdk(gateway).chat.completions.create(
            model="claude-test",
            messages=[
                {"role": "system", "content": "be brief"},
                {"role": "developer", "content": "answer in French"},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what is this?"},
                        {"type": "image_url", "image_url": {"url": image}},
                        {"type": "image_url", "image_url": {"url": "https://x.test/cat.png"}},
                    ],
                },
                {"role": "assistant", "content": "A cat."},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "weather?", "cache_control": {"type": "ephemeral"}}
                    ],
                },
            ],
            tools=openai_tools()[:1],
            tool_choice="required",
            parallel_tool_calls=False,
            stop=["###"],
            temperature=1.5,
            top_p=0.9,
            seed=7,
            user="u-42",
            response_format={"type": "json_object"},
            extra_body={"logit_bias": {"1": 2}},
        )
    assert out.choices[0].message.content == "upstream says: weather?"
    sent = recorded(claude_upstream)[-1]
    assert sent["model"] == "up-claude" and sent["max_tokens"] == 4096  # the backend's default
    assert sent["system"] == [
        {"type": "text", "text": "be brief"},
        {"type": "text", "text": "answer in French"},
    ]
    assert sent["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this?"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
                },
                {"type": "image", "source": {"type": "url", "url": "https://x.test/cat.png"}},
            ],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "A cat."}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "weather?", "cache_control": {"type": "ephemeral"}}
            ],
        },
    ]
    assert sent["tools"] == [{"name": "get_weather", "input_schema": WEATHER}]
    assert sent["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert sent["stop_sequences"] == ["###"]
    assert sent["temperature"] == 1.0 and sent["top_p"] == 0.9  # clamped to Anthropic's range
    assert sent["metadata"] == {"user_id": "u-42"}
    assert not {"seed", "response_format", "logit_bias", "user"} & set(sent)
    dropped = [r.getMessage() for r in caplog.records if "dropping" in r.getMessage()]
    assert any("logit_bias" in m and "seed" in m for m in dropped)
    assert any("json_object" in m for m in dropped)  # Anthropic has no JSON mode


async def test_anthropic_request_to_openai_upstream(gateway, upstream, claude_sdk, caplog):
    with caplog.at_level(logging.DEBUG, logger="gateway.protocols.openai.chat"):
        out = await claude_sdk(gateway).messages.create(
            model="gpt-test",
            max_tokens=300,
            system=[{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
            messages=[
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {
                                "type": "base64",
                                "media_type": "image/jpeg",
                                "data": "AAAA",
                            },
                        },
                        {"type": "text", "text": "weather in Paris and the time?"},
                    ],
                },
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": "Checking."},
                        {
                            "type": "tool_use",
                            "id": "t1",
                            "name": "get_weather",
                            "input": {"city": "Paris"},
                        },
                        {"type": "tool_use", "id": "t2", "name": "get_time", "input": {}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "t1", "content": "sunny"},
                        {
                            "type": "tool_result",
                            "tool_use_id": "t2",
                            "content": [{"type": "text", "text": "no clock"}],
                            "is_error": True,
                        },
                        {"type": "text", "text": "and tomorrow?"},
                    ],
                },
            ],
            tools=claude_tools()[:2],
            tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
            stop_sequences=["###"],
            metadata={"user_id": "u-7"},
            extra_body={"temperature": 0.5, "top_k": 3, "thinking": {"type": "disabled"}},
        )
    assert out.content[0].text == "upstream says: and tomorrow?"
    sent = recorded(upstream)[-1]
    assert sent["model"] == "up-model" and sent["max_tokens"] == 300
    assert sent["messages"] == [
        {"role": "system", "content": "be brief"},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAAA"}},
                {"type": "text", "text": "weather in Paris and the time?"},
            ],
        },
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "t1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "t2",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": "{}"},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "t1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "t2", "content": "no clock"},
        {"role": "user", "content": "and tomorrow?"},
    ]
    assert sent["tools"] == [
        {"type": "function", "function": {"name": n, "parameters": WEATHER}}
        for n in ("get_weather", "get_time")
    ]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert sent["parallel_tool_calls"] is False
    assert sent["stop"] == ["###"] and sent["temperature"] == 0.5 and sent["user"] == "u-7"
    assert not {"top_k", "thinking", "metadata", "system", "stop_sequences"} & set(sent)
    dropped = [r.getMessage() for r in caplog.records if "dropping" in r.getMessage()]
    assert any("top_k" in m and "metadata" in m for m in dropped)
    assert any("cache_control" in m for m in dropped)
    assert any("tool result t2" in m for m in dropped)  # its is_error flag


async def test_usage_and_stop_reasons_map_both_ways(gateway, sdk, claude_sdk):
    # OpenAI client, Anthropic upstream: cached input counts in prompt_tokens
    raw = await sdk(gateway).chat.completions.with_raw_response.create(
        model="claude-test", messages=[{"role": "user", "content": "STOPSEQ"}], stop=["###"]
    )
    body = orjson.loads(raw.content)
    validate(body, "CreateChatCompletionResponse")
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["prompt_tokens"] == 11 + 5 + 2
    assert body["usage"]["prompt_tokens_details"] == {"cached_tokens": 5}
    assert body["usage"]["total_tokens"] == 18 + 7
    stream = await sdk(gateway).chat.completions.create(
        model="claude-test",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    assert chunks[-1].usage.prompt_tokens == 18 and chunks[-1].usage.completion_tokens == 7
    assert chunks[-2].choices[0].finish_reason == "stop"
    # Anthropic client, OpenAI upstream
    raw = await claude_sdk(gateway).messages.with_raw_response.create(
        model="gpt-test",
        max_tokens=50,
        messages=[{"role": "user", "content": "TOOLS"}],
        tools=claude_tools(),
    )
    msg = Message.model_validate(orjson.loads(await raw.read()))
    assert msg.stop_reason == "tool_use"
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (11, 7)
    assert [b.type for b in msg.content] == ["tool_use", "tool_use"]
    async with claude_sdk(gateway).messages.stream(
        model="gpt-test", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    ) as s:
        final = await s.get_final_message()
    assert final.stop_reason == "end_turn" and final.content[0].text == "upstream says: hi"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (11, 7)


async def test_translated_openai_stream_conforms_to_the_schema(gateway):
    resp = await gateway.post(
        "/v1/chat/completions",
        json={
            "model": "claude-test",
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "TOOLS"}],
            "tools": openai_tools(),
        },
    )
    frames = [f for f in (await resp.text()).split("\n\n") if f]
    assert frames[-1] == "data: [DONE]"
    chunks = [orjson.loads(f[6:]) for f in frames[:-1]]
    for chunk in chunks:
        validate(chunk, "CreateChatCompletionStreamResponse")
    assert len({c["id"] for c in chunks}) == 1
    calls = [
        call
        for c in chunks
        if c["choices"]
        for call in c["choices"][0]["delta"].get("tool_calls", [])
    ]
    assert [c["index"] for c in calls if "id" in c] == [0, 1]
    assert chunks[-1]["usage"]["prompt_tokens"] == 18
