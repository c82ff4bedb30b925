"""The server's connections answer byte for byte as aiohttp's own do.

The same application is served by aiohttp's ``AppRunner`` and by the gateway's
(:mod:`gateway.server.http`), and the same raw HTTP/1.1 exchanges (pipelined, keep-alive and
closing, HEAD, HTTP/1.0, ``Expect: 100-continue``) must get the same bytes back from both,
``Date`` aside: plain answers take the gateway's shorter path, every other kind aiohttp's. Streams
are the gateway's :class:`~gateway.streaming.sse.SSEResponse` (its head, writes and end made
without aiohttp's coroutines) against aiohttp's own response with the same headers.
"""

from __future__ import annotations

import asyncio
import re
import warnings
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from gateway.core.dispatch import Dispatcher
from gateway.server.http import Connection, Runner, Server
from gateway.streaming.sse import SSEResponse


async def json_body(request: web.Request) -> web.Response:
    return web.Response(body=b'{"a":1}', content_type="application/json")


async def text(request: web.Request) -> web.Response:
    return web.Response(text="hello")


async def empty(request: web.Request) -> web.Response:
    return web.Response()


async def made(request: web.Request) -> web.Response:
    return web.Response(status=201, reason="Made", body=b"x")


async def headers(request: web.Request) -> web.Response:
    return web.Response(body=b"a,b", headers={"X-A": "1", "Content-Type": "text/csv"})


async def length_set(request: web.Request) -> web.Response:
    return web.Response(body=b"abc", headers={"Content-Length": "3"})


async def closing(request: web.Request) -> web.Response:
    resp = web.Response(body=b"bye")
    resp.force_close()
    return resp


async def keep_alive_header(request: web.Request) -> web.Response:
    return web.Response(body=b"x", headers={"Connection": "keep-alive"})


async def no_content(request: web.Request) -> web.Response:
    return web.Response(status=204)


async def not_modified(request: web.Request) -> web.Response:
    return web.Response(status=304)


async def cookie(request: web.Request) -> web.Response:
    resp = web.Response(body=b"x")
    resp.set_cookie("a", "b")
    return resp


async def bytearray_body(request: web.Request) -> web.Response:
    return web.Response(body=bytearray(b"x"))


async def payload_body(request: web.Request) -> web.Response:
    return web.Response(body="a str is a payload")


async def stream(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse()
    await resp.prepare(request)
    await resp.write(b"one")
    await resp.write(b"two")
    await resp.write_eof()
    return resp


class _Held(web.StreamResponse):
    """aiohttp's own response, its head held for the first write (as ``hold_head`` holds it)."""

    _send_headers_immediately = False


SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


def sse(writes: list[bytes], last: bytes, *, hold: bool, head: bool = False) -> Any:
    """A stream handler: the gateway's :class:`SSEResponse` where the gateway's connections
    serve, aiohttp's :class:`web.StreamResponse` with the same headers where aiohttp's do (so
    the bytes of its shorter head, writes and end are compared with aiohttp's own)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        resp: web.StreamResponse
        if type(request.protocol) is Connection:
            resp = SSEResponse(60.0, hold_head=hold)
        else:
            resp = (_Held if hold else web.StreamResponse)(headers=SSE_HEADERS)
        if request.query.get("status"):
            resp.set_status(201, "Made")
        await resp.prepare(request)
        if head:
            if isinstance(resp, SSEResponse):
                resp.send_head()
            else:
                assert resp._payload_writer is not None
                resp._payload_writer.send_headers()
        for data in writes:
            await resp.write(data)
        await resp.write_eof(last)
        return resp

    return handler


async def missing(request: web.Request) -> web.Response:
    raise web.HTTPNotFound()


async def failing(request: web.Request) -> web.Response:
    raise RuntimeError("boom")


async def echo(request: web.Request) -> web.Response:
    return web.Response(body=await request.read())


async def unread(request: web.Request) -> web.Response:
    return web.Response(body=b"not read")


async def described(request: web.Request) -> web.Response:
    """What the request says of itself (the gateway's requests hold it in slots)."""
    body = await request.read()
    clone = request.clone(method="PUT", rel_url="/cloned?q=1", headers={"X-B": "2"})
    return web.Response(
        text=repr(
            (
                request.method,
                request.version,
                request.raw_path,
                request.path,
                request.keep_alive,
                sorted(request.headers.items()),
                request.content.at_eof(),
                body,
                (clone.method, clone.raw_path, clone.path, sorted(clone.headers.items())),
                request.clone(scheme="https", host="example.com", remote="10.0.0.1").url,
            )
        )
    )


ORDER = web.RequestKey("order", list[str])


async def order(request: web.Request) -> web.Response:
    """What ran before the handler, and whether the current application is the request's."""
    current = request.match_info.current_app
    seen = [*request.get(ORDER, []), f"current={'root' if current is request.app else 'sub'}"]
    return web.Response(text=",".join(seen))


def middleware(name: str) -> Any:
    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        request[ORDER] = [*request.get(ORDER, []), name]
        resp = await handler(request)
        if not resp.prepared:  # a stream's head is out (the gateway's refuses changes then)
            resp.headers["X-After-" + name] = "1"
        return resp

    return record


async def stamp(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["X-Stamp"] = request.path
    if request.path.startswith("/stamp-close"):
        response.force_close()
        response.headers["Connection"] = "close"


def app(router: web.UrlDispatcher | None = None) -> web.Application:
    with warnings.catch_warnings():  # aiohttp deprecates passing a router
        warnings.simplefilter("ignore", DeprecationWarning)
        app = web.Application(middlewares=[middleware("outer"), middleware("inner")], router=router)
    for path, handler in {
        "/json": json_body,
        "/text": text,
        "/empty": empty,
        "/made": made,
        "/headers": headers,
        "/length": length_set,
        "/closing": closing,
        "/keep-alive": keep_alive_header,
        "/no-content": no_content,
        "/not-modified": not_modified,
        "/cookie": cookie,
        "/bytearray": bytearray_body,
        "/payload": payload_body,
        "/stream": stream,
        "/missing": missing,
        "/failing": failing,
        "/stamp-close": json_body,
        "/described": described,
        "/sse": sse([b"data: 1\n\n", b"data: 2\n\n"], b"data: 3\n\n", hold=True),
        "/sse-now": sse([b"data: 1\n\n"], b"", hold=False),
        "/sse-end-only": sse([], b"data: all\n\n", hold=True),
        "/sse-empty": sse([], b"", hold=True),
        "/sse-headed": sse([], b"data: late\n\n", hold=True, head=True),
        "/sse-big": sse([b"data: " + b"x" * 70_000 + b"\n\n"] * 2, b"", hold=True),
        "/stamp-close-sse": sse([b"data: 1\n\n"], b"data: 2\n\n", hold=True),
    }.items():
        app.router.add_route("*", path, handler)
    app.router.add_get("/order", order)
    app.router.add_get("/order/{name}", order)
    sub = web.Application(middlewares=[middleware("sub")])
    sub.router.add_get("/order", order)
    app.add_subapp("/sub", sub)
    app.router.add_post("/echo", echo)
    app.router.add_post("/unread", unread)
    app.on_response_prepare.append(stamp)
    return app


@pytest.fixture(params=["aiohttp's router", "the gateway's router"])
async def ports(request: pytest.FixtureRequest) -> AsyncIterator[tuple[int, int]]:
    """Ports of the application served by aiohttp's runner and by the gateway's, routed by
    aiohttp's router or by the gateway's (whose plain routes the gateway's connections find
    themselves)."""

    def made() -> web.Application:
        return app(Dispatcher() if request.param == "the gateway's router" else None)

    runners = [web.AppRunner(made(), handle_signals=False), Runner(made(), handle_signals=False)]
    found = []
    for runner in runners:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        assert runner.server is not None
        found.append(runner.addresses[0][1])
    assert type(runners[1].server) is Server
    yield found[0], found[1]
    for runner in runners:
        await runner.cleanup()


async def exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` at once and read until the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    try:
        async with asyncio.timeout(10):
            return await reader.read(-1)
    finally:
        writer.close()


def masked(data: bytes) -> bytes:
    return re.sub(rb"(?im)^date: [^\r]*\r$", b"Date: -\r", data)


def get(path: str, *, method: str = "GET", version: str = "1.1", extra: str = "") -> bytes:
    return f"{method} {path} HTTP/{version}\r\nHost: x\r\n{extra}\r\n".encode()


CLOSE = get("/json", extra="Connection: close\r\n")
PATHS = [
    "/json",
    "/text",
    "/empty",
    "/made",
    "/headers",
    "/length",
    "/keep-alive",
    "/no-content",
    "/not-modified",
    "/cookie",
    "/bytearray",
    "/payload",
    "/stream",
    "/missing",
    "/nowhere",
    "/order",
    "/order/dynamic",
    "/sub/order",
    "/sub/nowhere",
    "/described",
    "/described?a=1",
    "/sse",
    "/sse?status=1",
    "/sse-now",
    "/sse-end-only",
    "/sse-empty",
    "/sse-headed",
    "/sse-big",
]
CASES = {
    # Each path's answer on a kept-alive connection, then a closing request.
    **{f"get {path}": get(path) + CLOSE for path in PATHS},
    **{f"head {path}": get(path, method="HEAD") + CLOSE for path in PATHS},
    "pipelined": b"".join(get(path) for path in PATHS) + CLOSE,
    "closing answer": get("/closing") + CLOSE,
    "closed by a receiver": get("/stamp-close") + CLOSE,
    "stream closed by a receiver": get("/stamp-close-sse") + CLOSE,
    "stream over http/1.0": get("/sse", version="1.0"),
    "stream, connection: close": get("/sse", extra="Connection: close\r\n"),
    "connection: close": CLOSE,
    "http/1.0": get("/json", version="1.0"),
    "http/1.0 keep-alive": get("/json", version="1.0", extra="Connection: keep-alive\r\n") + CLOSE,
    "failing handler": get("/failing") + CLOSE,
    "post with a body": (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" + CLOSE
    ),
    "chunked request body": (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n" + CLOSE
    ),
    "expect 100-continue": (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok"
        + CLOSE
    ),
    "described post": (
        b"POST /described HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nContent-Length: 2\r\n\r\nok" + CLOSE
    ),
    "described http/1.0": get("/described", version="1.0"),
    "unread body": (b"POST /unread HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nabcd" + CLOSE),
    "malformed": b"NOT HTTP AT ALL\r\n\r\n",
}


@pytest.mark.parametrize("case", list(CASES))
async def test_answers_as_aiohttp(ports: tuple[int, int], case: str) -> None:
    theirs, ours = ports
    want = masked(await exchange(theirs, CASES[case]))
    got = masked(await exchange(ours, CASES[case]))
    assert want.startswith(b"HTTP/1.")
    assert got == want
