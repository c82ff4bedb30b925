"""Agents as models: the official OpenAI SDK calls an agent by name, streaming and not."""

from __future__ import annotations

import openai
import orjson
import pytest
from support.configs import claude_config, recorded, upstream_config
from support.openapi import validate

from gateway import GATEWAY, Finish, TextDelta, ToolCallStart, hookimpl
from gateway.agents import Agent, AgentsPlugin, tool
from gateway.backends.base import Backend

SCRIPT = 'CALL get_weather {"city": "Paris"}'
FINAL = 'Calling tools.\n\nresults: {"city":"Paris","temperature":21,"unit":"C"}'


def agent_config(upstream, **agent):
    cfg = upstream_config(upstream)
    cfg["agents"] = {
        "helper": {
            "model": "gpt-test",
            "system": "You help.",
            "tools": ["fakes.tools:get_weather"],
            **agent,
        }
    }
    return cfg


async def test_agent_by_name_non_streaming(make_gateway, upstream, sdk):
    client = await make_gateway(agent_config(upstream))
    resp = await sdk(client).chat.completions.with_raw_response.create(
        model="helper", messages=[{"role": "user", "content": SCRIPT}]
    )
    assert resp.headers["x-hookgate-backend"] == "agent:helper"
    completion = resp.parse()
    message = completion.choices[0].message
    assert message.content == FINAL and message.tool_calls is None  # its own tools stay inside
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "helper"
    assert completion.usage.total_tokens == 36  # two model calls, summed
    validate(orjson.loads(resp.content), "CreateChatCompletionResponse")
    assert len(recorded(upstream)) == 2


async def test_agent_by_name_streaming_passes_the_history_on(make_gateway, upstream, sdk):
    client = await make_gateway(agent_config(upstream))
    history = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "earlier question"},
        {"role": "assistant", "content": "earlier answer"},
        {"role": "user", "content": SCRIPT},
    ]
    stream = await sdk(client).chat.completions.create(
        model="helper", messages=history, stream=True, stream_options={"include_usage": True}
    )
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == FINAL
    assert not any(c.choices and c.choices[0].delta.tool_calls for c in chunks)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.total_tokens == 36
    assert len({c.id for c in chunks}) == 1
    first = recorded(upstream)[0]["messages"]
    assert [(m["role"], m["content"]) for m in first] == [
        ("system", "You help."),
        *[(m["role"], m["content"]) for m in history],
    ]


async def test_openai_tools_the_agent_does_not_own_are_the_clients(make_gateway, upstream, sdk):
    client = await make_gateway(agent_config(upstream))
    api = sdk(client)
    tools = [
        {"type": "function", "function": {"name": "confirm", "parameters": {"type": "object"}}}
    ]
    messages = [{"role": "user", "content": 'CALL confirm {"q": "sure?"}'}]
    out = await api.chat.completions.create(model="helper", messages=messages, tools=tools)
    assert out.choices[0].finish_reason == "tool_calls"
    call = out.choices[0].message.tool_calls[0]
    assert (call.id, call.function.name, call.function.arguments) == (
        "call_1",
        "confirm",
        '{"q": "sure?"}',
    )
    messages += [
        out.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "yes"},
    ]
    async with api.chat.completions.stream(
        model="helper", messages=messages, tools=tools
    ) as stream:
        final = await stream.get_final_completion()
    assert final.choices[0].message.content == "results: yes"
    async with api.chat.completions.stream(
        model="helper", messages=messages[:1], tools=tools
    ) as stream:
        handed = await stream.get_final_completion()
    assert handed.choices[0].message.tool_calls[0].function.name == "confirm"
    assert handed.choices[0].finish_reason == "tool_calls"


async def test_max_steps_is_an_error_for_openai_clients(make_gateway, upstream, sdk):
    client = await make_gateway(agent_config(upstream, max_steps=2))
    api = sdk(client)
    messages = [{"role": "user", "content": 'LOOP get_weather {"city": "Rome"}'}]
    with pytest.raises(openai.UnprocessableEntityError) as info:
        await api.chat.completions.create(model="helper", messages=messages)
    assert "max_steps" in info.value.message
    stream = await api.chat.completions.create(model="helper", messages=messages, stream=True)
    with pytest.raises(openai.APIError, match="max_steps"):
        async for _ in stream:
            pass


async def test_python_api_agent_tools_and_plugin_registration(make_gateway, sdk):
    calls = []

    @tool
    def shout(text: str) -> str:
        """Upper-case some text.

        Args:
            text: What to shout.
        """
        calls.append(text)
        return text.upper()

    class ToolModel(Backend):
        """A scripted model: calls ``shout`` once, then answers with the result."""

        async def stream(self, request, exchange):
            results = [m for m in request.messages if m.role == "tool"]
            if results:
                yield TextDelta(f"done: {results[0].parts[0].content}")
                yield Finish("stop")
                return
            assert [t.name for t in request.tools] == ["shout"]
            assert request.messages[0].text() in ("Shout things.", "go")
            yield ToolCallStart(0, "c1", "shout")
            from gateway import ToolCallDelta, ToolCallEnd

            yield ToolCallDelta(0, '{"text": "hi"}')
            yield ToolCallEnd(0)
            yield Finish("tool_calls")

    class Models:
        @hookimpl
        def gateway_register_backends(self, register):
            register("scripted", ToolModel)

    cfg = {
        "backends": {"s": {"kind": "scripted"}},
        "models": {"scripted": {"backend": "s"}},
        "agents": {"toml-agent": {"model": "scripted", "tools": ["shout"]}},
    }
    python_agent = Agent("py-agent", model="scripted", system="Shout things.", tools=[shout])
    client = await make_gateway(
        cfg,
        plugins=[("models", Models()), AgentsPlugin(agents=[python_agent], tools=[shout])],
    )
    for name in ("py-agent", "toml-agent"):
        out = await sdk(client).chat.completions.create(
            model=name, messages=[{"role": "user", "content": "go"}]
        )
        assert out.choices[0].message.content == "done: HI"
    assert calls == ["hi", "hi"]
    listed = [m.id async for m in sdk(client).models.list()]
    assert {"py-agent", "toml-agent"} <= set(listed)
    agents = client.server.app[GATEWAY].registry.agents
    assert agents["py-agent"].plugin == "agents-app"


async def test_anthropic_sdk_calls_an_agent_by_name(make_gateway, upstream, claude_sdk):
    client = await make_gateway(agent_config(upstream))
    api = claude_sdk(client)
    history = [
        {"role": "user", "content": "earlier question"},
        {"role": "assistant", "content": "earlier answer"},
        {"role": "user", "content": SCRIPT},
    ]
    message = await api.messages.create(
        model="helper", max_tokens=256, system="Be brief.", messages=history
    )
    assert [b.type for b in message.content] == ["text"]  # its own tools stay inside
    assert message.content[0].text == FINAL
    assert message.stop_reason == "end_turn" and message.model == "helper"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (22, 14)
    first = recorded(upstream)[0]["messages"]
    assert [(m["role"], m["content"]) for m in first] == [
        ("system", "You help.\n\nBe brief."),  # the instructions, as one system message
        *[(m["role"], m["content"]) for m in history],
    ]
    async with api.messages.stream(
        model="helper", max_tokens=256, system="Be brief.", messages=history
    ) as stream:
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert text == FINAL and [b.type for b in final.content] == ["text"]
    assert final.stop_reason == "end_turn"


async def test_anthropic_tools_the_agent_does_not_own_are_the_clients(
    make_gateway, upstream, claude_sdk
):
    client = await make_gateway(agent_config(upstream))
    api = claude_sdk(client)
    tools = [{"name": "confirm", "input_schema": {"type": "object"}}]
    messages = [{"role": "user", "content": 'CALL confirm {"q": "sure?"}'}]
    async with api.messages.stream(
        model="helper", max_tokens=256, messages=messages, tools=tools
    ) as stream:
        handed = await stream.get_final_message()
    assert handed.stop_reason == "tool_use"
    use = next(b for b in handed.content if b.type == "tool_use")
    assert (use.id, use.name, use.input) == ("call_1", "confirm", {"q": "sure?"})
    messages += [
        {"role": "assistant", "content": [b.model_dump() for b in handed.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "yes"}],
        },
    ]
    answer = await api.messages.create(
        model="helper", max_tokens=256, messages=messages, tools=tools
    )
    assert answer.content[0].text == "results: yes"


async def test_an_agent_thinking_with_claude_marks_failed_tool_results(
    make_gateway, claude_upstream, sdk
):
    cfg = claude_config(claude_upstream)
    cfg["agents"] = {"claudia": {"model": "claude-test", "tools": ["fakes.tools:step"]}}
    client = await make_gateway(cfg)
    out = await sdk(client).chat.completions.create(
        model="claudia", messages=[{"role": "user", "content": "ROUNDS"}]
    )
    assert out.choices[0].message.content == "upstream says: ROUNDS"
    last = recorded(claude_upstream)[-1]["messages"]  # the fake checks every tool_use is answered
    results = [b for m in last for b in m["content"] if b.get("type") == "tool_result"]
    assert [(r["tool_use_id"], r.get("is_error", False)) for r in results] == [
        ("toolu_round_0", False),
        ("toolu_round_1", True),
        ("toolu_round_2", False),
    ]
    assert "step 1 is broken" in str(results[1]["content"])


async def test_responses_api_calls_an_agent_by_name(make_gateway, upstream, sdk):
    client = await make_gateway(agent_config(upstream))
    api = sdk(client)
    response = await api.responses.create(model="helper", input=SCRIPT)
    assert response.output_text == FINAL
    assert not [item for item in response.output if item.type == "function_call"]
    stream = await api.responses.create(model="helper", input=SCRIPT, stream=True)
    deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
    assert "".join(deltas) == FINAL
