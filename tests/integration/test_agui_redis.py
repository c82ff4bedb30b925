"""AG-UI runs in Redis Streams: attach, resume and cancel through any instance."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis
from support.agui_check import check_order, checked, events_of, text_of
from support.configs import agent_toml
from support.processes import gateway_process

from gateway import GATEWAY, ConfigError, create_app
from gateway.auth.keys import digest
from gateway.config.sections import RedisConfig, RedisUrl
from gateway.runs import Run, RunInfo
from gateway.runs.redis import RedisRunStore
from gateway.state.redis import RedisState

KEYS = {"auth": {"keys": ["sk-a", "sk-b"]}}
A = {"Authorization": "Bearer sk-a"}
WORDS = " ".join(f"w{i}" for i in range(40))


def config(redis_url, prefix, **extra):
    return {
        "redis": {"url": redis_url, "prefix": prefix},
        "agui": {"store": "redis"},
        "backends": {"slow": {"kind": "echo", "delay": "20ms"}},
        "models": {"slow": {"backend": "slow"}},
        "agents": {"talker": {"model": "slow"}},
        **KEYS,
        **extra,
    }


def run_input(text, run_id):
    return {
        "threadId": "thread-r",
        "runId": run_id,
        "messages": [{"id": "m1", "role": "user", "content": text}],
    }


async def frames(resp, n):
    data = b""
    for _ in range(n):
        data += await resp.content.readuntil(b"\n\n")
    return data


async def test_a_run_started_on_one_instance_is_followed_resumed_and_cancelled_on_another(
    make_gateway, redis_url, redis_prefix
):
    one = await make_gateway(config(redis_url, redis_prefix))
    two = await make_gateway(config(redis_url, redis_prefix))
    assert one.server.app[GATEWAY].state.users["agui.store"] == "redis"

    started = await one.post("/agui/agents/talker/runs", json=run_input(WORDS, "r1"), headers=A)
    head = await frames(started, 4)
    started.close()
    # the other instance follows it live from event 5 on, through Redis
    resumed = await two.get(
        "/agui/ws", params={"run_id": "r1", "token": "sk-a"}, headers={"Last-Event-ID": "4"}
    )
    events = events_of(head) + events_of(await resumed.read(), first_id=5)
    check_order(events)
    assert text_of(events) == WORDS
    # finished runs replay from Redis, on either instance; other keys see nothing
    for client in (one, two):
        again = await client.get("/agui/ws", params={"run_id": "r1"}, headers=A)
        assert checked(await again.read()) == events
    denied = await two.get("/agui/ws", params={"run_id": "r1", "token": "sk-b"})
    assert denied.status == 404
    # run ids are claimed across instances
    twice = await two.post("/agui/agents/talker/runs", json=run_input("x", "r1"), headers=A)
    assert twice.status == 409

    # a DELETE on the other instance cancels the run where it is produced
    running = await one.post("/agui/agents/talker/runs", json=run_input(WORDS, "r2"), headers=A)
    head = await frames(running, 3)
    cancel = await two.delete("/agui/runs/r2", headers=A)
    assert cancel.status == 202
    cancelled = checked(head + await running.read())
    assert cancelled[-1]["outcome"] == {"type": "cancelled"}
    assert text_of(cancelled) != WORDS


@pytest.fixture
async def redis_state(redis_url, redis_prefix):
    state = RedisState(RedisConfig(url=RedisUrl(redis_url), prefix=redis_prefix))
    await state.open()
    yield state
    await state.close()


async def test_resuming_inside_a_stored_batch(redis_state):
    store = RedisRunStore(redis_state, ttl=60)
    run = Run("batched", "t", "owner")
    assert await store.reserve(run)
    events = [b'{"type":"CUSTOM","name":"n","value":%d}' % i for i in range(1, 10)]
    for data in events:  # all at once: one stream entry
        run.append(data)
    store.record(run)
    run.append(b'{"type":"RUN_FINISHED","threadId":"t","runId":"batched"}')
    run.close()
    await store.finish(run)
    assert await store.lookup("owner", "batched") == RunInfo("batched", "owner", True)
    for after in (0, 4, 9):
        got = [b async for b in store.follow("owner", "batched", after)]
        numbers = [first + i for first, batch in got for i in range(len(batch))]
        assert numbers == list(range(after + 1, 11))
        assert [d for _, batch in got for d in batch] == [*events, run.events[-1]][after:]
    assert [b async for b in store.follow("owner", "batched", 10)] == []  # past the end


async def test_a_run_that_ends_as_its_follower_looks_is_followed_to_its_end(
    redis_state, monkeypatch
):
    """The follower finds nothing, and the run ends (its last events and its done state, in one
    transaction) before the follower asks for its state: the follower still gets every event."""
    store = RedisRunStore(redis_state, ttl=60)
    run = Run("ending", "t", "owner")
    assert await store.reserve(run)
    store.record(run)
    client = redis_state.client
    get = client.get

    async def ended_meanwhile(name):
        if not run.done:
            run.append(b'{"type":"RUN_STARTED","threadId":"t","runId":"ending"}')
            run.append(b'{"type":"RUN_FINISHED","threadId":"t","runId":"ending"}')
            run.close()
            await store.finish(run)  # written, and the run's state set to done
        return await get(name)

    monkeypatch.setattr(client, "get", ended_meanwhile)
    got = [b async for b in store.follow("owner", "ending", 0)]
    assert run.done and got == [(1, run.events)]


async def test_a_run_whose_instance_died_ends_for_its_followers(redis_state):
    """The producing instance stops refreshing the run's keys: followers get RUN_ERROR."""
    store = RedisRunStore(redis_state, ttl=60, alive=0.3)
    run = Run("dead", "t", "owner")
    assert await store.reserve(run)
    store.record(run)
    run.append(b'{"type":"RUN_STARTED","threadId":"t","runId":"dead"}')
    follower = store.follow("owner", "dead", 0)
    assert await anext(follower) == (1, [run.events[0]])
    await store.close()  # the writer stops: nobody refreshes the run any more
    number, [lost] = await anext(follower)
    assert number == 2 and orjson.loads(lost)["code"] == "run_lost"
    with pytest.raises(StopAsyncIteration):
        await anext(follower)


async def test_run_log_layout_and_ttl(make_gateway, redis_url, redis_prefix):
    cfg = config(redis_url, redis_prefix, agui={"store": "redis", "run_ttl": "2s"})
    client = await make_gateway(cfg)
    resp = await client.post("/agui/agents/talker/runs", json=run_input("a b", "short"), headers=A)
    events = checked(await resp.read())
    owner = "key-" + digest("sk-a").hex()[:16]
    state = f"{redis_prefix}agui:{{{owner}}}:s:short"
    stream = f"{redis_prefix}agui:{{{owner}}}:e:short"
    direct = aioredis.Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + 5
        while await direct.get(state) != b"done":  # the log is flushed after the stream ends
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        assert 0 < await direct.pttl(state) <= 2000 and 0 < await direct.pttl(stream) <= 2000
        stored, number = [], 0
        for entry_id, fields in await direct.xrange(stream):
            batch = fields[b"e"].split(b"\n")
            number += len(batch)
            assert entry_id == f"{number}-0".encode()  # an entry is named by its last event
            stored.extend(orjson.loads(data) for data in batch)
        assert stored == events
    finally:
        await direct.aclose()


def test_resume_through_a_second_gateway_process(
    tmp_path, redis_url, redis_prefix, upstream_process
):
    head = f'[redis]\nurl = "{redis_url}"\nprefix = "{redis_prefix}"\n[auth]\nkeys = ["sk-a"]\n'
    toml = agent_toml(tmp_path / "hookgate.toml", upstream_process, head)

    async def scenario(first_url, second_url):
        async with aiohttp.ClientSession(headers=A) as session:
            resp = await session.post(
                f"{first_url}/agui/agents/helper/runs", json=run_input("DRIP", "cross")
            )
            head = await frames(resp, 4)
            resp.close()  # the browser's connection to the first gateway breaks
            attached = await session.get(
                f"{second_url}/agui/ws", params={"run_id": "cross"}, headers={"Last-Event-ID": "4"}
            )
            more = b""
            while more.count(b"\n\n") < 5:
                more += await attached.content.readuntil(b"\n\n")
            cancel = await session.delete(f"{second_url}/agui/runs/cross")
            assert cancel.status == 202
            rest = more + await attached.read()
            return events_of(head) + events_of(rest, first_id=5)

    with (
        gateway_process("serve", "--config", toml) as one,
        gateway_process("serve", "--config", toml) as two,
    ):
        events = asyncio.run(scenario(one.url, two.url))
    check_order(events)
    assert events[0]["runId"] == "cross"
    assert events[-1]["type"] == "RUN_FINISHED" and events[-1]["outcome"] == {"type": "cancelled"}
    assert text_of(events).startswith("drip drip ")
    with urllib.request.urlopen(upstream_process.removesuffix("/v1") + "/_cancelled") as r:
        assert "DRIP" in json.load(r)  # the upstream request was cancelled too
    assert one.returncode == 0 and two.returncode == 0, one.output + two.output


def test_workers_and_the_run_store(redis_url, caplog):
    two = {"server": {"workers": 2}}
    create_app(two, env={})  # auto without Redis: each worker keeps its runs, with a warning
    assert "cancelling it works only through the worker running it" in caplog.text
    with pytest.raises(ConfigError) as info:
        create_app({**two, "agui": {"store": "memory"}}, env={})
    assert info.value.errors[0].startswith("agui.store: the memory store keeps state inside")
    with pytest.raises(ConfigError) as info:
        create_app({"agui": {"store": "redis"}}, env={})
    assert info.value.errors == [
        "agui.store: the redis store needs [redis] url (or HOOKGATE_REDIS_URL) to be set"
    ]
    with pytest.raises(ConfigError) as info:
        create_app({"agui": {"store": "disk"}}, env={})
    assert info.value.errors == ["agui.store: expected 'auto', 'memory' or 'redis', not 'disk'"]
    shared = create_app(two, env={"HOOKGATE_REDIS_URL": redis_url})[GATEWAY]
    assert shared.state.users["agui.store"] == "redis"
