"""Translation carries meaning: structured output and reasoning cross protocols both ways, the
stop reason says tool use whenever there are tool calls, and the SDKs' own parse helpers get
the JSON they asked for (``chat.completions.parse``, ``messages.parse``), through an upstream
with structured outputs or one given a forced tool instead.
"""

from __future__ import annotations

import orjson
import pydantic
import pytest
from fakes import anthropic_upstream
from support.configs import both_config, recorded


class Weather(pydantic.BaseModel):
    city: str
    temperature: int


EXPECTED = Weather(city="Paris", temperature=21)
ASK = [{"role": "user", "content": "weather in Paris?"}]


@pytest.fixture
async def gateway(make_gateway, upstream, claude_upstream):
    return await make_gateway(both_config(upstream, claude_upstream))


def schema_of(sent: dict) -> dict:
    return sent["output_config"]["format"]["schema"]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_openai_parse_through_anthropic_structured_outputs(
    gateway, claude_upstream, sdk, stream
):
    api = sdk(gateway)
    if stream:
        async with api.chat.completions.stream(
            model="claude-test", messages=ASK, response_format=Weather
        ) as s:
            out = await s.get_final_completion()
    else:
        out = await api.chat.completions.parse(
            model="claude-test", messages=ASK, response_format=Weather
        )
    assert out.choices[0].message.parsed == EXPECTED
    sent = recorded(claude_upstream)[-1]
    assert schema_of(sent)["properties"].keys() == {"city", "temperature"}
    assert "tools" not in sent and "response_format" not in sent


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_a_forced_tool_stands_in_where_the_upstream_lacks_structured_outputs(
    make_gateway, upstream, claude_upstream, sdk, stream
):
    config = both_config(upstream, claude_upstream)
    config["backends"]["claude"]["structured_output"] = "tool"
    gateway = await make_gateway(config)
    api = sdk(gateway)
    if stream:
        async with api.chat.completions.stream(
            model="claude-test", messages=ASK, response_format=Weather
        ) as s:
            out = await s.get_final_completion()
    else:
        out = await api.chat.completions.parse(
            model="claude-test", messages=ASK, response_format=Weather
        )
    choice = out.choices[0]
    assert choice.message.parsed == EXPECTED and not choice.message.tool_calls
    assert choice.finish_reason == "stop"
    sent = recorded(claude_upstream)[-1]
    assert sent["tool_choice"] == {"type": "tool", "name": "json_output"}
    assert sent["tools"][-1]["input_schema"]["properties"].keys() == {"city", "temperature"}
    assert "output_config" not in sent


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_anthropic_parse_through_an_openai_upstream(gateway, upstream, claude_sdk, stream):
    api = claude_sdk(gateway)
    if stream:
        async with api.messages.stream(
            model="gpt-test", max_tokens=200, messages=ASK, output_format=Weather
        ) as s:
            out = await s.get_final_message()
        assert Weather.model_validate_json(out.content[0].text) == EXPECTED
    else:
        out = await api.messages.parse(
            model="gpt-test", max_tokens=200, messages=ASK, output_format=Weather
        )
        assert out.parsed_output == EXPECTED
    fmt = recorded(upstream)[-1]["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["schema"]["properties"].keys() == {"city", "temperature"}


@pytest.mark.parametrize(("effort", "budget"), [("low", 2048), ("medium", 8192), ("high", 16384)])
async def test_reasoning_effort_enables_anthropic_thinking(
    gateway, claude_upstream, sdk, effort, budget
):
    out = await sdk(gateway).chat.completions.create(
        model="claude-test",
        messages=ASK,
        max_tokens=1000,
        temperature=0.2,
        reasoning_effort=effort,
    )
    sent = recorded(claude_upstream)[-1]
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert sent["max_tokens"] == 1000 + budget and "temperature" not in sent
    # a non-streamed answer keeps the thinking, as reasoning_content
    message = out.choices[0].message
    assert message.content == "upstream says: weather in Paris?"
    assert message.model_extra["reasoning_content"] == "Let me think."


async def test_thinking_streams_as_reasoning_content(gateway, sdk):
    stream = await sdk(gateway).chat.completions.create(
        model="claude-test", messages=ASK, reasoning_effort="low", stream=True
    )
    reasoning, text = [], []
    async for chunk in stream:
        if chunk.choices:
            delta = chunk.choices[0].delta
            reasoning.append((delta.model_extra or {}).get("reasoning_content") or "")
            text.append(delta.content or "")
    assert "".join(reasoning) == "Let me think."
    assert "".join(text) == "upstream says: weather in Paris?"


@pytest.mark.parametrize(
    ("thinking", "effort"),
    [
        ({"type": "enabled", "budget_tokens": 1024}, "low"),
        ({"type": "enabled", "budget_tokens": 6000}, "medium"),
        ({"type": "enabled", "budget_tokens": 30000}, "xhigh"),
        ({"type": "adaptive"}, "medium"),
        ({"type": "disabled"}, None),
    ],
)
async def test_anthropic_thinking_becomes_reasoning_effort(
    gateway, upstream, claude_sdk, thinking, effort
):
    await claude_sdk(gateway).messages.create(
        model="gpt-test", max_tokens=4000, messages=ASK, thinking=thinking
    )
    assert recorded(upstream)[-1].get("reasoning_effort") == effort


async def test_adaptive_thinking_effort_is_carried(gateway, upstream, claude_sdk):
    await claude_sdk(gateway).messages.create(
        model="gpt-test",
        max_tokens=400,
        messages=ASK,
        thinking={"type": "adaptive"},
        output_config={"effort": "max"},
    )
    assert recorded(upstream)[-1]["reasoning_effort"] == "xhigh"


async def test_thinking_is_not_forced_beside_a_forced_tool(gateway, claude_upstream, sdk):
    await sdk(gateway).chat.completions.create(
        model="claude-test",
        messages=[{"role": "user", "content": "TOOLS"}],
        tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {}}}],
        tool_choice="required",
        reasoning_effort="high",
    )
    sent = recorded(claude_upstream)[-1]
    assert sent["tool_choice"] == {"type": "any"} and "thinking" not in sent


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_stop_after_tool_calls_is_tool_use(gateway, claude_sdk, sdk, stream):
    """An OpenAI-compatible server that ends tool calls with ``finish_reason: "stop"``."""
    ask = [{"role": "user", "content": "STOPTOOLS"}]
    tools = [{"name": "get_weather", "input_schema": {"type": "object"}}]
    api = claude_sdk(gateway)
    if stream:
        async with api.messages.stream(
            model="gpt-test", max_tokens=100, messages=ask, tools=tools
        ) as s:
            msg = await s.get_final_message()
    else:
        msg = await api.messages.create(model="gpt-test", max_tokens=100, messages=ask, tools=tools)
    assert msg.stop_reason == "tool_use"
    assert [b.name for b in msg.content if b.type == "tool_use"] == ["get_weather", "get_time"]
    out = await sdk(gateway).chat.completions.create(model="gpt-test", messages=ask)
    assert out.choices[0].finish_reason == "stop"  # relayed as the upstream said it


async def test_thinking_survives_the_next_turn(gateway, claude_upstream, claude_sdk):
    """Anthropic client, Anthropic upstream, the thinking block (signature and all) sent back."""
    api = claude_sdk(gateway)
    first = await api.messages.create(
        model="claude-test",
        max_tokens=3000,
        messages=ASK,
        thinking={"type": "enabled", "budget_tokens": 1024},
    )
    assert first.content[0].type == "thinking" and first.content[0].signature == "sig-fake"
    history = [*ASK, {"role": "assistant", "content": first.content}, ASK[0]]
    await api.messages.create(
        model="claude-test",
        max_tokens=3000,
        messages=history,
        thinking={"type": "enabled", "budget_tokens": 1024},
    )
    sent = recorded(claude_upstream)[-1]["messages"][1]["content"][0]
    assert sent == {"type": "thinking", "thinking": "Let me think.", "signature": "sig-fake"}


def test_the_fakes_agree_on_the_json_answer():
    from fakes import openai_upstream

    assert anthropic_upstream.JSON_ANSWER == openai_upstream.JSON_ANSWER
    assert Weather.model_validate(orjson.loads(anthropic_upstream.JSON_ANSWER)) == EXPECTED


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_responses_reasoning_items_carry_the_signature_to_the_next_turn(
    gateway, claude_upstream, sdk, stream
):
    """A Responses client over an Anthropic upstream: ``reasoning.effort`` turns thinking on,
    the reasoning item carries the thinking's signature in ``encrypted_content``, and sent
    back with the tool results it becomes the signed thinking block Anthropic requires."""
    api = sdk(gateway)
    tools = [
        {"type": "function", "name": n, "parameters": {"type": "object"}}
        for n in ("get_weather", "get_time")
    ]
    ask = [{"role": "user", "content": "TOOLS"}]
    args = {
        "model": "claude-test",
        "input": ask,
        "tools": tools,
        "reasoning": {"effort": "low"},
        "store": False,
    }
    if stream:
        async with api.responses.stream(**args) as s:
            first = await s.get_final_response()
    else:
        first = await api.responses.create(**args)
    assert recorded(claude_upstream)[-1]["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    reasoning = first.output[0]
    assert reasoning.type == "reasoning"
    assert reasoning.encrypted_content == "anthropic-thinking-signature:sig-fake"
    calls = [item for item in first.output if item.type == "function_call"]
    assert [c.name for c in calls] == ["get_weather", "get_time"]
    history = [
        *ask,
        *[item.model_dump(exclude_none=True) for item in first.output],
        *[{"type": "function_call_output", "call_id": c.call_id, "output": "done"} for c in calls],
    ]
    await api.responses.create(**{**args, "input": history})
    turn = recorded(claude_upstream)[-1]["messages"][1]
    assert turn["role"] == "assistant"
    assert turn["content"][0] == {
        "type": "thinking",
        "thinking": "Let me think.",
        "signature": "sig-fake",
    }
    assert [b["type"] for b in turn["content"][1:]] == ["text", "tool_use", "tool_use"]
