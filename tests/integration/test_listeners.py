"""Listeners against real servers: Redis pub/sub and streams (consumer groups, redelivery after
a handler's failure or a consumer's death, dead letters), an SSE source that drops and resumes,
and NATS queue groups."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from typing import Any

import nats
import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient
from fakes.triggers import metric, run_events, text_of, until, until_metric
from support.proxy import ForwardProxy

from gateway import create_app
from gateway.triggers import Listener, ListenerManager
from gateway.triggers.service import SERVICE


def listeners_of(client: TestClient) -> list[Listener]:
    return [s for s in client.app[SERVICE].sources if isinstance(s, Listener)]


async def connected(*clients: TestClient, count: int | None = None) -> None:
    """Wait until ``count`` listeners of these apps (all, by default) are connected."""
    found = [lis for c in clients for lis in listeners_of(c)]
    want = len(found) if count is None else count
    await until(lambda: sum(lis.connected.is_set() for lis in found) >= want)


@pytest.fixture
async def redis_client(redis_url):
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


def name() -> str:
    return f"hookgate-test-{uuid.uuid4().hex[:10]}"


# --- Redis pub/sub --------------------------------------------------------------------------------


async def test_redis_pubsub_calls_a_python_handler(make_gateway, redis_url, redis_client):
    channel = name()
    listeners = ListenerManager()
    got: list[tuple[Any, str]] = []

    @listeners.on_redis_pubsub(channel, url=redis_url)
    async def orders(payload, event):
        got.append((payload, event.type))

    client = await make_gateway({}, plugins=[listeners])
    await connected(client)
    await redis_client.publish(channel, orjson.dumps({"order_id": 7}))
    await redis_client.publish(channel, b"plain words")
    await until(lambda: len(got) == 2)
    assert got == [({"order_id": 7}, channel), ({"text": "plain words"}, channel)]


async def test_redis_pubsub_runs_an_agent_on_one_instance_of_two(
    make_gateway, redis_url, redis_prefix, redis_client
):
    channel = name()
    cfg = {
        "redis": {"url": redis_url, "prefix": redis_prefix},
        "triggers": {"lease": "1s"},
        "listeners": {
            "orders": {
                "kind": "redis-pubsub",
                "channel": channel,
                "agent": "echo",
                "prompt": "Process order {order_id}",
            }
        },
    }
    one, two = await make_gateway(cfg), await make_gateway(cfg)
    await connected(one, two, count=1)
    for i in range(5):
        await redis_client.publish(channel, orjson.dumps({"order_id": i}))

    async def total() -> float:
        return sum(
            [
                await metric(
                    c, "hookgate_trigger_jobs_total", trigger="listener:orders", outcome="ok"
                )
                for c in (one, two)
            ]
        )

    await until(lambda: _equals(total(), 5))
    await asyncio.sleep(0.2)  # a quiet period, in which a second listener's runs would show
    assert await total() == 5  # one listener heard them: each order ran once


async def _equals(value: Any, expected: float) -> bool:
    return await value == expected


# --- Redis streams --------------------------------------------------------------------------------


def stream_config(redis_url: str, stream: str, **listener: Any) -> dict[str, Any]:
    return {
        "listeners": {
            "jobs": {"kind": "redis-stream", "stream": stream, "url": redis_url, **listener}
        }
    }


async def pending(client: aioredis.Redis, stream: str, group: str = "hookgate") -> int:
    return (await client.xpending(stream, group))["pending"]


async def test_redis_stream_runs_an_agent_and_acknowledges(make_gateway, redis_url, redis_client):
    stream = name()
    client = await make_gateway(
        stream_config(redis_url, stream, agent="echo", prompt="Ship {sku} x{qty}")
    )
    await connected(client)
    entry = (
        await redis_client.xadd(stream, {"data": orjson.dumps({"sku": "A1", "qty": 2})})
    ).decode()
    events = await run_events(client, f"jobs-{entry}")
    assert text_of(events) == "Ship A1 x2"
    await until(lambda: _equals(pending(redis_client, stream), 0))
    await redis_client.delete(stream)


async def test_redis_stream_redelivers_after_a_handler_crash(make_gateway, redis_url, redis_client):
    stream = name()
    attempts: list[tuple[str, int]] = []
    listeners = ListenerManager()

    @listeners.on_redis_stream(stream, url=redis_url, claim_idle="200ms", name="crashy")
    def handle(payload, event):
        attempts.append((event.id, event.attempt))
        if event.attempt == 1:
            raise RuntimeError("the handler crashed")

    client = await make_gateway({}, plugins=[listeners])
    await connected(client)
    entry = (await redis_client.xadd(stream, {"a": "1", "b": "2"})).decode()
    await until(lambda: len(attempts) == 2)
    assert attempts == [(entry, 1), (entry, 2)]
    await until(lambda: _equals(pending(redis_client, stream), 0))
    assert await metric(client, "hookgate_listener_messages_total", outcome="redelivered") == 1
    assert (
        await metric(
            client, "hookgate_trigger_jobs_total", trigger="listener:crashy", outcome="failed"
        )
        == 1
    )
    await redis_client.delete(stream)


async def test_redis_stream_message_of_a_dead_consumer_is_claimed(
    aiohttp_client, redis_url, redis_client
):
    stream = name()
    started = asyncio.Event()
    finished: list[tuple[str, Any]] = []

    def app(handler: Any) -> web.Application:
        listeners = ListenerManager()
        listeners.on_redis_stream(stream, url=redis_url, claim_idle="300ms", name="work")(handler)
        return create_app({"triggers": {"drain_timeout": "100ms"}}, plugins=[listeners])

    async def hangs(payload: Any) -> None:
        started.set()
        await asyncio.Event().wait()

    async def works(payload: Any, event: Any) -> None:
        finished.append((event.id, payload))

    first = await aiohttp_client(app(hangs))
    await connected(first)
    entry = (await redis_client.xadd(stream, {"data": b'{"n": 1}'})).decode()
    await asyncio.wait_for(started.wait(), 10)
    await first.close()  # the consumer goes away with the message unacknowledged
    assert await pending(redis_client, stream) == 1
    second = await aiohttp_client(app(works))
    await until(lambda: finished)
    assert finished == [(entry, {"n": 1})]
    await until(lambda: _equals(pending(redis_client, stream), 0))
    await second.close()
    await redis_client.delete(stream)


async def test_redis_stream_gives_up_to_a_dead_letter_stream(make_gateway, redis_url, redis_client):
    stream, dead = name(), name()
    client = await make_gateway(
        stream_config(
            redis_url,
            stream,
            call="fakes.triggers:explode",
            claim_idle="100ms",
            max_deliveries=2,
            dead_letter=dead,
        )
    )
    await connected(client)
    entry = await redis_client.xadd(stream, {"data": b"{}"})
    await until(lambda: redis_client.xlen(dead))
    [(_, fields)] = await redis_client.xrange(dead)
    assert fields[b"source_id"] == entry and fields[b"source_stream"] == stream.encode()
    assert await pending(redis_client, stream) == 0
    await until_metric(client, "hookgate_listener_messages_total", 1, outcome="dead")
    await redis_client.delete(stream, dead)


async def test_redis_stream_group_shares_messages_between_instances(
    make_gateway, redis_url, redis_client
):
    stream = name()
    seen: list[str] = []

    def manager() -> ListenerManager:
        listeners = ListenerManager()

        @listeners.on_redis_stream(stream, url=redis_url, name="shared", batch=3)
        async def handle(payload, event):
            await asyncio.sleep(0.01)
            seen.append(event.id)

        return listeners

    one = await make_gateway({}, plugins=[manager()])
    two = await make_gateway({}, plugins=[manager()])
    await connected(one, two)
    ids = [(await redis_client.xadd(stream, {"n": str(i)})).decode() for i in range(20)]
    await until(lambda: len(seen) >= 20)
    await asyncio.sleep(0.1)  # a quiet period, in which a redelivered message would show
    assert sorted(seen) == sorted(ids)
    await redis_client.delete(stream)


async def test_an_idle_redis_stream_listener_keeps_its_connection(
    make_gateway, redis_url, redis_client, caplog
):
    stream = name()
    seen: list[Any] = []
    listeners = ListenerManager()

    # Reads that wait longer than redis-py's default socket timeout (5 s) for a message.
    @listeners.on_redis_stream(stream, url=redis_url, block="5500ms", name="idle")
    async def handle(payload, event):
        seen.append(payload)

    client = await make_gateway({}, plugins=[listeners])
    await connected(client)
    await asyncio.sleep(6.5)  # the idle time under test: one whole read with nothing to read
    await redis_client.xadd(stream, {"data": b'{"n": 1}'})
    await until(lambda: seen == [{"n": 1}])
    assert not [r for r in caplog.records if "reconnecting" in r.getMessage()]
    await redis_client.delete(stream)


async def test_redis_stream_listener_outlasts_a_redis_that_stops_answering(make_gateway, own_redis):
    stream = name()
    seen: list[Any] = []
    listeners = ListenerManager()

    @listeners.on_redis_stream(stream, url=own_redis.url, block="200ms", name="frozen")
    async def handle(payload, event):
        seen.append(payload)

    client = await make_gateway({}, plugins=[listeners])
    await connected(client)
    direct = aioredis.Redis.from_url(own_redis.url)
    try:
        await direct.xadd(stream, {"data": b'{"n": 1}'})
        await until(lambda: seen == [{"n": 1}])
        # Frozen, Redis keeps the connection and answers nothing: the listener's read does not
        # wait forever; it gives the connection up and tries again.
        os.kill(own_redis.proc.pid, signal.SIGSTOP)
        try:
            (listener,) = listeners_of(client)
            await until(lambda: not listener.connected.is_set(), 10, "the connection given up")
        finally:
            os.kill(own_redis.proc.pid, signal.SIGCONT)
        await connected(client)
        await direct.xadd(stream, {"data": b'{"n": 2}'})
        await until(lambda: seen == [{"n": 1}, {"n": 2}])
    finally:
        await direct.aclose()


# --- SSE ------------------------------------------------------------------------------------------


async def test_sse_listener_reconnects_with_last_event_id(make_gateway, aiohttp_server):
    connections: list[str | None] = []
    finished = asyncio.Event()

    async def source(request: web.Request) -> web.StreamResponse:
        connections.append(request.headers.get("Last-Event-ID"))
        if len(connections) == 1:
            return web.Response(status=503)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        if len(connections) == 2:
            await resp.write(b'id: 1\nevent: order.created\ndata: {"id": 1}\n\n: keep-alive\n\n')
            await resp.write(b"id: 2\nevent: noise\ndata: ignored\n\n")
            return resp  # the source drops the connection
        await resp.write(b'id: 3\nevent: order.created\ndata: {"id": 3}\n\n')
        await finished.wait()
        return resp

    app = web.Application()
    app.router.add_get("/events", source)
    server = await aiohttp_server(app)
    got: list[tuple[str | None, str, Any]] = []
    listeners = ListenerManager()

    @listeners.on_sse(str(server.make_url("/events")), events=["order.created"])
    async def orders(payload, headers, event):
        got.append((event.id, event.type, payload))

    await make_gateway({}, plugins=[listeners])
    await until(lambda: len(got) == 2)
    assert got == [("1", "order.created", {"id": 1}), ("3", "order.created", {"id": 3})]
    assert connections == [None, None, "2"]
    finished.set()


async def test_sse_listener_reaches_its_source_through_the_environments_proxy(
    make_gateway, aiohttp_server, monkeypatch
):
    async def source(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b'id: 1\nevent: order.created\ndata: {"id": 1}\n\n')
        await asyncio.Event().wait()  # held open until the gateway stops
        return resp

    app = web.Application()
    app.router.add_get("/events", source)
    server = await aiohttp_server(app)
    url = str(server.make_url("/events"))
    got: list[Any] = []
    listeners = ListenerManager()

    @listeners.on_sse(url, events=["order.created"])
    async def orders(payload, headers, event):
        got.append(payload)

    with ForwardProxy("ada", "pw").running() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url("ada:pw"))
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        await make_gateway({}, plugins=[listeners])
        await until(lambda: got == [{"id": 1}])
        assert proxy.asked == [f"GET {url}"] and proxy.refused == 0


# --- NATS -----------------------------------------------------------------------------------------


async def test_nats_queue_group_gives_each_message_to_one_instance(make_gateway, nats_url):
    subject = f"hookgate.test.{uuid.uuid4().hex[:8]}"
    got: list[tuple[Any, str, str | None, str]] = []

    def manager(tag: str) -> ListenerManager:
        listeners = ListenerManager()

        @listeners.on_nats(subject, servers=[nats_url], name="events")
        async def handle(payload, headers, event):
            got.append((payload, event.type, event.id, tag))

        return listeners

    one = await make_gateway({}, plugins=[manager("one")])
    two = await make_gateway({}, plugins=[manager("two")])
    await connected(one, two)
    publisher = await nats.connect(nats_url)
    try:
        await publisher.publish(subject, b'{"n": 0}', headers={"Nats-Msg-Id": "m-0"})
        for i in range(1, 10):
            await publisher.publish(subject, orjson.dumps({"n": i}))
        await publisher.flush()
        await until(lambda: len(got) >= 10)
        await asyncio.sleep(0.1)  # a quiet period, in which a message given twice would show
    finally:
        await publisher.close()
    assert sorted(g[0]["n"] for g in got) == list(range(10))
    first = next(g for g in got if g[0]["n"] == 0)
    assert first[1] == subject and first[2] == "m-0"


# --- configuration ---------------------------------------------------------------------------------
