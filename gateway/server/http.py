"""The HTTP/1.1 server under the application: aiohttp's, with a shorter way out for plain answers.

aiohttp's :class:`~aiohttp.web.RequestHandler` (one per connection) parses requests, runs the
application and sends what it returns through the response's generic ``prepare()`` and
``write_eof()``: half a dozen coroutines that handle cookies, compression, chunking, bodies
that are files, and every combination of method and status. Most answers the gateway sends are
none of that: a :class:`~aiohttp.web.Response` whose body is bytes, to an HTTP/1.1 request that
is not ``HEAD``, with a status that has a body. :class:`Connection` sends those itself, with the
same headers in the same order aiohttp would write (``Content-Length``, ``Content-Type`` when
missing, ``Date``, ``Server``, ``Connection: close`` when the connection closes after it), the
application's ``on_response_prepare`` receivers run at the same point, and the same writer
sends it (headers and body in one write). Anything else (streams, ``HEAD``, 204/304, HTTP/1.0,
cookies, compression, a ``Content-Length`` or ``Transfer-Encoding`` the handler set, a
response subclass such as an ``HTTPException``) goes through aiohttp's own path.

:func:`request_handler` is the application's ``_handle`` (route, middlewares, handler) with
less done per request for a route of the application itself, and :class:`Runner` is
:class:`~aiohttp.web.AppRunner` serving its application with both.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial, update_wrapper
from typing import TYPE_CHECKING, Any, cast

from aiohttp import hdrs, web
from aiohttp.helpers import EMPTY_BODY_STATUS_CODES, rfc822_formatted_time
from aiohttp.http import SERVER_SOFTWARE, HttpVersion11
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_urldispatcher import UrlMappingMatchInfo

if TYPE_CHECKING:
    from aiohttp.abc import AbstractStreamWriter
    from aiohttp.http_parser import RawRequestMessage
    from aiohttp.streams import StreamReader
    from aiohttp.web_request import BaseRequest

_CONTENT_LENGTH, _CONTENT_TYPE, _TRANSFER_ENCODING = (
    hdrs.CONTENT_LENGTH,
    hdrs.CONTENT_TYPE,
    hdrs.TRANSFER_ENCODING,
)
_DATE, _SERVER, _CONNECTION = hdrs.DATE, hdrs.SERVER, hdrs.CONNECTION
#: Methods whose answers aiohttp shapes otherwise: no body (HEAD), a tunnel (CONNECT).
_OTHER_METHODS = frozenset((hdrs.METH_HEAD, hdrs.METH_CONNECT))
_Response, _Request = web.Response, web.Request


class Connection(RequestHandler):
    """One client connection: see the module's description."""

    __slots__ = ()

    async def finish_response(
        self, request: BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        if (
            type(resp) is not _Response
            or self._upgraded
            or resp._payload_writer is not None
            or resp._eof_sent
            or resp._cookies
            or resp._compression
            or resp._chunked
            or resp._status in EMPTY_BODY_STATUS_CODES
            or request._method in _OTHER_METHODS
            or request.version != HttpVersion11
        ):
            return await super().finish_response(request, resp, start_time)
        body = resp._body
        headers = resp._headers
        if (
            (body is not None and type(body) is not bytes)
            or _CONTENT_LENGTH in headers
            or _TRANSFER_ENCODING in headers
        ):
            return await super().finish_response(request, resp, start_time)
        request._finish()
        try:
            await self._send(request, resp, body, headers)
        except ConnectionError:
            self.log_access(request, resp, start_time)
            return resp, True
        self.log_access(request, resp, start_time)
        return resp, False

    @staticmethod
    async def _send(request: BaseRequest, resp: web.Response, body: Any, headers: Any) -> None:
        """What ``resp.prepare(request)`` and ``resp.write_eof()`` do for such an answer."""
        writer = request._payload_writer
        resp._must_be_empty_body = False
        resp._req = request
        resp._payload_writer = writer
        keep_alive = resp._keep_alive
        if keep_alive is None:
            keep_alive = resp._keep_alive = request.keep_alive
        length = len(body) if body else 0
        headers[_CONTENT_LENGTH] = str(length)
        writer.length = length
        if length:
            headers.setdefault(_CONTENT_TYPE, "application/octet-stream")
        if _DATE not in headers:
            headers[_DATE] = rfc822_formatted_time()
        headers.setdefault(_SERVER, SERVER_SOFTWARE)
        if not keep_alive and _CONNECTION not in headers:
            headers[_CONNECTION] = "close"
        if type(request) is Request or type(request) is _Request:
            # What request._prepare_hook(resp) does, each application's frozen signal sent
            # without a coroutine of its own.
            match_info = request._match_info
            if match_info is not None:
                for app in match_info._apps:
                    for receiver in app._on_response_prepare:
                        await receiver(request, resp)
        else:
            await request._prepare_hook(resp)
        await writer.write_headers(f"HTTP/1.1 {resp._status} {resp._reason}", headers)
        if resp._eof_sent:  # pragma: no cover - a receiver sent it
            return
        body = resp._body  # as write_eof() reads it: after the receivers
        await writer.write_eof(body if body is not None else b"")
        resp._eof_sent = True
        resp._req = None
        resp._body_length = writer.output_size
        resp._payload_writer = None


Handle = Callable[[web.Request], Awaitable[web.StreamResponse]]


def request_handler(app: web.Application) -> Handle:
    """What aiohttp's ``Application._handle`` does, with a route's handler and middlewares
    chained once per route rather than looked up per request, when the route is the
    application's own (not a sub-application's, not 404 or 405): the chain is then the
    application's middlewares without aiohttp's outermost one that sets
    ``match_info.current_app`` to the application, which it already is. Anything else, and an
    application with old-style middlewares, goes through aiohttp's ``_handle``."""
    handle = app._handle
    if app._has_legacy_middlewares:
        return handle
    router = app.router
    # _middlewares_handlers: the application's middlewares, innermost first, then aiohttp's.
    middlewares = [m for m, _ in app._middlewares_handlers or ()][:-1]
    run_middlewares = app._run_middlewares
    chains: dict[Any, Handle] = {}
    expect = hdrs.EXPECT

    def chain(handler: Handle) -> Handle:
        for m in middlewares:
            handler = update_wrapper(partial(m, handler=handler), handler)
        return handler

    async def handle_request(request: web.Request) -> web.StreamResponse:
        match_info = await router.resolve(request)
        if type(match_info) is not UrlMappingMatchInfo or match_info._apps:
            return await handle(request)  # resolves it again
        match_info.add_app(app)
        match_info.freeze()
        request._match_info = match_info
        if request.headers.get(expect):
            resp = await match_info.expect_handler(request)
            await request.writer.drain()
            if resp is not None:
                return resp
        handler = match_info.handler
        if run_middlewares:
            chained = chains.get(handler)
            if chained is None:
                chained = chains[handler] = chain(handler)
            handler = chained
        return await handler(request)

    return handle_request


class Request(web.Request):
    """aiohttp's request, with what the application reads of it on every request (its headers,
    method, version, raw path, body stream and keep-alive) held in slots rather than behind
    aiohttp's cached properties: a property's first read calls it and stores its value in the
    request's cache, and each read looks it up there again (about 500 instructions a read, a
    dozen reads a request); a slot is read as an attribute. The values are those the
    properties return, taken from the same parsed message when the request is made."""

    __slots__ = ("content", "headers", "keep_alive", "method", "raw_path", "version")
    ATTRS = web.Request.ATTRS | frozenset(__slots__)

    def __init__(
        self,
        message: RawRequestMessage,
        payload: StreamReader,
        protocol: RequestHandler,
        payload_writer: AbstractStreamWriter,
        task: asyncio.Task[None],
        loop: asyncio.AbstractEventLoop,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, payload, protocol, payload_writer, task, loop, **kwargs)
        self.headers = message.headers
        self.method = message.method
        self.version = message.version
        self.raw_path = message.path
        self.content = payload
        self.keep_alive = not message.should_close


class Server(web.Server):
    """aiohttp's server, its connections :class:`Connection`."""

    def __call__(self) -> RequestHandler:
        return Connection(self, loop=self._loop, **self._kwargs)


class Runner(web.AppRunner):
    """aiohttp's application runner, serving with :class:`Server`."""

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()
        app = self._app
        loop = made._loop
        max_size, max_fields = app._client_max_size, app._client_max_fields

        def request_factory(
            message: RawRequestMessage,
            payload: StreamReader,
            protocol: RequestHandler,
            writer: AbstractStreamWriter,
            task: asyncio.Task[None],
        ) -> Request:
            # What Application._make_request does, making this module's Request.
            return Request(
                message,
                payload,
                protocol,
                writer,
                task,
                loop,
                client_max_size=max_size,
                client_max_fields=max_fields,
            )

        return Server(
            # An application's handler gets the application's requests (web.Request), as
            # aiohttp's own Application._handle does.
            cast(
                "Callable[[BaseRequest], Awaitable[web.StreamResponse]]", request_handler(self._app)
            ),
            request_factory=request_factory,
            handler_cancellation=made.handler_cancellation,
            loop=made._loop,
            **made._kwargs,
        )
