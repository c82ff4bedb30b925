"""Shared state on a real Redis: the one pooled client, Redis failures and recovery, cluster-safe
keys, and --workers refusing state kept in memory."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import openai
import pytest
import redis
import redis.asyncio as aioredis
from redis.crc import key_slot
from support.configs import upstream_config
from support.processes import hookgate_env
from support.services import RedisServer

from gateway import GATEWAY, create_app, hookimpl
from gateway.errors import ConfigError, GatewayError, Unavailable
from gateway.state.redis import pubsub_messages

MESSAGES = [{"role": "user", "content": "hi"}]


def _errors(data, env=None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        create_app(data, env=env or {})
    return info.value.errors


def test_workers_refuse_state_kept_in_memory(redis_url):
    two = {"server": {"workers": 2}}
    errors = _errors({**two, "sessions": {"store": "memory"}})
    assert errors == [
        "sessions.store: the memory store keeps state inside one process, but server.workers = 2 "
        "runs 2 of them, each with its own copy; set [redis] url (HOOKGATE_REDIS_URL) to share "
        "state through Redis, or run one worker"
    ]
    assert _errors({**two, "limits": {"rpm": 10}})[0].startswith("limits.store: the memory store")
    # Nothing shared (the default), or everything in Redis: fine.
    create_app(two, env={})
    gw = create_app(
        {**two, "sessions": {"store": "auto"}, "limits": {"rpm": 10}},
        env={"HOOKGATE_REDIS_URL": redis_url},
    )[GATEWAY]
    assert gw.state.users == {
        "sessions.store": "redis",
        "limits.store": "redis",
        "agui.store": "redis",  # auto: AG-UI runs follow [redis] url
        "a2a.store": "redis",  # and A2A tasks
        "responses.store": "redis",  # and stored Responses
        "mcp.store": "redis",  # and /mcp sessions
    }


def test_serve_with_workers_and_memory_sessions_exits_with_the_reason(tmp_path: Path):
    config = tmp_path / "hookgate.toml"
    config.write_text('[sessions]\nstore = "memory"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--workers", "3"],
        env=hookgate_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "sessions.store: the memory store keeps state inside one process" in proc.stderr
    assert "started (pid" not in proc.stderr  # refused before any worker was forked


class _Counter:
    """A plugin keeping its own shared state the documented way (gateway.state.redis)."""

    @hookimpl
    def gateway_configure_app(self, app, gateway):
        from aiohttp import web

        state = gateway.state.redis("counter")

        async def count(request):
            async with state.guard("the counter"):
                value = await state.client.incr(state.key("counter", "all"))
            return web.json_response({"count": value})

        gateway.add_route("POST", "/count", count, name="count")


async def test_a_plugin_uses_the_shared_client(make_gateway, redis_url, redis_prefix):
    cfg = {"redis": {"url": redis_url, "prefix": redis_prefix}}
    one = await make_gateway(cfg, plugins=[("counter", _Counter())])
    two = await make_gateway(cfg, plugins=[("counter", _Counter())])
    assert [(await (await c.post("/count")).json())["count"] for c in (one, two, one)] == [1, 2, 3]
    direct = redis.Redis.from_url(redis_url)
    assert direct.get(f"{redis_prefix}counter:{{all}}") == b"3"
    direct.close()
    client = one.server.app[GATEWAY].state.redis("counter").client
    assert client.connection_pool.max_connections == 50


async def test_keys_of_one_caller_share_a_cluster_slot(
    make_gateway, upstream, redis_url, redis_prefix, sdk
):
    keys = [{"key": "sk-a", "rpm": 100, "tpm": 10_000}, {"key": "sk-b", "rpm": 100}]
    client = await make_gateway(
        {
            **upstream_config(upstream),
            "redis": {"url": redis_url, "prefix": redis_prefix},
            "sessions": {"store": "redis"},
            "auth": {"keys": keys},
        }
    )
    for key in ("sk-a", "sk-b"):
        api = sdk(client, api_key=key)
        for session in ("one", "two{x}"):
            await api.chat.completions.create(
                model="gpt-test", messages=MESSAGES, extra_headers={"X-Session-Id": session}
            )
    direct = redis.Redis.from_url(redis_url)
    found = [k.decode() for k in direct.scan_iter(match=redis_prefix + "*", count=1000)]
    direct.close()
    slots = defaultdict(set)
    for key in found:
        tag = key[key.index("{") + 1 : key.index("}")]
        slots[tag].add(key_slot(key.encode()))
    assert len(slots) == 2 and all(len(s) == 1 for s in slots.values()), found
    assert len(found) == 2 * (1 + 3 * 2) + 3  # per key: index + 3 per session; 3 buckets


def _gateway_config(server: RedisServer | str, upstream, **redis_options):
    url = server if isinstance(server, str) else server.url
    return {
        **upstream_config(upstream),
        "redis": {"url": url, "connect_timeout": "300ms", "timeout": "300ms", **redis_options},
        "sessions": {"store": "redis"},
    }


async def test_redis_stopped_and_restarted_mid_test(make_gateway, upstream, own_redis, sdk):
    client = await make_gateway(_gateway_config(own_redis, upstream))
    api = sdk(client)

    async def ask(text, session="trip", **kwargs):
        return await api.chat.completions.create(
            model="gpt-test",
            messages=[{"role": "user", "content": text}],
            extra_headers={"X-Session-Id": session} if session else None,
            **kwargs,
        )

    await ask("before")
    own_redis.stop()
    started = time.monotonic()
    with pytest.raises(openai.InternalServerError) as info:
        await ask("during")
    assert time.monotonic() - started < 5  # bounded: no hanging on a dead store
    assert info.value.status_code == 503
    assert info.value.body["type"] == "service_unavailable"
    assert info.value.body["code"] == "state_store_unavailable"
    assert info.value.response.headers["retry-after"] == "1"
    with pytest.raises(openai.InternalServerError):
        await ask("during", stream=True)  # refused before the stream starts
    assert (await ask("no session needed", session=None)).choices[0].message.content
    assert (await client.get("/health")).status == 200
    resp = await client.get("/v1/sessions")
    assert resp.status == 503 and (await resp.json())["error"]["code"] == "state_store_unavailable"

    own_redis.start()  # same port, empty: the gateway reconnects by itself
    deadline = time.monotonic() + 15
    while True:
        try:
            await ask("after")
            break
        except openai.InternalServerError:
            assert time.monotonic() < deadline, "the gateway did not reconnect to Redis"
            await asyncio.sleep(0.1)
    await ask("again")
    page = await (await client.get("/v1/sessions/trip")).json()
    assert [m["content"] for m in page["messages"] if m["role"] == "user"] == ["after", "again"]


async def test_redis_down_at_startup_then_up(make_gateway, upstream, sdk, caplog):
    server = RedisServer()  # not started yet
    with caplog.at_level(logging.WARNING, logger="gateway.state.redis"):
        client = await make_gateway({**_gateway_config(server, upstream), "limits": {"rpm": 100}})
    assert "does not answer" in caplog.text
    api = sdk(client)
    with pytest.raises(openai.InternalServerError) as info:
        await api.chat.completions.create(model="gpt-test", messages=MESSAGES)
    assert "rate limits cannot be used" in info.value.message
    server.start()
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                await api.chat.completions.create(model="gpt-test", messages=MESSAGES)
                break
            except openai.InternalServerError:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
    finally:
        server.stop()


async def test_a_redis_that_never_answers_is_unavailable_in_bounded_time(
    make_gateway, upstream, sdk
):
    held: list[asyncio.StreamWriter] = []

    async def mute(reader, writer):
        held.append(writer)  # accept, read nothing, answer nothing

    silent = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    try:
        client = await make_gateway(_gateway_config(f"redis://127.0.0.1:{port}/0", upstream))
        gateway = client.server.app[GATEWAY]
        assert gateway.state.redis("sessions.store").bound == pytest.approx(1.2)
        started = time.monotonic()
        with pytest.raises(openai.InternalServerError) as info:
            await sdk(client).chat.completions.create(
                model="gpt-test", messages=MESSAGES, extra_headers={"X-Session-Id": "s"}
            )
        assert info.value.status_code == 503
        assert time.monotonic() - started < 5
    finally:
        for writer in held:
            writer.close()
        silent.close()
        await silent.wait_closed()


async def test_guard_maps_errors(redis_url):
    from gateway.config.sections import RedisConfig, RedisUrl
    from gateway.state.redis import RedisState

    state = RedisState(RedisConfig(url=RedisUrl(redis_url)))
    await state.open()
    try:
        with pytest.raises(Unavailable):
            async with state.guard("the test"):
                raise redis.exceptions.ConnectionError("gone")
        assert state.healthy is False
        async with state.guard("the test"):
            assert await state.client.ping()
        assert state.healthy is True
        with pytest.raises(GatewayError) as info:
            async with state.guard("the test"):
                await state.client.execute_command("NO-SUCH-COMMAND")
        assert info.value.status == 500 and "state store failed" in info.value.message
    finally:
        await state.close()
    with pytest.raises(RuntimeError):
        state.client  # noqa: B018 - closed with the app


async def test_pubsub_readers_end_when_cancelled(redis_url, redis_prefix):
    # redis-py can swallow a cancellation that lands inside a read (PubSub.listen() then reads
    # on); readers of gateway.state.redis.messages (the runs' cancellation listener, the
    # redis-pubsub listener) end all the same. Many times, cancelled after 0 to 49 ms of
    # reading, as it is a race.
    subscribed = asyncio.Event()

    async def read() -> None:
        client = aioredis.Redis.from_url(redis_url, health_check_interval=30)
        try:
            async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                await pubsub.subscribe(f"{redis_prefix}channel")
                subscribed.set()
                async for _ in pubsub_messages(pubsub):
                    pass
        finally:
            await client.aclose()

    for i in range(50):
        subscribed.clear()
        task = asyncio.create_task(read())
        await asyncio.wait_for(subscribed.wait(), 10)
        await asyncio.sleep(0.001 * i)  # the time spent reading is what varies
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=5)
        assert done and task.cancelled(), f"reader {i} did not end when cancelled"
