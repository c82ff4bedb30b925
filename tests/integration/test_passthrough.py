"""Relay is pass-through: a request in the upstream's own protocol reaches it exactly as the
client sent it (only the model replaced), whatever fields hookgate does not model; the same
requests translated to the other protocol keep their meaning or are refused naming the field.

Each request here is one a real upstream accepts and a real client sends (Claude Code's
mid-conversation ``system`` messages, Files API images, MCP toolsets, OpenAI's
``allowed_tools`` and ``custom`` tool choices, vLLM's video parts, legacy function calling).
"""

from __future__ import annotations

import anthropic
import openai
import pytest
from support.configs import both_config, recorded

CITY = {"type": "object", "properties": {"city": {"type": "string"}}}
FILE_IMAGE = {
    "type": "image",
    "source": {"type": "file", "file_id": "file_011CNha8iCJcU1wXNR6q4V8w"},
}


@pytest.fixture
async def gateway(make_gateway, upstream, claude_upstream):
    return await make_gateway(both_config(upstream, claude_upstream))


def claude_body(model: str = "claude-test") -> dict:
    """What Claude Code sends: a ``system`` message inside ``messages``, a Files API image in a
    message and in a tool result, an MCP toolset, fields hookgate does not know."""
    return {
        "model": model,
        "max_tokens": 1000,
        "system": [{"type": "text", "text": "You are Claude Code."}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "look"}, FILE_IMAGE]},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"p": "a.png"}}
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [FILE_IMAGE]}
                ],
            },
            {"role": "system", "content": "Reasoning effort changed to high."},
            {"role": "user", "content": "hello gateway"},
        ],
        "tools": [
            {"name": "Read", "input_schema": CITY},
            {"type": "mcp_toolset", "mcp_server_name": "docs"},
        ],
        "mcp_servers": [{"type": "url", "url": "https://mcp.example/sse", "name": "docs"}],
        "context_management": {"edits": []},
    }


def sdk_args(body: dict, *extra: str) -> dict:
    """``body`` as SDK keyword arguments, the fields the SDK does not type in ``extra_body``."""
    args = {k: v for k, v in body.items() if k not in extra}
    return {**args, "extra_body": {k: body[k] for k in extra if k in body}}


CLAUDE_EXTRA = ("mcp_servers", "context_management")


async def test_claude_code_request_is_relayed_exactly(gateway, claude_upstream, claude_sdk):
    body = claude_body()
    msg = await claude_sdk(gateway).messages.create(**sdk_args(body, *CLAUDE_EXTRA))
    assert msg.content[0].text == "upstream says: hello gateway"
    sent = recorded(claude_upstream)[-1]
    assert sent == {**body, "model": "up-claude"}
    async with claude_sdk(gateway).messages.stream(**sdk_args(body, *CLAUDE_EXTRA)) as stream:
        final = await stream.get_final_message()
    assert final.content[0].text == "upstream says: hello gateway"
    assert recorded(claude_upstream)[-1] == {**body, "model": "up-claude", "stream": True}


async def test_an_unknown_role_is_refused_in_words_claude_code_recognises(gateway, claude_sdk):
    body = claude_body()
    body["messages"][3]["role"] = "narrator"
    with pytest.raises(anthropic.BadRequestError) as info:
        await claude_sdk(gateway).messages.create(**sdk_args(body, *CLAUDE_EXTRA))
    message = info.value.body["error"]["message"]
    assert "role" in message and "not supported" in message and "system" in message
    assert info.value.body["error"]["type"] == "invalid_request_error"


async def test_system_messages_fold_into_the_system_prompt_when_translated(
    gateway, upstream, claude_upstream, claude_sdk, sdk
):
    # Anthropic client, OpenAI upstream: the instructions join one leading system message
    body = {
        "model": "gpt-test",
        "max_tokens": 100,
        "system": "be brief",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "system", "content": "now in French"},
            {"role": "user", "content": "again"},
        ],
    }
    msg = await claude_sdk(gateway).messages.create(**body)
    assert msg.content[0].text == "upstream says: again"
    sent = recorded(upstream)[-1]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[0]["content"] == "be brief\n\nnow in French"
    # OpenAI client, Anthropic upstream: every system message joins the system prompt
    await sdk(gateway).chat.completions.create(
        model="claude-test",
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "system", "content": "now in French"},
            {"role": "user", "content": "again"},
        ],
    )
    sent = recorded(claude_upstream)[-1]
    assert [b["text"] for b in sent["system"]] == ["be brief", "now in French"]
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]


def openai_body(model: str = "gpt-test") -> dict:
    """Valid Chat Completions fields hookgate does not model, or models loosely."""
    return {
        "model": model,
        "max_tokens": 1000.0,
        "messages": [
            {"role": "system", "content": "be brief"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what happens"},
                    {"type": "video_url", "video_url": {"url": "https://example.com/a.mp4"}},
                    {"type": "audio_url", "audio_url": {"url": "https://example.com/a.wav"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {
                "role": "assistant",
                "content": None,
                "function_call": {"name": "lookup", "arguments": "{}"},
            },
            {"role": "function", "name": "lookup", "content": "found"},
            {"role": "user", "content": "hello gateway"},
        ],
        "tools": [
            {"type": "function", "function": {"name": "get_weather", "parameters": CITY}},
            {"type": "function", "function": {"name": "get_time", "parameters": CITY}},
            {"type": "custom", "custom": {"name": "shell", "description": "run"}},
        ],
        "tool_choice": {
            "type": "allowed_tools",
            "allowed_tools": {
                "mode": "required",
                "tools": [{"type": "function", "function": {"name": "get_weather"}}],
            },
        },
        "functions": [{"name": "lookup", "parameters": CITY}],
        "mm_processor_kwargs": {"fps": 1},
    }


async def test_openai_request_is_relayed_exactly(gateway, upstream, sdk):
    body = openai_body()
    out = await sdk(gateway).chat.completions.create(**sdk_args(body, "mm_processor_kwargs"))
    assert out.choices[0].message.content == "upstream says: hello gateway"
    assert recorded(upstream)[-1] == {**body, "model": "up-model"}
    body["tool_choice"] = {"type": "custom", "custom": {"name": "shell"}}
    await sdk(gateway).chat.completions.create(**sdk_args(body, "mm_processor_kwargs"))
    assert recorded(upstream)[-1]["tool_choice"] == body["tool_choice"]


async def test_loose_openai_fields_are_translated_or_refused_by_name(gateway, claude_upstream, sdk):
    body = openai_body("claude-test")
    with pytest.raises(openai.BadRequestError) as info:
        await sdk(gateway).chat.completions.create(**sdk_args(body, "mm_processor_kwargs"))
    assert info.value.body["param"] == "functions"
    assert "'functions'" in info.value.message
    del body["functions"]
    body["messages"][1]["content"] = body["messages"][1]["content"][:1]  # no video for Claude
    await sdk(gateway).chat.completions.create(**sdk_args(body, "mm_processor_kwargs"))
    sent = recorded(claude_upstream)[-1]
    assert sent["max_tokens"] == 1000
    # allowed_tools: only the allowed tool is offered, and one must be called
    assert [t["name"] for t in sent["tools"]] == ["get_weather"]
    assert sent["tool_choice"] == {"type": "any"}
    calls = [b for m in sent["messages"] for b in m["content"] if b["type"] == "tool_use"]
    assert [(c["name"], c["input"]) for c in calls] == [
        ("get_weather", {"city": "Paris"}),
        ("lookup", {}),
    ]
    results = [b for m in sent["messages"] for b in m["content"] if b["type"] == "tool_result"]
    assert [(r["tool_use_id"], r["content"]) for r in results] == [
        ("call_1", "sunny"),
        (calls[1]["id"], "found"),
    ]


@pytest.mark.parametrize(("field", "value"), [("n", 2), ("logprobs", True), ("top_logprobs", 3)])
async def test_what_anthropic_cannot_answer_is_a_400_naming_it(gateway, sdk, field, value):
    with pytest.raises(openai.BadRequestError) as info:
        await sdk(gateway).chat.completions.create(
            model="claude-test", messages=[{"role": "user", "content": "hi"}], **{field: value}
        )
    assert info.value.body["param"] == field and f"'{field}'" in info.value.message


async def test_media_the_other_side_cannot_take_is_refused_not_dropped(gateway, sdk, claude_sdk):
    with pytest.raises(anthropic.BadRequestError) as info:
        await claude_sdk(gateway).messages.create(
            model="gpt-test",
            max_tokens=50,
            messages=[{"role": "user", "content": [{"type": "text", "text": "see"}, FILE_IMAGE]}],
        )
    assert "'file' source" in info.value.body["error"]["message"]
    video = {"type": "video_url", "video_url": {"url": "https://example.com/a.mp4"}}
    with pytest.raises(openai.BadRequestError) as err:
        await sdk(gateway).chat.completions.create(
            model="claude-test",
            messages=[{"role": "user", "content": [{"type": "text", "text": "see"}, video]}],
        )
    assert err.value.body["param"] == "messages" and "'video_url'" in err.value.message


@pytest.mark.parametrize("source", ["x", ["file"], None])
async def test_a_document_with_a_source_of_any_shape_is_refused_towards_openai(
    gateway, claude_sdk, source
):
    document = {"type": "document", "source": source}
    with pytest.raises(anthropic.BadRequestError) as info:
        await claude_sdk(gateway).messages.create(
            model="gpt-test",
            max_tokens=50,
            messages=[{"role": "user", "content": [{"type": "text", "text": "read"}, document]}],
        )
    assert "'document' block" in info.value.body["error"]["message"]
