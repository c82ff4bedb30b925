"""POST /v1/responses (OpenAI's Responses API) with the official openai package as the caller,
over the echo backend and both kinds of fake upstream; everything the gateway sends is checked
against OpenAI's published schemas (``Response``, ``ResponseStreamEvent``)."""

from __future__ import annotations

import openai
import orjson
import pytest
from support.configs import both_config, recorded
from support.openapi import validate

FUNCTIONS = [
    {
        "type": "function",
        "name": n,
        "parameters": {"type": "object", "properties": {}},
        "strict": False,
    }
    for n in ("get_weather", "get_time", "step")
]
MODELS = ["gpt-test", "claude-test"]


@pytest.fixture
async def gateway(make_gateway, upstream, claude_upstream):
    cfg = both_config(upstream, claude_upstream)
    cfg["backends"]["echo"] = {"kind": "echo"}
    cfg["models"]["echo"] = {"backend": "echo"}
    return await make_gateway(cfg)


def stream_events(body: str) -> list[dict]:
    """The events of a Responses stream, each checked: ``event:`` line equal to its type, the
    schema, and sequence numbers counting up from 0."""
    events = []
    for chunk in body.split("\n\n"):
        if not chunk.strip():
            continue
        lines = dict(line.split(": ", 1) for line in chunk.splitlines())
        data = orjson.loads(lines["data"])
        assert lines["event"] == data["type"]
        validate(data, "ResponseStreamEvent")
        events.append(data)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


async def test_echo_response_conforms(gateway, sdk):
    raw = await sdk(gateway).responses.with_raw_response.create(
        model="echo", input="hello gateway", instructions="be brief"
    )
    body = orjson.loads(raw.content)
    validate(body, "Response")
    response = raw.parse()
    assert response.output_text == "hello gateway" and response.status == "completed"
    assert response.instructions == "be brief"
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens


async def test_stream_event_sequence(gateway, sdk):
    resp = await gateway.post(
        "/v1/responses", json={"model": "echo", "input": "one two three", "stream": True}
    )
    events = stream_events(await resp.text())
    types = [e["type"] for e in events]
    assert types[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["delta"] for e in events if e["type"] == "response.output_text.delta"] == [
        "one ",
        "two ",
        "three",
    ]
    assert len({e["response"]["id"] for e in events if "response" in e}) == 1
    async with sdk(gateway).responses.stream(model="echo", input="one two three") as stream:
        final = await stream.get_final_response()
    assert final.output_text == "one two three"


@pytest.mark.parametrize("model", MODELS)
async def test_streamed_function_calls(gateway, sdk, model):
    async with sdk(gateway).responses.stream(model=model, input="TOOLS", tools=FUNCTIONS) as stream:
        final = await stream.get_final_response()
    calls = [
        (c.call_id, c.name, orjson.loads(c.arguments))
        for c in final.output
        if c.type == "function_call"
    ]
    prefix = "call" if model == "gpt-test" else "toolu"
    assert calls == [
        (f"{prefix}_weather_1", "get_weather", {"city": "Paris"}),
        (f"{prefix}_time_2", "get_time", {"tz": "CET"}),
    ]
    if model == "claude-test":
        assert final.output[0].type == "message" and final.output_text == "Let me check."
    resp = await gateway.post(
        "/v1/responses",
        json={"model": model, "input": "TOOLS", "tools": FUNCTIONS, "stream": True},
    )
    events = stream_events(await resp.text())
    validate(events[-1]["response"], "Response")
    assert events[-1]["response"]["usage"]["input_tokens"] > 0


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("model", MODELS)
async def test_three_function_rounds(gateway, upstream, claude_upstream, sdk, model, stream):
    api = sdk(gateway)
    items: list = [{"role": "user", "content": "ROUNDS"}]
    for _ in range(4):
        if stream:
            async with api.responses.stream(model=model, input=items, tools=FUNCTIONS) as s:
                response = await s.get_final_response()
        else:
            response = await api.responses.create(model=model, input=items, tools=FUNCTIONS)
        calls = [o for o in response.output if o.type == "function_call"]
        if not calls:
            break
        for call in calls:
            items.append(
                {
                    "type": "function_call",
                    "call_id": call.call_id,
                    "name": call.name,
                    "arguments": call.arguments,
                }
            )
            items.append({"type": "function_call_output", "call_id": call.call_id, "output": "ok"})
    assert response.output_text == "upstream says: ROUNDS"
    if model == "gpt-test":
        sent = recorded(upstream)[-1]["messages"]
        assert [m["role"] for m in sent] == ["user"] + ["assistant", "tool"] * 3
    else:
        sent = recorded(claude_upstream)[-1]["messages"]
        assert [m["role"] for m in sent] == ["user"] + ["assistant", "user"] * 3


@pytest.mark.parametrize("model", MODELS)
async def test_failure_mid_stream_fails_the_response(gateway, sdk, model):
    for trigger in ("BREAK", "ERRFRAME"):
        resp = await gateway.post(
            "/v1/responses", json={"model": model, "input": trigger, "stream": True}
        )
        events = stream_events(await resp.text())
        types = [e["type"] for e in events]
        assert types[-2:] == ["error", "response.failed"], (trigger, types)
        assert "response.completed" not in types
        assert events[-1]["response"]["status"] == "failed"
        assert events[-1]["response"]["error"]["message"]
        with pytest.raises(RuntimeError, match=r"response\.completed"):
            async with sdk(gateway).responses.stream(model=model, input=trigger) as stream:
                await stream.get_final_response()


async def test_request_fields_are_translated(gateway, upstream, sdk):
    await sdk(gateway).responses.create(
        model="gpt-test",
        instructions="be brief",
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "what is this?"},
                    {"type": "input_image", "image_url": "https://x.test/cat.png", "detail": "low"},
                ],
            }
        ],
        max_output_tokens=99,
        temperature=0.3,
        tools=FUNCTIONS[:1],
        tool_choice={"type": "function", "name": "get_weather"},
        text={"format": {"type": "json_schema", "name": "answer", "schema": {"type": "object"}}},
    )
    sent = recorded(upstream)[-1]
    assert sent["messages"] == [
        {"role": "system", "content": "be brief"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this?"},
                {
                    "type": "image_url",
                    "image_url": {"url": "https://x.test/cat.png", "detail": "low"},
                },
            ],
        },
    ]
    assert sent["max_tokens"] == 99 and sent["temperature"] == 0.3
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": {"type": "object"}},
    }


async def test_conversations_are_refused_clearly(gateway, sdk):
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk(gateway).responses.create(model="echo", input="hi", conversation="conv_123")
    assert caught.value.body["param"] == "conversation"
    assert "previous_response_id" in caught.value.message
