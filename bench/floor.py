"""The floor under a Python hop, for the benchmark's ``--floor``: a relay that does nothing but
pass chat completions (whole or streamed) from the client to the upstream and back, through
hookgate's own upstream client (``gateway.backends.lean_client``), on one of two servers:

- ``raw``: a protocol on uvloop and httptools, answering with the bytes it writes itself;
- ``aiohttp``: an aiohttp application with one route, as hookgate's own server is.

hookgate minus the ``aiohttp`` floor is what the gateway's own work costs; the ``aiohttp``
floor minus the ``raw`` one is what aiohttp's server costs. A measuring stick, not a server: no
flow control, no pipelining, no checks of what it relays.

``python bench/floor.py --server raw|aiohttp --port N --upstream http://127.0.0.1:M``
"""

from __future__ import annotations

import argparse
import asyncio
from urllib.parse import urlsplit

import httptools
import uvloop
from aiohttp import web

from gateway.backends.lean_client import HTTP1Pool

_HEADERS = [("authorization", "Bearer bench"), ("content-type", "application/json")]


def _is_stream(body: bytes) -> bool:
    """Whether the client asked for a stream (the benchmark's bodies are compact JSON): the
    floor reads nothing of the upstream's answer but its status and body."""
    return b'"stream":true' in body


class RawRelay(asyncio.Protocol):
    """One client connection of the ``raw`` server."""

    def __init__(self, pool: HTTP1Pool) -> None:
        self.pool = pool
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body: list[bytes] = []
        self.task: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method().decode()
        url, body = self.url.decode(), b"".join(self.body)
        self.url, self.body = b"", []
        if url == "/health":
            self._send(200, b"text/plain", b"ok")
            return
        # One request at a time on a connection (no pipelining): its task kept here.
        self.task = asyncio.ensure_future(self.relay(method, url, body))

    def _send(self, status: int, kind: bytes, body: bytes) -> None:
        assert self.transport is not None
        self.transport.write(
            b"HTTP/1.1 %d OK\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n%s"
            % (status, kind, len(body), body)
        )

    async def relay(self, method: str, url: str, body: bytes) -> None:
        transport = self.transport
        assert transport is not None
        try:
            resp = await self.pool.request(method, url, body)
        except Exception:
            self._send(502, b"text/plain", b"upstream failed")
            return
        try:
            if not _is_stream(body):
                self._send(resp.status, b"application/json", await resp.read())
                return
            transport.write(
                b"HTTP/1.1 %d OK\r\ncontent-type: text/event-stream\r\n"
                b"transfer-encoding: chunked\r\n\r\n" % resp.status
            )
            async for chunk in resp.iter_any():
                transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            transport.write(b"0\r\n\r\n")
        finally:
            resp.close()


async def _raw(port: int, upstream: tuple[str, int]) -> None:
    loop = asyncio.get_running_loop()
    pool = HTTP1Pool(*upstream, headers=_HEADERS)
    server = await loop.create_server(lambda: RawRelay(pool), "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


def _aiohttp(port: int, upstream: tuple[str, int]) -> None:
    pools: list[HTTP1Pool] = []

    async def relay(request: web.Request) -> web.StreamResponse:
        if not pools:
            pools.append(HTTP1Pool(*upstream, headers=_HEADERS))
        body = await request.read()
        resp = await pools[0].request(request.method, request.path_qs, body)
        try:
            if not _is_stream(body):
                return web.Response(
                    status=resp.status, body=await resp.read(), content_type="application/json"
                )
            out = web.StreamResponse(status=resp.status)
            out.content_type = "text/event-stream"
            await out.prepare(request)
            async for chunk in resp.iter_any():
                await out.write(chunk)
            await out.write_eof()
            return out
        finally:
            resp.close()

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_post("/v1/chat/completions", relay)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", choices=("raw", "aiohttp"), required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the mock's http://host:port")
    args = parser.parse_args()
    parts = urlsplit(args.upstream)
    upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
    uvloop.install()
    if args.server == "raw":
        asyncio.run(_raw(args.port, upstream))
    else:
        _aiohttp(args.port, upstream)


if __name__ == "__main__":
    main()
