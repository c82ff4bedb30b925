"""A forward HTTP proxy for tests, in a thread of its own: ``CONNECT`` tunnels (how a client
reaches an ``https://`` server through it) and absolute-form requests (``http://``, one a
connection), with Basic credentials when it is made with some. It keeps the request line of
each connection it was asked to make, and counts those it refused."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from support.threaded import ThreadedServer


class ForwardProxy(ThreadedServer):
    what = "the proxy"

    def __init__(self, user: str | None = None, password: str | None = None) -> None:
        super().__init__()
        self._expected = (
            None
            if user is None
            else "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        )
        #: ``CONNECT host:port`` or ``METHOD http://...`` of each connection asked for.
        self.asked: list[str] = []
        #: Connections refused for want of the right credentials.
        self.refused = 0

    def url(self, credentials: str = "") -> str:
        """The proxy's URL, with ``user:password`` when given."""
        return f"http://{credentials + '@' if credentials else ''}127.0.0.1:{self.port}"

    async def _start(self) -> Callable[[], Awaitable[None]]:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]

        async def stop() -> None:
            server.close()

        return stop

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: asyncio.StreamWriter | None = None
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name:
                    headers[name.strip().lower()] = value.strip()
            self.asked.append(f"{method} {target}")
            if self._expected is not None and headers.get("proxy-authorization") != self._expected:
                self.refused += 1
                writer.write(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                    b'proxy-authenticate: Basic realm="test"\r\n'
                    b"content-length: 0\r\nconnection: close\r\n\r\n"
                )
                await writer.drain()
                return
            if method == "CONNECT":
                host, _, port = target.rpartition(":")
                up_reader, upstream = await asyncio.open_connection(host, int(port))
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                # An absolute-form request, passed on asking the server to close the connection
                # after its answer: each request comes on a connection of its own, and is seen.
                url = urlsplit(target)
                up_reader, upstream = await asyncio.open_connection(url.hostname, url.port or 80)
                kept = [line for line in lines[:-2] if not line.lower().startswith("connection:")]
                upstream.write("\r\n".join([*kept, "Connection: close", "", ""]).encode("latin-1"))
            await asyncio.gather(_pipe(reader, upstream), _pipe(up_reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()
            if upstream is not None:
                upstream.close()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except ConnectionError:
        pass
    finally:
        sink.close()
