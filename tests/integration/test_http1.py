"""The lean HTTP/1.1 client against scripted raw TCP servers: framing, reuse, closes, timeouts."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from gateway.backends.http import HTTPBackendConfig
from gateway.backends.lean_client import BadResponse, ConnectError, HTTP1Pool
from gateway.backends.upstream import Upstream
from gateway.errors import RateLimited, UpstreamError, UpstreamTimeout
from gateway.exchange import UNKNOWN_ROUTE, Exchange

Script = Callable[["Conn"], Awaitable[None]]


class Conn:
    """One accepted connection of the scripted server, with request-reading helpers."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Raw):
        self.reader = reader
        self.writer = writer
        self.server = server

    async def request(self) -> bytes | None:
        """Read one request (head and content-length body); None when the client closed."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        body = await self.reader.readexactly(length)
        self.server.requests.append(head + body)
        return head + body

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    def close(self) -> None:
        self.writer.close()


class Raw:
    """A TCP server whose every connection runs ``script``."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.closed = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> Raw:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await self.script(Conn(reader, writer, self))
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                self.closed += 1
                writer.close()

        self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self.server is not None
        self.server.close()


def ok(body: bytes = b'{"ok":true}', extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%s\r\n%s" % (len(body), extra, body)


async def serve_forever(conn: Conn) -> None:
    while await conn.request() is not None:
        await conn.send(ok())


async def until(cond: Callable[[], bool], within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def pool_for(server: Raw, **kwargs: Any) -> HTTP1Pool:
    return HTTP1Pool("127.0.0.1", server.port, headers=[("user-agent", "test")], **kwargs)


async def test_content_length_answers_reuse_one_connection():
    async with Raw(serve_forever) as server:
        pool = pool_for(server)
        for _ in range(3):
            resp = await pool.request("POST", "/v1/x", b'{"a":1}', headers=b"x-request-id: r1\r\n")
            assert resp.status == 200 and await resp.read() == b'{"ok":true}'
            resp.close()
        assert server.connections == 1 and pool.idle == 1
        head = server.requests[0].split(b"\r\n\r\n")[0].lower()
        assert head.startswith(b"post /v1/x http/1.1")
        assert b"host: 127.0.0.1:%d" % server.port in head
        assert b"x-request-id: r1" in head and b"content-length: 7" in head
        assert server.requests[0].endswith(b'{"a":1}')
        await pool.close()


async def test_a_request_replaces_the_default_headers_it_names():
    async with Raw(serve_forever) as server:
        pool = HTTP1Pool(
            "127.0.0.1", server.port, headers=[("User-Agent", "test"), ("authorization", "a")]
        )
        for headers, replaces in ((b"Authorization: b\r\n", {"authorization"}), (b"", ())):
            resp = await pool.request("POST", "/", b"{}", headers=headers, replaces=replaces)
            assert resp.status == 200
            resp.close()
        replaced, default = (r.split(b"\r\n\r\n")[0].split(b"\r\n")[1:] for r in server.requests)
        host = b"host: 127.0.0.1:%d" % server.port
        assert replaced == [host, b"User-Agent: test", b"Authorization: b", b"content-length: 2"]
        assert default == [host, b"User-Agent: test", b"authorization: a", b"content-length: 2"]
        await pool.close()


async def test_chunked_body_arrives_piece_by_piece_and_frees_the_connection():
    release = asyncio.Event()

    async def script(conn: Conn) -> None:
        while await conn.request() is not None:
            await conn.send(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
            await release.wait()
            await conn.send(b"1;ext=1\r\n \r\n5\r\nworld\r\n0\r\n\r\n")

    async with Raw(script) as server:
        pool = pool_for(server)
        resp = await pool.request("POST", "/", b"{}")
        assert await resp.content.readany() == b"hello"
        assert pool.idle == 0
        release.set()
        assert await resp.read() == b" world"
        assert await resp.readany() == b"" and resp.at_eof()
        assert pool.idle == 1  # freed as soon as the body ended, before close()
        resp.close()
        again = await pool.request("POST", "/", b"{}")
        assert await again.read() == b"hello world"
        assert server.connections == 1
        await pool.close()


async def test_a_streamed_answers_headers_come_back_in_order_repeated_ones_too():
    async def script(conn: Conn) -> None:
        await conn.request()
        await conn.send(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nx-ratelimit-remaining: 9\r\n"
            b"set-cookie: a=1\r\nSet-Cookie: b=2\r\nx-empty:\r\ntransfer-encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n"
        )
        await asyncio.sleep(30)

    async with Raw(script) as server:
        pool = pool_for(server)
        resp = await pool.request("POST", "/", b"{}")
        assert await resp.readany() == b"hello"
        assert resp.raw_headers == [
            (b"content-type", b"text/event-stream"),
            (b"x-ratelimit-remaining", b"9"),
            (b"set-cookie", b"a=1"),
            (b"Set-Cookie", b"b=2"),
            (b"x-empty", b""),
            (b"transfer-encoding", b"chunked"),
        ]
        assert resp.headers.getall("set-cookie") == ["a=1", "b=2"]
        assert resp.headers["X-Empty"] == "" and resp.headers["x-ratelimit-remaining"] == "9"
        resp.close()
        await pool.close()


async def test_body_delimited_by_close_is_read_whole_and_not_reused():
    async def script(conn: Conn) -> None:
        await conn.request()
        await conn.send(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\npart one, ")
        await conn.send(b"part two")
        conn.close()

    async with Raw(script) as server:
        pool = pool_for(server)
        for _ in range(2):
            resp = await pool.request("GET", "/", b"")
            assert await resp.read() == b"part one, part two"
            resp.close()
        assert server.connections == 2
        await pool.close()


async def test_informational_answer_is_skipped():
    async def script(conn: Conn) -> None:
        await conn.request()
        await conn.send(b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n" + ok(b"done"))

    async with Raw(script) as server:
        pool = pool_for(server)
        resp = await pool.request("POST", "/", b"{}")
        assert resp.status == 200 and "link" not in resp.headers
        assert await resp.read() == b"done"
        await pool.close()


async def test_a_request_the_upstream_read_is_never_sent_again():
    """A reused connection that closes after the upstream read the request: it may be
    generating (and charging for) the answer, so the request fails rather than going twice."""

    async def script(conn: Conn) -> None:
        await conn.request()
        await conn.send(ok(b"first"))
        await conn.request()  # read in full, then the connection closes unanswered
        conn.writer.transport.abort()

    async with Raw(script) as server:
        pool = pool_for(server)
        assert await (await pool.request("POST", "/", b"{}")).read() == b"first"
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await pool.request("POST", "/", b"{}")
        assert len(server.requests) == 2 and server.connections == 1
        await pool.close()


async def test_an_idle_connection_found_closed_is_passed_over_unwritten():
    """A pooled connection the upstream closed while idle is never written to: the request
    goes on a new connection, once."""

    async def script(conn: Conn) -> None:
        await conn.request()
        await conn.send(ok(b"first"))
        if server.connections == 1:
            conn.close()  # the upstream's keep-alive expiry

    async with Raw(script) as server:
        pool = pool_for(server)
        assert await (await pool.request("POST", "/", b"{}")).read() == b"first"
        await until(lambda: pool.idle == 0)
        resp = await pool.request("POST", "/", b"{}")
        assert await resp.read() == b"first"
        assert len(server.requests) == 2 and server.connections == 2
        await pool.close()


async def test_a_fresh_connection_that_closes_unanswered_is_not_retried():
    async def script(conn: Conn) -> None:
        await conn.request()
        conn.close()

    async with Raw(script) as server:
        pool = pool_for(server)
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await pool.request("POST", "/", b"{}")
        assert len(server.requests) == 1 and server.connections == 1
        await pool.close()


async def test_idle_connections_past_idle_timeout_are_not_reused():
    async with Raw(serve_forever) as server:
        pool = pool_for(server, idle_timeout=0.0)
        for _ in range(2):
            await (await pool.request("POST", "/", b"{}")).read()
            await asyncio.sleep(0.01)  # idle time passing is the behaviour under test
        assert server.connections == 2
        await until(lambda: server.closed == 1)  # the expired one was closed
        await pool.close()


async def test_body_cut_mid_way_raises_after_what_arrived():
    async def script(conn: Conn) -> None:
        await conn.request()
        await conn.send(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b")
        conn.writer.transport.abort()

    async with Raw(script) as server:
        pool = pool_for(server)
        resp = await pool.request("POST", "/", b"{}")
        assert await resp.readany() == b"only ten b"
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.readany()
        assert pool.connections == 0
        await pool.close()


async def test_error_status_is_a_response_with_its_body():
    async def script(conn: Conn) -> None:
        while await conn.request() is not None:
            body = b'{"error":{"message":"slow down"}}'
            await conn.send(
                b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 7\r\ncontent-length: %d\r\n\r\n%s"
                % (len(body), body)
            )

    async with Raw(script) as server:
        pool = pool_for(server)
        resp = await pool.request("POST", "/", b"{}")
        assert resp.status == 429 and resp.headers["Retry-After"] == "7"
        assert b"slow down" in await resp.read()
        assert pool.idle == 1  # an error answer still frees its connection
        await pool.close()


async def test_read_timeout_and_deadline():
    async def script(conn: Conn) -> None:
        await conn.request()
        await conn.send(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
        await asyncio.sleep(30)

    async with Raw(script) as server:
        pool = pool_for(server)
        resp = await pool.request("POST", "/", b"{}", read_timeout=0.2)
        assert await resp.readany() == b"abc"
        with pytest.raises(TimeoutError):
            await resp.readany()
        resp.close()
        loop = asyncio.get_running_loop()
        resp = await pool.request("POST", "/", b"{}", deadline=loop.time() + 0.2)
        with pytest.raises(TimeoutError):
            await resp.read()
        resp.close()
        assert pool.connections == 0  # unfinished answers closed their connections
        await pool.close()


async def test_a_body_longer_than_the_read_timeout_but_never_silent_for_it_is_read_whole():
    """Each read's wait is bounded by the read timeout, not the whole body: a look left by an
    earlier read comes while the body still flows and fails nothing; a silence then does."""

    async def script(conn: Conn) -> None:
        await conn.request()
        await conn.send(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for _ in range(20):  # a second in all, never silent for the timeout
            await conn.send(b"4\r\ntick\r\n")
            await asyncio.sleep(0.05)
        await asyncio.sleep(30)

    async with Raw(script) as server:
        pool = pool_for(server)
        resp = await pool.request("POST", "/", b"{}", read_timeout=0.5)
        got = b""
        with pytest.raises(TimeoutError):
            while True:
                got += await resp.readany()
        assert got == b"tick" * 20
        resp.close()
        await pool.close()


async def test_cancelled_reader_drops_the_connection_and_upstream_sees_it():
    async def script(conn: Conn) -> None:
        await conn.request()
        await conn.send(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        while True:
            await conn.send(b"4\r\ntick\r\n")
            await asyncio.sleep(0.02)

    async with Raw(script) as server:
        pool = pool_for(server)
        reading = asyncio.Event()

        async def consume() -> None:
            resp = await pool.request("POST", "/", b"{}")
            try:
                while await resp.readany():
                    reading.set()
            finally:
                resp.close()

        task = asyncio.ensure_future(consume())
        await asyncio.wait_for(reading.wait(), 10)  # the body is being read
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await until(lambda: server.closed == 1)
        assert pool.connections == 0
        await pool.close()


async def test_pool_limit_makes_callers_wait_their_turn():
    async with Raw(serve_forever) as server:
        pool = pool_for(server, limit=1)

        async def one() -> bytes:
            resp = await pool.request("POST", "/", b"{}")
            return await resp.read()

        assert await asyncio.gather(*(one() for _ in range(5))) == [b'{"ok":true}'] * 5
        assert server.connections == 1
        await pool.close()


async def test_refused_connection_and_malformed_answer():
    async with Raw(serve_forever) as server:
        port = server.port
    with pytest.raises(ConnectError):
        await HTTP1Pool("127.0.0.1", port).request("POST", "/", b"{}")

    async def garbage(conn: Conn) -> None:
        await conn.request()
        await conn.send(b"HTTP/1.1 abc nonsense\r\n\r\n")

    async with Raw(garbage) as server:
        pool = pool_for(server)
        with pytest.raises(BadResponse):
            await pool.request("POST", "/", b"{}")
        await pool.close()


# --- through Upstream: errors mapped for the client -----------------------------------------


def _upstream(port: int, **cfg: Any) -> Upstream:
    config = HTTPBackendConfig(kind="openai", base_url=f"http://127.0.0.1:{port}/v1", **cfg)
    return Upstream("up", config, {"authorization": "Bearer secret"})


async def test_upstream_maps_lean_client_failures():
    async def script(conn: Conn) -> None:
        while (req := await conn.request()) is not None:
            await answer(conn, req)

    async def answer(conn: Conn, req: bytes) -> None:
        if b'"status"' in req:
            body = b'{"error":{"message":"slow down"}}'
            await conn.send(
                b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 3\r\ncontent-length: %d\r\n\r\n%s"
                % (len(body), body)
            )
        elif b'"hang"' in req:
            await asyncio.sleep(30)
        else:
            await conn.send(ok())

    async with Raw(script) as server:
        up = _upstream(server.port, first_byte_timeout=0.2, read_timeout=0.2)
        await up.start()
        ex = Exchange("rid-1", UNKNOWN_ROUTE)
        assert await up.post("/chat", b"{}", ex) == b'{"ok":true}'
        assert b"post /v1/chat http/1.1" in server.requests[0].lower()
        assert b"authorization: bearer secret" in server.requests[0].lower()
        assert ex.upstream_seconds > 0
        with pytest.raises(RateLimited) as info:
            await up.post("/chat", b'{"status":1}', ex)
        assert "status 429" in info.value.message and info.value.retry_after == 3
        with pytest.raises(UpstreamTimeout):
            await up.post("/chat", b'{"hang":1}', ex)
        with pytest.raises(RateLimited):
            async with up.stream("/chat", b'{"status":1}', ex):
                pass
        await up.close()
    up = _upstream(server.port)
    await up.start()
    with pytest.raises(UpstreamError, match="unreachable"):
        await up.post("/chat", b"{}", Exchange("rid-2", UNKNOWN_ROUTE))
    await up.close()
