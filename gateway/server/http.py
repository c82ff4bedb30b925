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
:class:`~gateway.streaming.sse.SSEResponse` does the same for a stream's head and end.

:class:`Handling` is the application's ``_handle`` (route, middlewares, handler) with less
done per request for a route of the application itself (a plain route's handler is found and
called by the connection, without a coroutine around it), :class:`Request` aiohttp's request
with what is read of it on every request in slots, and :class:`Runner` is
:class:`~aiohttp.web.AppRunner` serving its application with them.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Awaitable, Callable
from functools import update_wrapper
from typing import TYPE_CHECKING, Any, cast

from aiohttp import hdrs, web
from aiohttp.helpers import EMPTY_BODY_STATUS_CODES, rfc822_formatted_time
from aiohttp.http import SERVER_SOFTWARE, HttpVersion11
from aiohttp.http_writer import StreamWriter, _serialize_headers
from aiohttp.web_exceptions import HTTPException
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_urldispatcher import AbstractRoute, UrlMappingMatchInfo

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
_DATE, _SERVER, _CONNECTION, _EXPECT = hdrs.DATE, hdrs.SERVER, hdrs.CONNECTION, hdrs.EXPECT
#: Methods whose answers aiohttp shapes otherwise: no body (HEAD), a tunnel (CONNECT).
_OTHER_METHODS = frozenset((hdrs.METH_HEAD, hdrs.METH_CONNECT))
_Response, _Request = web.Response, web.Request


class Connection(RequestHandler):
    """One client connection: see the module's description."""

    __slots__ = ("_find",)

    def __init__(self, manager: web.Server, *, find: Find | None = None, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        #: Finds the handler of a request for a plain route (:meth:`Handling.find`).
        self._find = find

    async def _handle_request(
        self,
        request: BaseRequest,
        start_time: float | None,
        request_handler: Callable[[BaseRequest], Awaitable[web.StreamResponse]],
    ) -> tuple[web.StreamResponse, bool]:
        """aiohttp's, with the handler of a request for a plain route found and called here:
        without the application handler's coroutine nor the router's."""
        find = self._find
        if find is None or request_handler is not self._request_handler:
            return await super()._handle_request(request, start_time, request_handler)
        self._request_in_progress = True
        try:
            try:
                self._current_request = request
                # The runner's requests are the application's (typed so, not cast: cast()
                # is a call).
                app_request: Any = request
                handler = find(app_request)
                if handler is None:
                    resp = await request_handler(request)
                else:
                    resp = await handler(app_request)
            finally:
                self._current_request = None
        except HTTPException as exc:
            resp, reset = await self.finish_response(request, exc, start_time)
        except asyncio.CancelledError:
            raise
        except TimeoutError as exc:
            self.log_debug("Request handler timed out.", exc_info=exc)
            resp = self.handle_error(request, 504)
            resp, reset = await self.finish_response(request, resp, start_time)
        except Exception as exc:
            resp = self.handle_error(request, 500, exc)
            resp, reset = await self.finish_response(request, resp, start_time)
        else:
            if getattr(resp, "__http_exception__", False):
                warnings.warn(
                    "returning HTTPException object is deprecated "
                    "(#2415) and will be removed, "
                    "please raise the exception instead",
                    DeprecationWarning,
                    stacklevel=1,
                )
            resp, reset = await self.finish_response(request, resp, start_time)
        finally:
            self._request_in_progress = False
            if self._handler_waiter is not None:
                self._handler_waiter.set_result(None)
        return resp, reset

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
            # The parser's HTTP/1.1 is one object: compared only when the version is another.
            or (request._version is not HttpVersion11 and request._version != HttpVersion11)
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
        if request._post is not None:  # what request._finish() looks at first
            request._finish()
        # What resp.prepare(request) and resp.write_eof() do for such an answer.
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
        try:
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
            status_line = f"HTTP/1.1 {resp._status} {resp._reason}"
            sent: bool = resp._eof_sent  # by a receiver, if set
            if sent:  # pragma: no cover
                await writer.write_headers(status_line, headers)
                self.log_access(request, resp, start_time)
                return resp, False
            # As write_eof() reads it: after the receivers.
            payload: Any = b"" if resp._body is None else resp._body
            if (
                type(writer) is StreamWriter
                and writer._on_headers_sent is None
                and writer._on_chunk_sent is None
                and writer.on_body_write is None
                and writer._compress is None
                and not writer.chunked
            ):
                # What write_headers() and write_eof() do for a plain connection's writer:
                # head and body in one write, without their coroutines and drain()'s.
                head = _serialize_headers(status_line, headers)
                writer._headers_written = True
                if payload:
                    writer._writelines((head, payload))
                else:
                    writer._write(head)
                protocol = writer._protocol
                if protocol.transport is not None and protocol._paused:
                    await protocol._drain_helper()
                writer._eof = True
            else:
                await writer.write_headers(status_line, headers)
                await writer.write_eof(payload)
        except ConnectionError:
            self.log_access(request, resp, start_time)
            return resp, True
        resp._eof_sent = True
        resp._req = None
        resp._body_length = writer.output_size
        resp._payload_writer = None
        self.log_access(request, resp, start_time)
        return resp, False


Handle = Callable[[web.Request], Awaitable[web.StreamResponse]]
Find = Callable[[web.Request], Handle | None]


class Handling:
    """What aiohttp's ``Application._handle`` does, with a route's handler and middlewares
    chained once per route rather than looked up per request, when the route is the
    application's own (not a sub-application's, not 404 or 405): the chain is then the
    application's middlewares without aiohttp's outermost one that sets
    ``match_info.current_app`` to the application, which it already is. Anything else, and an
    application with old-style middlewares, goes through aiohttp's ``_handle``.

    :meth:`handle` is the application's handler; :meth:`find` finds, without a coroutine, the
    chained handler of a request for a plain path when the router finds those without a coroutine
    (``plain_match``, :class:`gateway.core.dispatch.Dispatcher`'s), and a connection calls that
    handler itself."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self._handle = app._handle
        self._legacy = app._has_legacy_middlewares
        self._router = app.router
        plain_match: Callable[[web.Request], UrlMappingMatchInfo | None] | None = getattr(
            app.router, "plain_match", None
        )
        self._plain_match = None if self._legacy else plain_match
        # _middlewares_handlers: the application's middlewares, innermost first, then aiohttp's.
        self._middlewares = [m for m, _ in app._middlewares_handlers or ()][:-1]
        self._run_middlewares = app._run_middlewares
        self._chains: dict[AbstractRoute, Handle] = {}

    def find(self, request: web.Request) -> Handle | None:
        """The handler, middlewares chained, of a request for a plain route, its match info
        set; ``None`` when :meth:`handle` must find it (other routes, ``Expect``)."""
        plain_match = self._plain_match
        if plain_match is None:
            return None
        match_info = plain_match(request)
        if match_info is None or request.headers.get(_EXPECT):
            return None
        # What add_app() and freeze() do to a new match, without their calls.
        match_info._current_app = app = self.app
        match_info._apps.append(app)
        match_info._frozen = True
        request._match_info = match_info
        route = match_info._route
        return self._chains.get(route) or self._chain(route)

    def _chain(self, route: AbstractRoute) -> Handle:
        """The route's handler within the application's middlewares (made once per route)."""
        chained = route.handler
        if self._run_middlewares:
            for m in self._middlewares:
                chained = update_wrapper(_bind(m, chained), chained)
        self._chains[route] = chained
        return chained

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self._legacy:
            return await self._handle(request)
        match_info = await self._router.resolve(request)
        if type(match_info) is not UrlMappingMatchInfo or match_info._apps:
            return await self._handle(request)  # resolves it again
        match_info.add_app(self.app)
        match_info.freeze()
        request._match_info = match_info
        if request.headers.get(_EXPECT):
            resp = await match_info.expect_handler(request)
            await request.writer.drain()
            if resp is not None:
                return resp
        route = match_info._route
        return await (self._chains.get(route) or self._chain(route))(request)


def _bind(middleware: Any, handler: Handle) -> Handle:
    """``partial(middleware, handler=handler)`` as aiohttp chains them, as a function: a
    partial with a keyword builds a mapping of keywords at each call, a function call passes
    it by name without one."""

    def call(request: web.Request) -> Any:  # the middleware's coroutine
        return middleware(request, handler=handler)

    return call


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
        *,
        client_max_size: int = 1024**2,
        client_max_fields: int = 1000,
        state: dict[Any, Any] | None = None,
        scheme: str | None = None,
        host: str | None = None,
        remote: str | None = None,
    ) -> None:
        # aiohttp 3.14's keywords, each passed by name: a ``**kwargs`` would build a mapping and
        # unpack it again on every request.
        super().__init__(
            message,
            payload,
            protocol,
            payload_writer,
            task,
            loop,
            client_max_size=client_max_size,
            client_max_fields=client_max_fields,
            state=state,
            scheme=scheme,
            host=host,
            remote=remote,
        )
        self.headers = message.headers
        self.method = message.method
        self.version = message.version
        self.raw_path = message.path
        self.content = payload
        self.keep_alive = not message.should_close


class Server(web.Server):
    """aiohttp's server, its connections :class:`Connection`; ``find`` as
    :meth:`Handling.find`."""

    def __init__(self, handler: Any, *, find: Find | None = None, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.find = find

    def __call__(self) -> RequestHandler:
        return Connection(self, find=self.find, loop=self._loop, **self._kwargs)


class Runner(web.AppRunner):
    """aiohttp's application runner, serving with :class:`Server`."""

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()
        app = self._app
        loop = made._loop
        max_size, max_fields = app._client_max_size, app._client_max_fields
        handling = Handling(app)

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
            cast("Callable[[BaseRequest], Awaitable[web.StreamResponse]]", handling.handle),
            find=handling.find,
            request_factory=request_factory,
            handler_cancellation=made.handler_cancellation,
            loop=made._loop,
            **made._kwargs,
        )
