"""API keys: both header styles, per-key models, constant-time digests, an open gateway's warning."""

from __future__ import annotations

import logging

import openai
import pytest

KEYS = {
    "auth": {"keys": ["sk-plain", {"name": "ci", "key": "sk-ci", "models": ["echo"]}]},
    "backends": {"echo": {"kind": "echo"}, "other": {"kind": "echo", "prefix": "other: "}},
    "models": {"echo": {"backend": "echo"}, "other": {"backend": "other"}},
}
MESSAGES = [{"role": "user", "content": "hi"}]


async def test_missing_and_wrong_keys_are_401(make_gateway, sdk):
    client = await make_gateway(KEYS)
    resp = await client.post("/v1/chat/completions", json={"model": "echo", "messages": MESSAGES})
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "missing_api_key"
    with pytest.raises(openai.AuthenticationError) as info:
        await sdk(client, api_key="sk-wrong").chat.completions.create(
            model="echo", messages=MESSAGES
        )
    assert info.value.code == "invalid_api_key"
    assert "sk-wrong" not in info.value.message


async def test_bearer_and_x_api_key_both_work(make_gateway, sdk):
    client = await make_gateway(KEYS)
    done = await sdk(client, api_key="sk-plain").chat.completions.create(
        model="other", messages=MESSAGES
    )
    assert done.choices[0].message.content == "other: hi"
    resp = await client.post(
        "/v1/chat/completions",
        json={"model": "echo", "messages": MESSAGES},
        headers={"x-api-key": "sk-plain"},
    )
    assert resp.status == 200


async def test_key_limited_to_models(make_gateway, sdk):
    client = await make_gateway(KEYS)
    api = sdk(client, api_key="sk-ci")
    assert [m.id async for m in api.models.list()] == ["echo"]
    assert (await api.chat.completions.create(model="echo", messages=MESSAGES)).choices[
        0
    ].message.content == "hi"
    with pytest.raises(openai.PermissionDeniedError) as info:
        await api.chat.completions.create(model="other", messages=MESSAGES)
    assert info.value.code == "model_not_allowed"
    full = sdk(client, api_key="sk-plain")
    assert sorted([m.id async for m in full.models.list()]) == ["echo", "other"]


async def test_health_needs_no_key_and_metrics_is_configurable(make_gateway):
    client = await make_gateway(KEYS)
    assert (await client.get("/health")).status == 200
    assert (await client.get("/metrics")).status == 200
    locked = await make_gateway({**KEYS, "metrics": {"require_key": True}})
    assert (await locked.get("/metrics")).status == 401
    assert (
        await locked.get("/metrics", headers={"authorization": "Bearer sk-plain"})
    ).status == 200


async def test_keys_never_logged(make_gateway, sdk, caplog):
    caplog.set_level(logging.DEBUG)
    client = await make_gateway(KEYS)
    await sdk(client, api_key="sk-plain").chat.completions.create(model="echo", messages=MESSAGES)
    with pytest.raises(openai.AuthenticationError):
        await sdk(client, api_key="sk-guess").chat.completions.create(
            model="echo", messages=MESSAGES
        )
    assert (
        "sk-plain" not in caplog.text
        and "sk-ci" not in caplog.text
        and "sk-guess" not in caplog.text
    )


async def test_open_gateway_warns_loudly(make_gateway, caplog):
    await make_gateway()
    assert any("OPEN" in r.message and r.levelno == logging.WARNING for r in caplog.records)


async def test_api_key_from_environment(make_gateway, sdk):
    client = await make_gateway({}, env={"HOOKGATE_API_KEY": "sk-env"})
    with pytest.raises(openai.AuthenticationError):
        await sdk(client, api_key="nope").chat.completions.create(model="echo", messages=MESSAGES)
    out = await sdk(client, api_key="sk-env").chat.completions.create(
        model="echo", messages=MESSAGES
    )
    assert out.choices[0].message.content == "hi"
