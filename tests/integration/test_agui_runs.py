"""AG-UI runs beyond one request: attach and resume, cancel, WebSocket, keys, isolation, load."""

from __future__ import annotations

import asyncio
import signal
import socket
import time

import aiohttp
import orjson
import pytest
from aiohttp import web
from fakes.openai_upstream import CANCELLED
from support.agui_check import check_order, checked, events_of, text_of, types_of, validate_event
from support.configs import agent_toml, upstream_config
from support.processes import gateway_process

from gateway import GATEWAY, hookimpl

KEYS = {"auth": {"keys": ["sk-a", "sk-b"]}}
A = {"Authorization": "Bearer sk-a"}
B = {"Authorization": "Bearer sk-b"}


def slow_config(**extra):
    """An agent whose model (echo) writes one word every 20 ms."""
    return {
        "backends": {"slow": {"kind": "echo", "delay": "20ms"}, "fast": {"kind": "echo"}},
        "models": {"slow": {"backend": "slow"}, "fast": {"backend": "fast"}},
        "agents": {"talker": {"model": "slow"}, "blurter": {"model": "fast"}},
        **extra,
    }


def run_input(text, run_id, agent=None, thread_id="thread-1"):
    body = {
        "threadId": thread_id,
        "runId": run_id,
        "messages": [{"id": "m1", "role": "user", "content": text}],
    }
    if agent:
        body["forwardedProps"] = {"agent": agent}
    return body


WORDS = " ".join(f"w{i}" for i in range(30))


async def frames(resp, n):
    """The first ``n`` SSE frames of a streaming response."""
    data = b""
    for _ in range(n):
        data += await resp.content.readuntil(b"\n\n")
    return data


async def wait_for(condition):
    """Poll ``condition`` until it holds (failing after 10 s)."""
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_resume_from_last_event_id_through_the_attach_route(make_gateway, store_config):
    client = await make_gateway(slow_config(**store_config("agui")))
    resp = await client.post("/agui/agents/talker/runs", json=run_input(WORDS, "r1"))
    head = await frames(resp, 4)
    resp.close()  # the connection drops; the run goes on
    early = events_of(head)
    assert types_of(early)[:3] == ["RUN_STARTED", "TEXT_MESSAGE_START", "TEXT_MESSAGE_CONTENT"]
    resumed = await client.get("/agui/ws", params={"run_id": "r1"}, headers={"Last-Event-ID": "4"})
    assert resumed.status == 200
    rest = events_of(await resumed.read(), first_id=5)
    events = early + rest
    check_order(events)
    assert text_of(events) == WORDS and events[-1]["type"] == "RUN_FINISHED"
    # after the end, attaching replays the whole run, also from a query parameter
    again = await client.get("/agui/ws", params={"run_id": "r1", "last_event_id": "0"})
    assert checked(await again.read()) == events


async def test_keys_scope_runs_and_browsers_pass_a_token(make_gateway, store_config):
    client = await make_gateway(slow_config(**KEYS, **store_config("agui")))
    resp = await client.post("/agui/runs", json=run_input("hi", "keyed", "blurter"), headers=A)
    assert resp.status == 200
    checked(await resp.read())
    # EventSource cannot set headers: the attach route takes ?token=
    resp = await client.get("/agui/ws", params={"run_id": "keyed", "token": "sk-a"})
    assert text_of(checked(await resp.read())) == "hi"
    for params, headers, status in (
        ({"run_id": "keyed", "token": "sk-b"}, {}, 404),  # another key's run is not found
        ({"run_id": "keyed"}, B, 404),
        ({"run_id": "keyed"}, {}, 401),
        ({"run_id": "nope"}, A, 404),
        ({}, A, 400),
        ({"run_id": "keyed", "last_event_id": "x"}, A, 400),
    ):
        resp = await client.get("/agui/ws", params=params, headers=headers)
        assert resp.status == status, (params, headers)
    resp = await client.post(
        "/agui/runs", params={"token": "sk-a"}, json=run_input("hi", "q", "blurter")
    )
    assert resp.status == 401  # only where browsers cannot send headers
    assert (await client.delete("/agui/runs/keyed", headers=B)).status == 404


async def test_delete_cancels_the_run_and_its_upstream_request(make_gateway, upstream):
    cfg = upstream_config(upstream)
    cfg["agents"] = {"helper": {"model": "gpt-test"}}
    client = await make_gateway(cfg)
    resp = await client.post("/agui/agents/helper/runs", json=run_input("DRIP", "drip"))
    head = await frames(resp, 3)
    assert types_of(events_of(head))[-1] == "TEXT_MESSAGE_CONTENT"
    cancel = await client.delete("/agui/runs/drip")
    assert cancel.status == 202 and (await cancel.json())["status"] == "cancelling"
    events = checked(head + await resp.read())
    assert events[-1]["type"] == "RUN_FINISHED"
    assert events[-1]["outcome"] == {"type": "cancelled"}
    assert types_of(events)[-2] == "TEXT_MESSAGE_END"
    await wait_for(lambda: "DRIP" in upstream.app[CANCELLED])
    again = await client.delete("/agui/runs/drip")
    assert again.status == 409 and (await again.json())["error"]["code"] == "run_ended"
    assert (await client.delete("/agui/runs/never")).status == 404


async def test_websocket_runs_cancels_and_attaches(make_gateway, store_config):
    client = await make_gateway(slow_config(**KEYS, **store_config("agui")))

    async def until_end(ws, seen=()):
        events = list(seen)
        while not events or events[-1]["type"] not in ("RUN_FINISHED", "RUN_ERROR"):
            events.append(await ws.receive_json(timeout=10))
        for ev in events:
            validate_event(ev)
        check_order(events)
        return events

    async with client.ws_connect("/agui/ws", params={"token": "sk-a"}) as ws:
        # two inputs sent at once run one after the other
        await ws.send_json(run_input("one two", "ws-1", "blurter"))
        await ws.send_json(run_input("three", "ws-2", "blurter"))
        first, second = await until_end(ws), await until_end(ws)
        assert first[0]["runId"] == "ws-1" and text_of(first) == "one two"
        assert second[0]["runId"] == "ws-2" and text_of(second) == "three"
        # cancel the run streaming now
        await ws.send_json(run_input(WORDS, "ws-3", "talker"))
        seen = []
        while "TEXT_MESSAGE_CONTENT" not in types_of(seen):
            seen.append(await ws.receive_json(timeout=10))
        await ws.send_json({"type": "cancel"})
        cancelled = await until_end(ws, seen)
        assert cancelled[-1]["outcome"] == {"type": "cancelled"}
        # bad input: a RUN_ERROR saying why, and the socket stays usable
        await ws.send_str("not json")
        assert (await ws.receive_json(timeout=10))["code"] == "bad_message"
        await ws.send_json({"threadId": "t", "runId": "ws-4", "messages": []})
        error = await ws.receive_json(timeout=10)
        assert error["type"] == "RUN_ERROR" and error["code"] == "invalid_request"
        validate_event(error)
    async with client.ws_connect("/agui/ws", params={"token": "sk-a", "run_id": "ws-1"}) as ws:
        assert await until_end(ws) == first
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await client.ws_connect("/agui/ws", params={"token": "sk-b", "run_id": "ws-1"})
    assert info.value.status == 404


async def test_fifty_concurrent_runs_each_get_exactly_their_own_events(make_gateway, upstream):
    cfg = upstream_config(upstream)
    cfg["agents"] = {"helper": {"model": "gpt-test", "tools": ["fakes.tools:tag"]}}
    client = await make_gateway(cfg)

    async def one(i):
        body = run_input(f'CALL tag {{"tag": "t{i}"}}', f"iso-{i}", thread_id=f"thread-{i}")
        resp = await client.post("/agui/agents/helper/runs", json=body)
        events = checked(await resp.read())
        assert {e["runId"] for e in events if "runId" in e} == {f"iso-{i}"}
        assert {e["threadId"] for e in events if "threadId" in e} == {f"thread-{i}"}
        assert [e["content"] for e in events if e["type"] == "TOOL_CALL_RESULT"] == [
            f"t{i}@iso-{i}"
        ]
        assert text_of(events) == f"Calling tools.\n\nresults: t{i}@iso-{i}"
        return events

    runs = await asyncio.gather(*(one(i) for i in range(50)))
    message_ids = [e["messageId"] for events in runs for e in events if "messageId" in e]
    assert len(set(message_ids)) == len(
        {(i, e["messageId"]) for i, ev in enumerate(runs) for e in ev if "messageId" in e}
    )  # no message id is shared between runs


class SmallSendBuffers:
    """Requests carrying ``x-test-small-buffers`` get a 4 KiB kernel send buffer, so a client that
    stops reading blocks the gateway's writes at once (loopback buffers are megabytes, enough to
    swallow a whole test run and hide the slow client)."""

    @hookimpl
    def gateway_configure_app(self, app, gateway):
        @web.middleware
        async def shrink(request, handler):
            if "x-test-small-buffers" in request.headers:
                sock = request.transport.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            return await handler(request)

        app.middlewares.append(shrink)


async def _stuck_client(client, path, body):
    """Send a request from a socket with a tiny receive buffer that then reads nothing."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await loop.sock_connect(sock, (client.server.host, client.server.port))
    data = orjson.dumps(body)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\nx-test-small-buffers: 1\r\n\r\n"
    )
    await loop.sock_sendall(sock, head.encode() + data)
    status = await asyncio.wait_for(loop.sock_recv(sock, 12), 10)  # the run has started
    assert status == b"HTTP/1.1 200", status
    return sock


async def _read_to_end(sock):
    loop = asyncio.get_running_loop()
    chunks = []
    while chunk := await asyncio.wait_for(loop.sock_recv(sock, 1 << 16), 10):
        chunks.append(chunk)
    sock.close()
    return b"".join(chunks)


async def test_a_client_that_stops_reading_blocks_nothing_and_is_dropped(make_gateway):
    client = await make_gateway(
        slow_config(agui={"send_timeout": "300ms"}), plugins=[("small", SmallSendBuffers())]
    )
    gateway = client.server.app[GATEWAY]
    big = " ".join(f"word{i}" for i in range(60_000))  # megabytes of events
    stuck = await _stuck_client(client, "/agui/agents/blurter/runs", run_input(big, "big"))
    runs = client.server.app[GATEWAY].protocols["agui"].runs
    other = await client.post("/agui/agents/blurter/runs", json=run_input("still fine", "other"))
    assert text_of(checked(await other.read())) == "still fine"
    await wait_for(
        lambda: ("anonymous", "big") not in runs.active
    )  # the run itself went on to its end
    await wait_for(lambda: gateway.metrics.active_streams.value == 0)
    received = await _read_to_end(stuck)  # dropped: its stream has no end; it may resume instead
    assert b"RUN_FINISHED" not in received and not received.endswith(b"0\r\n\r\n")
    replay = await client.get("/agui/ws", params={"run_id": "big", "last_event_id": "59990"})
    tail = events_of(await replay.read(), first_id=59991)
    assert tail[-1]["type"] == "RUN_FINISHED"


async def test_cors_lets_configured_pages_call_the_agui_routes(make_gateway):
    cfg = slow_config(**KEYS, agui={"cors_origins": ["https://app.example"]})
    client = await make_gateway(cfg)
    page = {"Origin": "https://app.example"}
    preflight = await client.options(
        "/agui/agents/blurter/runs",
        headers={
            **page,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status == 204  # preflights carry no key
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert preflight.headers["Access-Control-Allow-Headers"] == "authorization, content-type"
    resp = await client.post(
        "/agui/agents/blurter/runs", json=run_input("hi", "cors"), headers={**page, **A}
    )
    assert resp.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "x-hookgate-run-id" in resp.headers["Access-Control-Expose-Headers"]
    assert text_of(checked(await resp.read())) == "hi"
    denied = await client.get("/agui/ws", params={"run_id": "cors"}, headers=page)
    assert denied.status == 401  # errors are readable by the page too
    assert denied.headers["Access-Control-Allow-Origin"] == "https://app.example"
    other = await client.options("/agui/runs", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
    openai_route = await client.post("/v1/chat/completions", json={}, headers={**page, **A})
    assert "Access-Control-Allow-Origin" not in openai_route.headers


async def test_sigterm_ends_runs_with_run_error_at_the_drain_deadline(upstream_process, tmp_path):
    head = '[server]\ndrain_timeout = "500ms"\n'
    config = agent_toml(tmp_path / "hookgate.toml", upstream_process, head)
    with gateway_process("serve", "--config", config) as gateway:
        async with aiohttp.ClientSession() as session:
            resp = await session.post(
                f"{gateway.url}/agui/agents/helper/runs", json=run_input("DRIP", "drain")
            )
            head = await frames(resp, 3)
            gateway.proc.send_signal(signal.SIGTERM)
            events = checked(head + await resp.read())
        await asyncio.to_thread(gateway.proc.wait, 30)  # before the block's own SIGTERM
    assert gateway.returncode == 0, gateway.output
    assert events[-1]["type"] == "RUN_ERROR" and events[-1]["code"] == "unavailable"
    assert "shutting down" in events[-1]["message"]
