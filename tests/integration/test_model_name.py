"""A response's ``model`` is the name the client asked for, whatever served it: relayed as the
upstream's bytes or encoded by the gateway, streamed or not, for the OpenAI and Anthropic SDKs.
The upstream's own name (``upstream_model``, here ``up-model`` and ``up-claude``) is in the
``x-hookgate-served-model`` header only."""

from __future__ import annotations

from support.configs import both_config

MESSAGES = [{"role": "user", "content": "hello gateway"}]
TRANSLATED = {
    "models": {
        "gpt-via-claude": {"backend": "claude", "upstream_model": "up-claude"},
        "claude-via-gpt": {"backend": "up", "upstream_model": "up-model"},
    }
}


def _config(upstream, claude_upstream):
    cfg = both_config(upstream, claude_upstream)
    cfg["models"].update(TRANSLATED["models"])
    return cfg


async def test_openai_sdk_sees_the_name_it_asked_for(make_gateway, upstream, claude_upstream, sdk):
    client = await make_gateway(_config(upstream, claude_upstream))
    api = sdk(client)
    for model, served in (("gpt-test", "up-model"), ("gpt-via-claude", "up-claude")):
        raw = await api.chat.completions.with_raw_response.create(model=model, messages=MESSAGES)
        completion = raw.parse()
        assert completion.model == model
        assert raw.headers["x-hookgate-served-model"].endswith("/" + served)
        assert completion.choices[0].message.content
        chunks = [
            chunk
            async for chunk in await api.chat.completions.create(
                model=model,
                messages=MESSAGES,
                stream=True,
                stream_options={"include_usage": True},
            )
        ]
        assert len(chunks) > 2 and {c.model for c in chunks} == {model}
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    # Legacy completions and embeddings are relayed too.
    legacy = await api.completions.create(model="gpt-test", prompt="once")
    assert legacy.model == "gpt-test" and legacy.choices[0].text
    legacy_chunks = [
        c async for c in await api.completions.create(model="gpt-test", prompt="once", stream=True)
    ]
    assert legacy_chunks and {c.model for c in legacy_chunks} == {"gpt-test"}
    vectors = await api.embeddings.create(model="gpt-test", input=["a", "b"])
    assert vectors.model == "gpt-test" and len(vectors.data) == 2


async def test_anthropic_sdk_sees_the_name_it_asked_for(
    make_gateway, upstream, claude_upstream, claude_sdk
):
    client = await make_gateway(_config(upstream, claude_upstream))
    api = claude_sdk(client)
    for model, served in (("claude-test", "up-claude"), ("claude-via-gpt", "up-model")):
        raw = await api.messages.with_raw_response.create(
            model=model, max_tokens=64, messages=MESSAGES
        )
        msg = await raw.parse()
        assert msg.model == model
        assert raw.headers["x-hookgate-served-model"].endswith("/" + served)
        async with api.messages.stream(model=model, max_tokens=64, messages=MESSAGES) as stream:
            starts = [ev.message.model async for ev in stream if ev.type == "message_start"]
            final = await stream.get_final_message()
        assert starts == [model] and final.model == model
        assert final.content and final.content[-1].type == "text"
