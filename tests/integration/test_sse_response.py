"""The one SSE writer every protocol uses: headers, keep-alive pings, the send timeout."""

from __future__ import annotations

import asyncio
import gc
import socket
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web

from gateway.streaming.sse import SendTimeout, SSEDecoder, SSEResponse

#: What the test handler saw: its response, and the exception that ended it (if any).
OUTCOME = web.AppKey("outcome", dict)
#: Set by a test once it has seen what it waits for; the handler then ends its stream.
GO_ON = web.AppKey("go_on", asyncio.Event)
FRAME = b"data: " + b"x" * 1000 + b"\n\n"


async def idle_then_end(request: web.Request) -> web.StreamResponse:
    """One frame, then nothing until the test says so, then one more frame."""
    resp = SSEResponse(0.05, {"x-extra": "1"}, ping=b"event: ping\ndata: {}\n\n")
    request.app[OUTCOME]["response"] = resp
    await resp.prepare(request)
    await resp.write(b"data: first\n\n")
    await request.app[GO_ON].wait()
    await resp.write_eof(b"data: last\n\n")
    return resp


async def flood(request: web.Request) -> web.StreamResponse:
    """``?frames=`` kilobyte frames into a tiny send buffer, with a send timeout of
    ``?timeout=`` seconds."""
    sock = request.transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    outcome = request.app[OUTCOME]
    resp = SSEResponse(15.0, send_timeout=float(request.query["timeout"]))
    outcome["response"] = resp
    try:
        await resp.prepare(request)
        for _ in range(int(request.query["frames"])):
            await resp.write(FRAME)
        await resp.write_eof()
    except BaseException as exc:
        outcome["raised"] = exc
        raise
    finally:
        resp.stop_pinging()
        request.app[GO_ON].set()
    return resp


def writer_app() -> web.Application:
    app = web.Application()
    app[OUTCOME] = {}
    app[GO_ON] = asyncio.Event()
    app.router.add_get("/idle", idle_then_end)
    app.router.add_get("/flood", flood)
    return app


@pytest.fixture(params=[True, False], ids=["handler-cancellation", "no-handler-cancellation"])
async def served(request: Any) -> AsyncIterator[tuple[web.Application, int]]:
    """The writer app on a real socket, with aiohttp's handler cancellation on (the gateway's
    setting: a handler is cancelled when its client goes) and off (aiohttp's default)."""
    app = writer_app()
    runner = web.AppRunner(app, handler_cancellation=request.param)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield app, port
    finally:
        await runner.cleanup()


async def raw_request(port: int, head: bytes, rcvbuf: int | None = None) -> socket.socket:
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    await loop.sock_sendall(sock, head)
    return sock


async def read_until(
    sock: socket.socket, marker: bytes, count: int = 1, pace: float | None = None
) -> bytes:
    """What ``sock`` receives until ``marker`` came ``count`` times, or the stream ended (a
    reset counts as an end). With ``pace``, a slow reader: 4 KiB at most, every ``pace``
    seconds."""
    loop = asyncio.get_running_loop()
    chunks: list[bytes] = []
    seen, tail = 0, b""
    while seen < count:
        if pace is not None:
            await asyncio.sleep(pace)
        try:
            chunk = await asyncio.wait_for(
                loop.sock_recv(sock, 4096 if pace is not None else 1 << 16), 10
            )
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
        window = tail + chunk
        seen += window.count(marker)
        tail = window[len(window) - len(marker) + 1 :]
    return b"".join(chunks)


async def test_headers_and_protocol_pings_on_an_idle_stream(served):
    app, port = served
    sock = await raw_request(port, b"GET /idle HTTP/1.1\r\nHost: t\r\n\r\n")
    data = await read_until(sock, b"event: ping\ndata: {}\n\n", 2)
    app[GO_ON].set()
    data += await read_until(sock, b"\r\n0\r\n\r\n")
    sock.close()
    head = data.split(b"\r\n\r\n")[0].lower()
    assert b"content-type: text/event-stream" in head and b"cache-control: no-cache" in head
    assert b"x-accel-buffering: no" in head and b"x-extra: 1" in head
    assert b"transfer-encoding: chunked" in head
    assert data.endswith(b"data: last\n\n\r\n0\r\n\r\n")


async def test_an_idle_stream_that_pinged_holds_no_task(served):
    """A ping's task is let go once it is sent: an idle stream holds none in between (with its
    coroutine and its entry in asyncio's set of tasks, about 1 KB each)."""
    app, port = served
    sock = await raw_request(port, b"GET /idle HTTP/1.1\r\nHost: t\r\n\r\n")
    await read_until(sock, b"event: ping\ndata: {}\n\n", 2)
    resp = app[OUTCOME]["response"]
    held = [r for r in gc.get_referents(resp) if isinstance(r, asyncio.Task)]
    app[GO_ON].set()
    await read_until(sock, b"\r\n0\r\n\r\n")
    sock.close()
    assert held == []


async def test_pings_are_whole_frames_between_the_callers_frames(aiohttp_client):
    app = writer_app()
    client = await aiohttp_client(app)
    resp = await client.get("/idle")
    assert resp.headers["content-type"] == "text/event-stream"
    decoder = SSEDecoder()
    seen: list[tuple[str | None, str]] = []
    while sum(event == "ping" for event, _ in seen) < 2:
        seen += [(f.event, f.data) for f in decoder.feed(await resp.content.readany())]
    app[GO_ON].set()
    seen += [(f.event, f.data) for f in decoder.feed(await resp.read())]
    assert seen[0] == (None, "first") and seen[-1] == (None, "last")
    assert set(seen[1:-1]) == {("ping", "{}")}


async def test_http_1_0_clients_get_the_stream_unchunked(served):
    app, port = served
    app[GO_ON].set()
    sock = await raw_request(port, b"GET /idle HTTP/1.0\r\n\r\n")
    data = await read_until(sock, b"never sent")  # to the end: the server closes
    sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200") and b"chunked" not in head.lower()
    assert body == b"data: first\n\ndata: last\n\n"


async def test_a_client_that_reads_nothing_is_cut_after_the_send_timeout(served):
    app, port = served
    head = b"GET /flood?frames=1000&timeout=0.3 HTTP/1.1\r\nHost: t\r\n\r\n"
    stuck = await raw_request(port, head, rcvbuf=4096)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(app[GO_ON].wait(), 10)
    waited = loop.time() - started
    outcome = app[OUTCOME]
    assert outcome["response"].timed_out
    # with handler cancellation the handler is cancelled as the connection drops; without, the
    # stuck write itself raises
    assert isinstance(outcome["raised"], SendTimeout | asyncio.CancelledError)
    assert 0.3 <= waited < 5
    received = await read_until(stuck, b"never sent")
    stuck.close()
    assert FRAME in received and not received.endswith(b"\r\n0\r\n\r\n")  # no end: cut


async def test_a_client_that_keeps_reading_is_never_cut(served):
    app, port = served
    # 2.5 MB read 4 KiB at a time with a pause before each read: over 0.6 s of writes that
    # wait on the client, none of them for long
    head = b"GET /flood?frames=2500&timeout=0.5 HTTP/1.1\r\nHost: t\r\n\r\n"
    sock = await raw_request(port, head, rcvbuf=4096)
    data = await read_until(sock, b"\r\n0\r\n\r\n", pace=0.001)
    sock.close()
    assert data.count(FRAME) == 2500 and data.endswith(b"\r\n0\r\n\r\n")
    assert "raised" not in app[OUTCOME] and not app[OUTCOME]["response"].timed_out


async def test_agui_and_a2a_streams_use_it(make_gateway):
    """AG-UI and A2A runs stream through the same writer: its headers, their ping interval."""
    client = await make_gateway(
        {
            "backends": {"slow": {"kind": "echo", "delay": "150ms"}},
            "models": {"slow": {"backend": "slow"}},
            "agents": {"talker": {"model": "slow"}},
            "agui": {"ping_interval": "30ms"},
            "a2a": {"ping_interval": "30ms"},
        }
    )
    run = {
        "threadId": "t",
        "runId": "r",
        "messages": [{"id": "m", "role": "user", "content": "a b c"}],
    }
    agui = await client.post("/agui/agents/talker/runs", json=run)
    message = {"kind": "message", "messageId": "m", "role": "user", "parts": [{"text": "a b"}]}
    a2a = await client.post(
        "/a2a/talker",
        json={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "message/stream",
            "params": {"message": message},
        },
    )
    for resp, frame_id in ((agui, "1"), (a2a, None)):
        assert resp.headers["content-type"] == "text/event-stream"
        assert resp.headers["cache-control"] == "no-cache"
        assert resp.headers["x-accel-buffering"] == "no"
        body = await resp.read()
        assert b": ping\n\n" in body
        frames = SSEDecoder().feed(body)
        assert frames[0].id == frame_id  # AG-UI numbers its events for Last-Event-ID
        assert all(orjson.loads(f.data) for f in frames)
