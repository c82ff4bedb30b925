"""Bad input and failed upstreams get OpenAI-shaped errors with the right status."""

from __future__ import annotations

import openai
import orjson
import pytest
from support.configs import upstream_config
from support.openapi import validate
from support.processes import free_port

MESSAGES = [{"role": "user", "content": "hi"}]


async def _error(resp, status: int) -> dict:
    assert resp.status == status, await resp.text()
    body = await resp.json()
    validate(body, "ErrorResponse")
    return body["error"]


async def test_invalid_json(make_gateway):
    client = await make_gateway()
    err = await _error(await client.post("/v1/chat/completions", data=b"{not json"), 400)
    assert err["type"] == "invalid_request_error"
    assert "not valid JSON" in err["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": MESSAGES}, "model"),
        ({"model": "echo"}, "messages"),
        ({"model": "echo", "messages": []}, "messages"),
        ({"model": "echo", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"model": "echo", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"model": "echo", "messages": [{"role": "user"}]}, "messages[0].content"),
        (
            {"model": "echo", "messages": [{"role": "tool", "content": "x"}]},
            "messages[0].tool_call_id",
        ),
        ({"model": "echo", "messages": MESSAGES, "temperature": "hot"}, "temperature"),
        ({"model": "echo", "messages": MESSAGES, "stream": "yes"}, "stream"),
        (
            {
                "model": "echo",
                "messages": MESSAGES,
                "tools": [{"type": "function", "function": {}}],
            },
            "tools[0].function.name",
        ),
        ({"model": "echo", "messages": MESSAGES, "tool_choice": "sometimes"}, "tool_choice"),
        ({"model": "echo", "messages": MESSAGES, "stop": [1]}, "stop"),
    ],
)
async def test_bad_fields_name_the_param(make_gateway, body, param):
    client = await make_gateway()
    err = await _error(await client.post("/v1/chat/completions", json=body), 400)
    assert err["param"] == param
    assert err["type"] == "invalid_request_error"


async def test_sdk_sees_bad_request(make_gateway, sdk):
    client = await make_gateway()
    with pytest.raises(openai.BadRequestError) as info:
        await sdk(client).chat.completions.create(model="echo", messages=[{"role": "user"}])
    assert info.value.body["param"] == "messages[0].content"


async def test_unknown_model_is_404_model_not_found(make_gateway, upstream, sdk):
    client = await make_gateway(upstream_config(upstream))
    with pytest.raises(openai.NotFoundError) as info:
        await sdk(client).chat.completions.create(model="nope", messages=MESSAGES)
    assert info.value.code == "model_not_found"
    assert "127.0.0.1" not in info.value.message and "upstream-secret" not in info.value.message


async def test_body_over_limit_is_413(make_gateway, sdk):
    client = await make_gateway({"server": {"max_body_size": "1KiB"}})
    big = [{"role": "user", "content": "x" * 4096}]
    with pytest.raises(openai.APIStatusError) as info:
        await sdk(client).chat.completions.create(model="echo", messages=big)
    assert info.value.status_code == 413

    # chunked bodies (no content-length) are cut off at the limit too
    async def gen():
        yield orjson.dumps({"model": "echo", "messages": big})

    resp = await client.post(
        "/v1/chat/completions", data=gen(), headers={"content-type": "application/json"}
    )
    await _error(resp, 413)


async def test_upstream_refusing_connections_is_502(make_gateway, sdk):
    client = await make_gateway(upstream_config(f"http://127.0.0.1:{free_port()}/v1"))
    with pytest.raises(openai.APIStatusError) as info:
        await sdk(client).chat.completions.create(model="gpt-test", messages=MESSAGES)
    assert info.value.status_code == 502
    assert "unreachable" in info.value.message
    with pytest.raises(openai.APIStatusError) as info:
        await sdk(client).chat.completions.create(model="gpt-test", messages=MESSAGES, stream=True)
    assert info.value.status_code == 502


async def test_upstream_timeout_is_504(make_gateway, upstream, sdk):
    client = await make_gateway(upstream_config(upstream, timeout="300ms", read_timeout="300ms"))
    slow = [{"role": "user", "content": "SLOW:2"}]
    with pytest.raises(openai.APIStatusError) as info:
        await sdk(client).chat.completions.create(model="gpt-test", messages=slow)
    assert info.value.status_code == 504
    with pytest.raises(openai.APIStatusError) as info:
        await sdk(client).chat.completions.create(model="gpt-test", messages=slow, stream=True)
    assert info.value.status_code == 504


@pytest.mark.parametrize(
    ("upstream_status", "status", "exc"),
    [
        (400, 400, openai.BadRequestError),
        (422, 422, openai.UnprocessableEntityError),
        (429, 429, openai.RateLimitError),
        (401, 502, openai.APIStatusError),
        (500, 502, openai.InternalServerError),
        (503, 503, openai.InternalServerError),
    ],
)
async def test_upstream_error_status_is_mapped_in_the_gateways_words(
    make_gateway, upstream, sdk, upstream_status, status, exc
):
    client = await make_gateway(upstream_config(upstream))
    for stream in (False, True):
        with pytest.raises(exc) as info:
            await sdk(client).chat.completions.create(
                model="gpt-test",
                messages=[{"role": "user", "content": f"STATUS:{upstream_status}"}],
                stream=stream,
            )
        assert info.value.status_code == status
        # The gateway's own words, with the upstream's status and type; never its message.
        assert f"(status {upstream_status}, type x)" in info.value.message
        assert "fake upstream" not in info.value.message
        if status == 429:
            assert info.value.response.headers["retry-after"] == "7"


async def test_unknown_path_and_method(make_gateway):
    client = await make_gateway()
    err = await _error(await client.get("/v1/nothing"), 404)
    assert err["type"] == "not_found_error"
    resp = await client.get("/v1/chat/completions")
    assert resp.status == 405
    assert "POST" in resp.headers["allow"]


async def test_a_plugin_bug_is_a_500_without_a_traceback(make_gateway):
    from gateway import Filter, hookimpl

    class Broken(Filter):
        async def on_request(self, request, exchange):
            raise RuntimeError("secret internals")

    class Plugin:
        @hookimpl
        def gateway_register_filters(self, register):
            register("broken", lambda gw: Broken())

    client = await make_gateway(plugins=[("broken", Plugin())])
    resp = await client.post("/v1/chat/completions", json={"model": "echo", "messages": MESSAGES})
    err = await _error(resp, 500)
    assert "secret" not in err["message"] and "Traceback" not in await resp.text()
