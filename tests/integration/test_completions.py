"""``POST /v1/completions`` (legacy Completions, which LlamaIndex's OpenAILike, LangChain's
``OpenAI`` and autocomplete clients use), driven by the openai SDK: relayed to an
OpenAI-compatible upstream exactly (logprobs and all), translated from chat for others,
streamed and not; what only /completions can do is refused by name when translating."""

from __future__ import annotations

import openai
import pytest
from support.configs import both_config, recorded


@pytest.fixture
async def gateway(make_gateway, upstream, claude_upstream):
    config = both_config(upstream, claude_upstream)
    config["auth"] = {"keys": [{"name": "k", "key": "sk-k", "models": ["gpt-test", "claude-test"]}]}
    return await make_gateway(config)


async def test_relayed_to_an_openai_upstream(gateway, upstream, sdk):
    api = sdk(gateway, api_key="sk-k")
    out = await api.completions.create(
        model="gpt-test", prompt="def add(a, b):", max_tokens=20, suffix="\n", logprobs=1
    )
    assert out.object == "text_completion" and out.choices[0].text == " and so on."
    assert out.choices[0].logprobs.tokens == [" and"]  # the upstream's own body
    assert recorded(upstream)[-1] == {
        "model": "up-model",
        "prompt": "def add(a, b):",
        "max_tokens": 20,
        "suffix": "\n",
        "logprobs": 1,
    }
    stream = await api.completions.create(
        model="gpt-test", prompt="x", stream=True, stream_options={"include_usage": True}
    )
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].text for c in chunks if c.choices) == " and so on."
    assert chunks[-1].usage.total_tokens == 18
    resp = await gateway.post(
        "/v1/completions",
        json={"model": "gpt-test", "prompt": "x", "stream": True},
        headers={"authorization": "Bearer sk-k"},
    )
    assert (await resp.text()).endswith("data: [DONE]\n\n")


async def test_translated_for_an_anthropic_upstream(gateway, claude_upstream, sdk):
    api = sdk(gateway, api_key="sk-k")
    out = await api.completions.create(model="claude-test", prompt="hello", max_tokens=20)
    assert out.object == "text_completion"
    assert out.choices[0].text == "upstream says: hello"
    assert out.choices[0].finish_reason == "stop" and out.usage.completion_tokens == 7
    sent = recorded(claude_upstream)[-1]
    assert sent["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]
    assert sent["max_tokens"] == 20
    stream = await api.completions.create(
        model="claude-test", prompt="hello", stream=True, stream_options={"include_usage": True}
    )
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "upstream says: hello"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.completion_tokens == 7


@pytest.mark.parametrize(
    ("field", "value"),
    [("echo", True), ("suffix", "}"), ("best_of", 3), ("logprobs", 2), ("n", 2)],
)
async def test_what_only_completions_can_do_is_refused_by_name(gateway, sdk, field, value):
    with pytest.raises(openai.BadRequestError) as info:
        await sdk(gateway, api_key="sk-k").completions.create(
            model="claude-test", prompt="x", **{field: value}
        )
    assert info.value.body["param"] == field


async def test_several_prompts_are_relayed_only(gateway, upstream, sdk):
    api = sdk(gateway, api_key="sk-k")
    await api.completions.create(model="gpt-test", prompt=["a", "b"])
    assert recorded(upstream)[-1]["prompt"] == ["a", "b"]
    with pytest.raises(openai.BadRequestError) as info:
        await api.completions.create(model="claude-test", prompt=["a", "b"])
    assert info.value.body["param"] == "prompt"


async def test_keys_and_models_apply(gateway, sdk):
    with pytest.raises(openai.AuthenticationError):
        await sdk(gateway, api_key="sk-wrong").completions.create(model="gpt-test", prompt="x")
    with pytest.raises(openai.NotFoundError):
        await sdk(gateway, api_key="sk-k").completions.create(model="nope", prompt="x")
