"""POST /v1/embeddings with the official openai package as the caller: relayed to an
OpenAI-compatible upstream in either encoding, converted when the upstream ignores the asked one,
answered by echo, refused clearly by a backend that cannot embed."""

from __future__ import annotations

import base64
import struct

import openai
import orjson
import pytest
from fakes.openai_upstream import vector
from support.configs import both_config, recorded
from support.openapi import validate


@pytest.fixture
async def gateway(make_gateway, upstream, claude_upstream):
    cfg = both_config(upstream, claude_upstream)
    cfg["backends"]["echo"] = {"kind": "echo"}
    cfg["models"]["echo"] = {"backend": "echo"}
    cfg["models"]["floats-only"] = {"backend": "up"}
    return await make_gateway(cfg)


def unpack(text: str) -> list[float]:
    raw = base64.b64decode(text)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


async def test_sdk_default_base64_is_relayed(gateway, upstream, sdk):
    inputs = ["hello gateway", "two"]
    raw = await sdk(gateway).embeddings.with_raw_response.create(model="gpt-test", input=inputs)
    body = orjson.loads(raw.content)
    assert all(isinstance(d["embedding"], str) for d in body["data"])  # base64 on the wire
    result = raw.parse()
    assert [d.embedding for d in result.data] == [vector(t, i) for i, t in enumerate(inputs)]
    sent = recorded(upstream)[-1]
    assert sent["encoding_format"] == "base64" and sent["model"] == "up-model"
    assert result.usage.prompt_tokens == 3


async def test_float_encoding_conforms(gateway, sdk):
    raw = await sdk(gateway).embeddings.with_raw_response.create(
        model="gpt-test", input="hello", encoding_format="float", dimensions=4
    )
    body = orjson.loads(raw.content)
    validate(body, "CreateEmbeddingResponse")
    assert body["data"][0]["embedding"] == vector("hello", 0)


async def test_encoding_is_honoured_when_the_upstream_ignores_it(gateway, sdk):
    raw = await gateway.post(
        "/v1/embeddings",
        json={"model": "floats-only", "input": ["abc", "de"], "encoding_format": "base64"},
    )
    body = await raw.json()
    assert [unpack(d["embedding"]) for d in body["data"]] == [vector("abc", 0), vector("de", 1)]
    result = await sdk(gateway).embeddings.create(model="floats-only", input=[[1, 2, 3]])
    assert result.data[0].embedding == vector([1, 2, 3], 0)


async def test_echo_embeds_deterministically(gateway, sdk):
    api = sdk(gateway)
    first = await api.embeddings.create(model="echo", input=["same", "other"], dimensions=40)
    again = await api.embeddings.create(
        model="echo", input="same", dimensions=40, encoding_format="float"
    )
    a, b = first.data[0].embedding, first.data[1].embedding
    assert len(a) == 40 and a != b
    assert again.data[0].embedding == pytest.approx(a, rel=1e-6)  # float32 on the base64 path
    assert sum(x * x for x in a) == pytest.approx(1.0, rel=1e-5)
    default = await api.embeddings.create(model="echo", input="x")
    assert len(default.data[0].embedding) == 16
    raw = await gateway.post("/v1/embeddings", json={"model": "echo", "input": "same"})
    validate(await raw.json(), "CreateEmbeddingResponse")


async def test_backends_that_cannot_embed_and_bad_input(gateway, sdk):
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk(gateway).embeddings.create(model="claude-test", input="hi")
    assert caught.value.body["param"] == "model"
    assert caught.value.body["code"] == "model_not_supported"
    for body, param in (
        ({"model": "gpt-test", "input": []}, "input"),
        ({"model": "gpt-test", "input": [1, "a"]}, "input"),
        ({"model": "gpt-test", "input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"input": "x"}, "model"),
    ):
        resp = await gateway.post("/v1/embeddings", json=body)
        assert resp.status == 400
        assert (await resp.json())["error"]["param"] == param
    resp = await gateway.post("/v1/embeddings", json={"model": "nope", "input": "x"})
    assert resp.status == 404
