"""The ``openai_responses`` backend: an upstream that speaks the Responses API. Responses
clients are relayed (custom, namespaced and hosted tools, ``input_file`` parts and unknown
fields reach it as sent; the gateway's own state is resolved first); Chat Completions and
Anthropic clients are translated. The official SDKs are the callers; every Responses body is
checked against OpenAI's published schemas."""

from __future__ import annotations

import openai
import orjson
import pytest
from fakes import responses_upstream
from support.openapi import validate


@pytest.fixture
async def responder(aiohttp_server):
    return await aiohttp_server(responses_upstream.make_app())


@pytest.fixture
async def gateway(make_gateway, responder):
    return await make_gateway(
        {
            "backends": {
                "resp": {
                    "kind": "openai_responses",
                    "base_url": str(responder.make_url("/v1")),
                    "api_key": "responses-secret",
                }
            },
            "models": {"gpt-resp": {"backend": "resp", "upstream_model": "up-resp"}},
        }
    )


def sent(responder) -> dict:
    return responder.app[responses_upstream.REQUESTS][-1]


TOOLS = [
    {"type": "custom", "name": "apply_patch", "description": "Apply a patch."},
    {
        "type": "namespace",
        "name": "collab",
        "description": "Sub-agents.",
        "tools": [{"type": "function", "name": "spawn", "parameters": {"type": "object"}}],
    },
    {"type": "web_search"},
]


@pytest.mark.parametrize("stream", [False, True])
async def test_responses_clients_are_relayed(gateway, responder, sdk, stream):
    api = sdk(gateway)
    script = 'CALL apply_patch {"input": "*** Begin Patch"}; collab.spawn {"task": "t"}'
    content = [
        {"type": "input_file", "filename": "a.txt", "file_data": "data:text/plain;base64,aGk="},
        {"type": "input_text", "text": script},
    ]
    raw = await api.responses.with_raw_response.create(
        model="gpt-resp",
        input=[{"role": "user", "content": content}],
        tools=TOOLS,
        stream=stream,
        store=False,
        extra_body={"prompt_cache_key": "k-1"},
    )
    body = sent(responder)
    assert body["model"] == "up-resp" and body["tools"] == TOOLS
    assert body["input"][0]["content"] == content and body["prompt_cache_key"] == "k-1"
    if stream:
        frames = [
            orjson.loads(line[6:])
            for line in (await raw.http_response.aread()).decode().splitlines()
            if line.startswith("data: ")
        ]
        for frame in frames:
            validate(frame, "ResponseStreamEvent")
        response = frames[-1]["response"]
    else:
        response = orjson.loads(raw.content)
    validate(response, "Response")
    calls = [i for i in response["output"] if i["type"] != "message"]
    assert calls[0]["type"] == "custom_tool_call" and calls[0]["input"] == "*** Begin Patch"
    assert (calls[1]["name"], calls[1]["namespace"]) == ("spawn", "collab")
    assert orjson.loads(calls[1]["arguments"]) == {"task": "t"}


async def test_stored_state_is_resolved_before_the_upstream(gateway, responder, sdk):
    api = sdk(gateway)
    first = await api.responses.create(model="gpt-resp", input="hello")
    assert first.output_text == "upstream says: hello"
    assert first.output[0].type == "reasoning"
    second = await api.responses.create(
        model="gpt-resp", input="again", previous_response_id=first.id, background=False
    )
    body = sent(responder)
    assert "previous_response_id" not in body
    # the earlier reasoning has no encrypted_content to replay: it stays behind
    assert "reasoning" not in [i.get("type") for i in body["input"]]
    texts = [
        (i.get("role"), i["content"][0]["text"])
        for i in body["input"]
        if i.get("type") == "message"
    ]
    assert texts == [
        ("user", "hello"),
        ("assistant", "upstream says: hello"),
        ("user", "again"),
    ]
    assert second.output_text == "upstream says: again"
    assert second.usage.input_tokens == 12 and second.usage.input_tokens_details.cached_tokens == 2


@pytest.mark.parametrize("stream", [False, True])
async def test_chat_clients_are_translated(gateway, responder, sdk, stream):
    api = sdk(gateway)
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": 'CALL get_weather {"city": "Paris"}'},
    ]
    tools = [
        {
            "type": "function",
            "function": {"name": "get_weather", "parameters": {"type": "object"}},
        }
    ]
    if stream:
        chunks = [
            c
            async for c in await api.chat.completions.create(
                model="gpt-resp", messages=messages, tools=tools, stream=True
            )
        ]
        calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or ()]
        name = calls[0].function.name
        arguments = "".join(tc.function.arguments or "" for tc in calls)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
    else:
        answer = await api.chat.completions.create(model="gpt-resp", messages=messages, tools=tools)
        call = answer.choices[0].message.tool_calls[0]
        name, arguments, finish = (
            call.function.name,
            call.function.arguments,
            answer.choices[0].finish_reason,
        )
    assert (name, orjson.loads(arguments), finish) == (
        "get_weather",
        {"city": "Paris"},
        "tool_calls",
    )
    body = sent(responder)
    assert body["instructions"] == "Be brief." and body["store"] is False
    assert body["tools"][0]["name"] == "get_weather"
    assert body["input"] == [
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": 'CALL get_weather {"city": "Paris"}'}],
        }
    ]

    done = await api.chat.completions.create(
        model="gpt-resp",
        tools=tools,
        messages=[
            *messages,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        ],
    )
    assert done.choices[0].message.content == "results: sunny"
    assert [i["type"] for i in sent(responder)["input"]][1:] == [
        "function_call",
        "function_call_output",
    ]


async def test_anthropic_clients_are_translated(gateway, responder, claude_sdk):
    api = claude_sdk(gateway)
    async with api.messages.stream(
        model="gpt-resp", max_tokens=100, messages=[{"role": "user", "content": "hi there"}]
    ) as stream:
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert text == "upstream says: hi there"
    assert final.usage.output_tokens == 5
    assert sent(responder)["max_output_tokens"] == 100


async def test_an_upstream_failure_fails_the_answer(gateway, sdk):
    api = sdk(gateway)
    async with api.responses.stream(model="gpt-resp", input="FAIL") as events:
        kinds = [e.type async for e in events]
    assert kinds[-2:] == ["error", "response.failed"]
    with pytest.raises(openai.APIError):
        async for _ in await api.chat.completions.create(
            model="gpt-resp", messages=[{"role": "user", "content": "FAIL"}], stream=True
        ):
            pass
