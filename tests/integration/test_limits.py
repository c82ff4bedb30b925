"""Rate limits per key: requests and tokens per minute, 429 with retry-after, memory and Redis."""

from __future__ import annotations

import asyncio

import openai
import pytest
from fakes.held_upstream import HeldUpstream
from fakes.outcomes import Ends, filters_plugin
from fakes.plain_protocol import PLUGIN as PLAIN
from support.configs import upstream_config
from support.waiting import until

from gateway import GATEWAY, ChatRequest, Exchange
from gateway.exchange import RouteInfo
from gateway.limits.filter import LimitsFilter

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
def limits_store(store_config):
    """``limits_store(**limits)``: [limits] in the store under test (memory, then Redis)."""
    return lambda **limits: store_config("limits", **limits)


async def _status(api, **kwargs):
    try:
        await api.chat.completions.create(
            model="gpt-test", messages=kwargs.pop("messages", MESSAGES), **kwargs
        )
    except openai.RateLimitError as exc:
        return exc
    return 200


async def test_requests_per_minute_per_key(make_gateway, upstream, limits_store, sdk):
    keys = [
        {"name": "capped", "key": "sk-capped"},
        {"name": "tight", "key": "sk-tight", "rpm": 1},
        {"name": "free", "key": "sk-free", "rpm": 0},
    ]
    client = await make_gateway(
        {**upstream_config(upstream), **limits_store(rpm=3), "auth": {"keys": keys}}
    )
    capped, tight, free = (sdk(client, api_key=k["key"]) for k in keys)
    results = [await _status(capped) for _ in range(5)]
    assert results[:3] == [200, 200, 200]
    for refused in results[3:]:
        assert isinstance(refused, openai.RateLimitError)
        body = refused.body
        assert body["code"] == "rate_limit_exceeded" and body["type"] == "rate_limit_error"
        assert "3 requests per minute" in body["message"]
        # One request comes back every 20 s at 3 per minute.
        assert 1 <= int(refused.response.headers["retry-after"]) <= 20
    assert await _status(tight) == 200
    assert isinstance(await _status(tight), openai.RateLimitError)  # its own rpm = 1
    assert [await _status(free) for _ in range(6)] == [200] * 6  # 0: this key has no limit
    # A refused stream is refused before it starts, as a plain 429.
    with pytest.raises(openai.RateLimitError):
        await capped.chat.completions.create(model="gpt-test", messages=MESSAGES, stream=True)


async def test_tokens_per_minute_count_usage_streams_included(
    make_gateway, upstream, limits_store, sdk
):
    # The upstream reports 18 tokens for every answer.
    client = await make_gateway({**upstream_config(upstream), **limits_store(tpm=40)})
    api = sdk(client)
    assert await _status(api) == 200
    stream = await api.chat.completions.create(
        model="gpt-test",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    assert [c async for c in stream]
    assert await _status(api) == 200  # 36 of 40 spent: one token is enough to start
    refused = await _status(api)  # 54 spent
    assert isinstance(refused, openai.RateLimitError)
    assert "40 tokens per minute" in refused.body["message"]
    assert int(refused.response.headers["retry-after"]) >= 20


async def test_streams_without_usage_are_estimated(make_gateway, upstream, limits_store, sdk):
    client = await make_gateway({**upstream_config(upstream), **limits_store(tpm=30)})
    api = sdk(client)
    long = [{"role": "user", "content": "word " * 40}]  # ~50 tokens each way
    stream = await api.chat.completions.create(model="gpt-test", messages=long, stream=True)
    chunks = [c async for c in stream]
    assert all(c.usage is None for c in chunks)  # the client did not ask for usage
    assert isinstance(await _status(api), openai.RateLimitError)


async def _leave_after(api, characters: int) -> None:
    """Stream an answer and close it once ``characters`` of its text have come."""
    stream = await api.chat.completions.create(model="gpt-test", messages=MESSAGES, stream=True)
    text = ""
    async for chunk in stream:
        text += (chunk.choices[0].delta.content or "") if chunk.choices else ""
        if len(text) == characters:
            break
    await stream.close()


async def test_a_client_that_leaves_mid_stream_is_charged(
    make_gateway, aiohttp_server, limits_store, sdk
):
    # Two chunks of about 125 tokens each, then the upstream holds the rest back.
    held = HeldUpstream(first=["word " * 100, "more " * 100], rest=["never sent"])
    server = await aiohttp_server(held.app())
    ends = Ends()
    client = await make_gateway(
        {**upstream_config(server), **limits_store(tpm=100)},
        plugins=[filters_plugin(ends=ends)],
    )
    api = sdk(client)
    await _leave_after(api, 1000)
    outcome = await ends.next()  # the filters' end ran (the limits filter's first)
    assert outcome.status == "client_gone" and outcome.usage is None
    assert outcome.output_tokens == 250
    async with asyncio.timeout(10):
        await held.gone.wait()  # and the upstream request was dropped
    held.release.set()  # a request let through would be answered at once
    refused = await _status(api)
    assert isinstance(refused, openai.RateLimitError)
    assert "100 tokens per minute" in refused.body["message"]
    # About 255 tokens of debt at 100 a minute: the key waits well over a minute.
    assert int(refused.response.headers["retry-after"]) > 90


async def test_a_token_limit_alone_has_relayed_content_counted(
    make_gateway, aiohttp_server, limits_store, sdk
):
    # As above without a filter of the test's: the limits filter alone asks for the relay's
    # content to be parsed (reads_relayed is off), for a request a token limit applies to.
    held = HeldUpstream(first=["word " * 100, "more " * 100], rest=["never sent"])
    server = await aiohttp_server(held.app())
    client = await make_gateway({**upstream_config(server), **limits_store(tpm=100)})
    gateway = client.server.app[GATEWAY]
    assert not gateway.pipeline.parse_relayed
    api = sdk(client)
    await _leave_after(api, 1000)
    async with asyncio.timeout(10):
        await held.gone.wait()
    held.release.set()

    async def refused() -> bool:
        answer = await _status(api)
        # Two frames of 500 characters: about 250 tokens, not two (one a frame).
        return (
            isinstance(answer, openai.RateLimitError)
            and int(answer.response.headers["retry-after"]) > 90
        )

    await until(refused, 10, "the stream's tokens charged")


async def test_a_request_limit_alone_leaves_relays_unparsed(make_gateway, upstream, limits_store):
    client = await make_gateway({**upstream_config(upstream), **limits_store(rpm=10)})
    gateway = client.server.app[GATEWAY]
    assert any(isinstance(f, LimitsFilter) for f in gateway.filters)
    assert not gateway.pipeline.parse_relayed
    request = ChatRequest(model="gpt-test", messages=[], protocol="openai", stream=True)
    exchange = Exchange("r", RouteInfo("chat"))
    await gateway.pipeline.prepare(request, exchange)
    assert request.raw_relay and not request.parse_relayed


async def test_failures_before_any_output_are_not_charged(
    make_gateway, upstream, limits_store, sdk
):
    client = await make_gateway({**upstream_config(upstream), **limits_store(tpm=5)})
    api = sdk(client)
    long = [  # ~50 tokens, refused by the upstream
        {"role": "system", "content": "word " * 40},
        {"role": "user", "content": "STATUS:500"},
    ]
    for _ in range(3):
        with pytest.raises(openai.InternalServerError):
            await api.chat.completions.create(model="gpt-test", messages=long)
        with pytest.raises(openai.InternalServerError):
            await api.chat.completions.create(model="gpt-test", messages=long, stream=True)
    assert await _status(api) == 200  # nothing was charged; this one is (18 tokens)
    assert isinstance(await _status(api), openai.RateLimitError)


async def test_no_limits_no_filter(make_gateway):
    client = await make_gateway({"auth": {"keys": ["sk-a", {"key": "sk-b", "rpm": 0}]}})
    gateway = client.server.app[GATEWAY]
    assert not any(isinstance(f, LimitsFilter) for f in gateway.filters)
    # only the (default) session filter is on the request path
    assert [f.__self__.name for f in gateway.pipeline.request_filters] == ["sessions"]
    assert [f.__self__.name for f in gateway.pipeline.success_hooks] == ["sessions"]


async def test_429_in_the_protocol_of_the_route(make_gateway, upstream, limits_store):
    client = await make_gateway(
        {**upstream_config(upstream), **limits_store(rpm=1)}, plugins=[PLAIN]
    )
    assert (await client.post("/plain/gpt-test", data="hi")).status == 200
    resp = await client.post("/plain/gpt-test", data="hi")
    assert resp.status == 429 and 1 <= int(resp.headers["retry-after"]) <= 60
    assert (await resp.json())["oops"].startswith("Rate limit reached for 'anonymous'")


async def test_ratelimit_headers_as_openai_sends_them(make_gateway, upstream, limits_store, sdk):
    client = await make_gateway(
        {
            **upstream_config(upstream),
            **limits_store(),
            "auth": {"keys": [{"key": "sk-h", "rpm": 3, "tpm": 1000}]},
        }
    )
    api = sdk(client, api_key="sk-h")
    seen = []
    for _ in range(3):
        resp = await api.chat.completions.with_raw_response.create(
            model="gpt-test", messages=MESSAGES
        )
        seen.append(resp.headers)
    first = seen[0]
    assert first["x-ratelimit-limit-requests"] == "3"
    assert first["x-ratelimit-remaining-requests"] == "2"
    assert first["x-ratelimit-limit-tokens"] == "1000"
    assert first["x-ratelimit-remaining-tokens"] == "1000"
    assert first["x-ratelimit-reset-requests"].endswith("s")
    # The upstream's 18 tokens are charged after each answer.
    assert int(seen[1]["x-ratelimit-remaining-tokens"]) in range(982, 990)
    assert seen[2]["x-ratelimit-remaining-requests"] == "0"
    refused = await _status(api)
    assert isinstance(refused, openai.RateLimitError)
    assert refused.response.headers["x-ratelimit-remaining-requests"] == "0"
