"""Bounds on requests and streams in progress held across instances through Redis: two
gateways on one Redis admit a key's bound once in all, give slots back when requests end (or
are cancelled), and a killed instance's slots free themselves within their lease."""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx
import openai
import pytest
import redis.asyncio as aioredis
from fakes.held_upstream import HeldUpstream
from support.configs import upstream_config
from support.processes import GatewayProcess
from support.waiting import until

from gateway import GATEWAY
from gateway.auth.keys import digest
from gateway.limits.concurrency import SharedSlots, StreamBound

KEYS = {"auth": {"keys": [{"name": "a", "key": "sk-a"}, {"name": "b", "key": "sk-b"}]}}
OWNER = "key-" + digest("sk-a").hex()[:16]
USER = [{"role": "user", "content": "hi"}]


def shared(redis_url, prefix, server, **limits):
    return {
        **upstream_config(server),
        **KEYS,
        "redis": {"url": redis_url, "prefix": prefix},
        "limits": {"store": "redis", **limits},
    }


async def _open(api: openai.AsyncOpenAI) -> openai.AsyncStream | openai.RateLimitError:
    """A streamed chat completion, once its first chunk is in; or the 429 that refused it."""
    try:
        stream = await api.chat.completions.create(model="gpt-test", messages=USER, stream=True)
    except openai.RateLimitError as refused:
        return refused
    first = await anext(aiter(stream))
    assert first.choices[0].delta.role == "assistant"
    return stream


async def _text(stream: openai.AsyncStream) -> str:
    return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])


@pytest.mark.parametrize("option", ["max_streams_per_key", "max_requests_per_key"])
async def test_two_instances_admit_a_keys_bound_once(
    make_gateway, aiohttp_server, sdk, redis_url, redis_prefix, option
):
    held = HeldUpstream(first=["a "], rest=["b"])
    server = await aiohttp_server(held.app())
    one, two = [
        await make_gateway(shared(redis_url, redis_prefix, server, **{option: 3})) for _ in range(2)
    ]
    assert one.app[GATEWAY].state.users["limits.store"] == "redis"
    apis = [sdk(one, api_key="sk-a"), sdk(two, api_key="sk-a")]
    what = "streams" if option == "max_streams_per_key" else "requests"
    slots = f"{redis_prefix}slots:{{{OWNER}}}:{what}"
    direct = aioredis.Redis.from_url(redis_url)
    try:
        got = await asyncio.gather(*(_open(apis[i % 2]) for i in range(10)))
        admitted = [s for s in got if isinstance(s, openai.AsyncStream)]
        refused = [s for s in got if isinstance(s, openai.RateLimitError)]
        assert len(admitted) == 3 and len(refused) == 7
        for err in refused:
            assert err.response.headers["retry-after"] == "1"
            body = err.response.json()["error"]
            assert body["code"] == "concurrency_limit_exceeded"
            assert f"'a' has 3 {what} in progress" in body["message"]
        assert await direct.zcard(slots) == 3
        # another key is within its own bound
        other = await _open(sdk(two, api_key="sk-b"))
        assert isinstance(other, openai.AsyncStream)

        held.release.set()
        assert [await _text(s) for s in admitted] == ["a b"] * 3
        assert await _text(other) == "a b"
        await until(
            lambda: _zero(direct.zcard(slots)), within=5, what="the ended streams' slots given back"
        )

        # after they ended, new ones are admitted, through either instance, up to the bound
        held.release = asyncio.Event()
        again = [await _open(apis[i % 2]) for i in range(4)]
        assert [type(s) for s in again[:3]] == [openai.AsyncStream] * 3
        assert isinstance(again[3], openai.RateLimitError)
        # a client that leaves mid-stream gives its slot back (the request is cancelled)
        await again[0].close()
        await until(lambda: _is(direct.zcard(slots), 2), within=5, what="the left stream's slot")
        replacement = await _open(apis[0])
        assert isinstance(replacement, openai.AsyncStream)
        held.release.set()
        for stream in [*again[1:3], replacement]:
            assert await _text(stream) == "a b"
        await until(lambda: _zero(direct.zcard(slots)), within=5, what="all slots given back")
    finally:
        held.release.set()
        await direct.aclose()


async def _zero(count) -> bool:
    return await count == 0


async def _is(count, n: int) -> bool:
    return await count == n


async def test_the_global_bound_holds_across_instances(
    make_gateway, aiohttp_server, sdk, redis_url, redis_prefix
):
    held = HeldUpstream(first=["a "], rest=["b"])
    server = await aiohttp_server(held.app())
    cfg = shared(redis_url, redis_prefix, server, max_streams_global=2)
    one, two = [await make_gateway(cfg) for _ in range(2)]
    try:
        first = await _open(sdk(one, api_key="sk-a"))
        second = await _open(sdk(two, api_key="sk-b"))
        assert isinstance(first, openai.AsyncStream) and isinstance(second, openai.AsyncStream)
        for gateway, key in ((one, "sk-b"), (two, "sk-a")):
            with pytest.raises(openai.InternalServerError) as busy:
                await sdk(gateway, api_key=key).chat.completions.create(
                    model="gpt-test", messages=USER, stream=True
                )
            assert busy.value.status_code == 503
            assert busy.value.response.headers["retry-after"] == "1"
            assert busy.value.response.json()["error"]["code"] == "gateway_busy"
        held.release.set()
        assert [await _text(first), await _text(second)] == ["a b", "a b"]
    finally:
        held.release.set()


PROCESS = """
[auth]
keys = [{{ name = "a", key = "sk-a" }}]

[redis]
url = "{redis_url}"
prefix = "{prefix}"

[limits]
store = "redis"
max_streams_per_key = 1
slot_lease = "{lease}s"

[backends.up]
kind = "openai"
base_url = "{upstream}"

[models.gpt-test]
backend = "up"
upstream_model = "up-model"
"""


async def test_a_killed_instances_slots_free_within_their_lease(
    tmp_path, make_gateway, aiohttp_server, sdk, redis_url, redis_prefix
):
    lease = 3.0
    held = HeldUpstream(first=["a "], rest=["b"])
    server = await aiohttp_server(held.app())
    upstream = str(server.make_url("/v1"))
    toml = PROCESS.format(redis_url=redis_url, prefix=redis_prefix, lease=lease, upstream=upstream)
    proc = GatewayProcess("serve", config=toml, directory=tmp_path)
    try:
        await asyncio.to_thread(proc.wait_ready)
        doomed = openai.AsyncOpenAI(base_url=f"{proc.url}/v1", api_key="sk-a", max_retries=0)
        stream = await _open(doomed)
        assert isinstance(stream, openai.AsyncStream)
        local = await make_gateway(
            shared(redis_url, redis_prefix, server, max_streams_per_key=1, slot_lease=f"{lease}s")
        )
        api = sdk(local, api_key="sk-a")
        assert isinstance(await _open(api), openai.RateLimitError)  # held by the process
        proc.proc.kill()  # SIGKILL: the process gives nothing back
        killed = time.monotonic()
        await asyncio.to_thread(proc.proc.wait)
        assert isinstance(await _open(api), openai.RateLimitError)  # its lease still runs

        async def admitted() -> openai.AsyncStream | None:
            got = await _open(api)
            return got if isinstance(got, openai.AsyncStream) else None

        fresh = await until(admitted, within=lease + 5, what="the dead instance's slot freed")
        elapsed = time.monotonic() - killed
        # renewed at most a third of a lease before the kill; freed once the lease ran out
        assert lease * 2 / 3 - 0.5 < elapsed < lease + 1.0, elapsed
        held.release.set()
        assert await _text(fresh) == "a b"
        with contextlib.suppress(openai.APIError, httpx.HTTPError):
            await stream.close()
        await doomed.close()
    finally:
        held.release.set()
        proc.kill()


async def test_no_redis_round_trip_without_a_bound(make_gateway, redis_url, redis_prefix):
    """The defaults bound requests per process only: no Redis on the request path."""
    cfg = {"redis": {"url": redis_url, "prefix": redis_prefix}}
    gateway = (await make_gateway(cfg)).app[GATEWAY]
    assert "limits.store" not in gateway.state.users
    assert not any(isinstance(f, StreamBound) for f in gateway.filters)
    bounded = await make_gateway(
        {**cfg, "limits": {"max_streams_global": 4, "max_streams": 2, "max_requests": 0}}
    )
    flt = next(f for f in bounded.app[GATEWAY].filters if isinstance(f, StreamBound))
    assert isinstance(flt.shared, SharedSlots) and flt.shared.total == 4
    assert flt.slots is not None and flt.slots.total == 2 and flt.slots.per_key == 0


async def test_redis_unreachable_is_503_for_bounded_requests_only(
    make_gateway, aiohttp_server, sdk, own_redis
):
    held = HeldUpstream(first=["a "], rest=["b"])
    held.release.set()
    server = await aiohttp_server(held.app())
    client = await make_gateway(
        shared(own_redis.url, "hookgate-test:", server, max_streams_per_key=2)
    )
    api = sdk(client, api_key="sk-a")
    assert await _text(await _open(api)) == "a b"
    own_redis.stop()
    with pytest.raises(openai.InternalServerError) as info:
        await api.chat.completions.create(model="gpt-test", messages=USER, stream=True)
    assert info.value.status_code == 503
    assert info.value.response.headers["retry-after"] == "1"
    assert info.value.body["code"] == "state_store_unavailable"
    assert "bounds on streams in progress" in info.value.body["message"]
    # a request that is not a stream is not bounded here, and needs no Redis
    done = await api.chat.completions.create(model="gpt-test", messages=USER)
    assert done.choices[0].message.content == "a b"
