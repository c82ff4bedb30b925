"""The OpenAI endpoints hookgate does not model (audio, images, moderations, rerank, files,
batches) relayed to the routed OpenAI-compatible backend through the official openai SDK, with
keys, per-key models and renamed upstream models applied; uploads streamed, not buffered."""

from __future__ import annotations

import asyncio
import io

import openai
import pytest
from fakes import media_upstream
from support.configs import both_config

KEYS = [
    {"name": "all", "key": "sk-all"},
    {"name": "chat", "key": "sk-chat", "models": ["gpt-test"]},
]


@pytest.fixture
async def gateway(make_gateway, upstream, claude_upstream):
    config = both_config(upstream, claude_upstream)
    config["models"]["whisper"] = {"backend": "up", "upstream_model": "whisper-large-v3"}
    config["models"]["tts"] = {"backend": "up"}
    config["auth"] = {"keys": KEYS}
    return await make_gateway(config)


def seen(upstream) -> list[dict]:
    return upstream.app[media_upstream.SEEN]


async def test_audio_in_and_out(gateway, upstream, sdk):
    api = sdk(gateway, api_key="sk-all")
    audio = io.BytesIO(b"\x00\x01" * 50_000)
    audio.name = "hello.wav"
    out = await api.audio.transcriptions.create(model="whisper", file=audio)
    assert out.text == "heard 100000 bytes with whisper-large-v3"  # the route's upstream name
    assert seen(upstream)[-1]["auth"] == "Bearer upstream-secret"  # never the client's key
    speech = await api.audio.speech.create(model="tts", voice="alloy", input="hi")
    assert speech.content == media_upstream.SPEECH
    assert speech.response.headers["content-type"] == "audio/wav"


async def test_images_moderations_rerank(gateway, upstream, sdk):
    api = sdk(gateway, api_key="sk-all")
    images = await api.images.generate(model="tts", prompt="a cat")
    assert images.data[0].b64_json == "AAAA"
    moderation = await api.moderations.create(model="tts", input="hello")
    assert moderation.results[0].flagged is False
    resp = await gateway.post(
        "/v1/rerank",
        json={"model": "tts", "query": "q", "documents": ["a", "b"]},
        headers={"authorization": "Bearer sk-all"},
    )
    assert [r["index"] for r in (await resp.json())["results"]] == [0, 1]
    assert [s["path"] for s in seen(upstream)] == [
        "/v1/images/generations",
        "/v1/moderations",
        "/v1/rerank",
    ]


async def test_files_and_batches(gateway, upstream, sdk):
    api = sdk(gateway, api_key="sk-all", default_headers={"x-hookgate-model": "gpt-test"})
    uploaded = await api.files.create(
        file=("batch.jsonl", b'{"custom_id": "1"}\n'), purpose="batch"
    )
    assert uploaded.id == "file-1" and uploaded.bytes == 19 and uploaded.purpose == "batch"
    assert [f.id async for f in api.files.list()] == ["file-1"]
    assert (await api.files.content("file-1")).content == b'{"custom_id": "1"}\n'
    assert (await api.files.delete("file-1")).deleted is True
    batch = await api.batches.create(
        input_file_id="file-1", endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert batch.id == "batch-1" and (await api.batches.retrieve("batch-1")).status == "validating"


async def test_keys_and_models_apply(gateway, sdk):
    with pytest.raises(openai.AuthenticationError):
        await sdk(gateway, api_key="sk-wrong").moderations.create(model="tts", input="x")
    with pytest.raises(openai.PermissionDeniedError):
        await sdk(gateway, api_key="sk-chat").moderations.create(model="tts", input="x")
    with pytest.raises(openai.NotFoundError):
        await sdk(gateway, api_key="sk-all").moderations.create(model="nope", input="x")
    with pytest.raises(openai.BadRequestError) as info:  # an Anthropic backend has no audio
        await sdk(gateway, api_key="sk-all").moderations.create(model="claude-test", input="x")
    assert info.value.code == "model_not_supported"
    # files name no model: with one OpenAI backend they go there
    assert [f.id async for f in sdk(gateway, api_key="sk-all").files.list()] == ["file-1"]


async def test_files_need_a_model_header_among_several_backends(make_gateway, upstream, sdk):
    config = both_config(upstream, upstream)
    config["backends"]["other"] = {**config["backends"]["up"]}
    config["models"]["other-model"] = {"backend": "other"}
    gateway = await make_gateway(config)
    with pytest.raises(openai.BadRequestError) as info:
        await sdk(gateway).files.list()
    assert "x-hookgate-model" in info.value.message
    named = sdk(gateway, default_headers={"x-hookgate-model": "other-model"})
    assert [f.id async for f in named.files.list()] == ["file-1"]


async def test_uploads_are_streamed_not_buffered(gateway, upstream):
    """The upload's second half is sent only after the upstream got its first bytes: a
    gateway that read the whole body first would wait forever."""
    first = upstream.app[media_upstream.FIRST_BYTES]
    boundary = "hookgate-boundary"
    head = (
        f'--{boundary}\r\ncontent-disposition: form-data; name="model"\r\n\r\nwhisper\r\n'
        f'--{boundary}\r\ncontent-disposition: form-data; name="file"; filename="a.wav"\r\n'
        "content-type: audio/wav\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    async def body():
        yield head + b"\x01" * 65536
        await asyncio.wait_for(first.wait(), 10)
        yield b"\x02" * 65536 + tail

    resp = await gateway.post(
        "/v1/audio/transcriptions",
        data=body(),
        headers={
            "authorization": "Bearer sk-all",
            "content-type": f"multipart/form-data; boundary={boundary}",
        },
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["text"] == "heard 131072 bytes with whisper-large-v3"
