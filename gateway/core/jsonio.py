"""Small HTTP helpers: reading JSON bodies within the limits, writing JSON responses.

Request bodies are read within three bounds: the size of one body (``[server] max_body_size``,
413), the time to receive it (``[server] body_timeout``, 408: a body that never ends is cut) and
the bytes of all bodies held at once (``[server] max_bodies_in_flight``, 503 with
``retry-after``: many large bodies together cannot take the process's memory). A body's bytes
count against the last until its request ends. Messages that arrive on a WebSocket count
against the same budget while they are handled (:meth:`BodyBudget.hold`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import hdrs, web

from gateway.errors import BadRequest, PayloadTooLarge, Unavailable
from gateway.exchange import EXCHANGE, Exchange

JSON_CONTENT_TYPE = "application/json"
_CONTENT_LENGTH = hdrs.CONTENT_LENGTH


class BodyBudget:
    """The bytes of request bodies held at once, against a cap (0: no cap), and the time one
    body may take to arrive (0: no limit)."""

    __slots__ = ("cap", "held", "timeout")

    def __init__(self, cap: int, timeout: float) -> None:
        self.cap = cap
        self.timeout = timeout
        self.held = 0

    def take(self, request: web.Request, size: int) -> None:
        """Count ``size`` more bytes for ``request`` (given back by :meth:`release`)."""
        if self.cap and self.held + size > self.cap:
            raise Unavailable(
                "The gateway is holding too many request bodies; retry shortly.",
                code="busy",
                retry_after=1.0,
            )
        self.held += size
        ex = request._state.get(EXCHANGE)  # request.get(), without its two calls
        if ex is None:  # an application without the gateway's middlewares
            request[_HELD] = request.get(_HELD, 0) + size
        else:
            ex.body_held += size

    def hold(self, size: int) -> bool:
        """Count ``size`` bytes that belong to no request's body (a WebSocket message); false,
        counting nothing, when they do not fit. Given back with :meth:`give`."""
        if self.cap and self.held + size > self.cap:
            return False
        self.held += size
        return True

    def give(self, size: int) -> None:
        """Give back bytes counted by :meth:`hold`."""
        self.held -= size

    def release(self, request: web.Request) -> None:
        """Give back what ``request``'s body counted (at the end of the request)."""
        ex = request.get(EXCHANGE)
        if ex is not None:
            self.release_exchange(ex)
            return
        size = request.get(_HELD, 0)
        request[_HELD] = 0
        if size:
            self.held -= size

    def release_exchange(self, ex: Exchange) -> None:
        """:meth:`release`, for the request of ``ex``."""
        size = ex.body_held
        if size:
            ex.body_held = 0
            self.held -= size


def _broken(request: web.Request) -> None:
    """Mark ``request``: its body could not be read whole, so its connection is not reused
    (``Exchange.body_broken``, which the response's headers act on)."""
    ex = request.get(EXCHANGE)
    if ex is not None:
        ex.body_broken = True


BODY_BUDGET: web.AppKey[BodyBudget] = web.AppKey("hookgate.body_budget", BodyBudget)
_HELD: web.RequestKey[int] = web.RequestKey("hookgate.body_held", int)


async def read_body(request: web.Request, limit: int | None = None) -> bytes:
    """The request body within the limits (see the module's docstring; ``limit``, when given,
    instead of the app's body size); 400 when it cannot be decoded (a broken
    ``Content-Encoding``)."""
    if limit is None:
        limit = request.client_max_size  # the app's limit, from [server] max_body_size
    data, budget = _arrived(request, limit)
    if data is not None:
        return data
    return await _rest(request, limit, budget)


async def _rest(request: web.Request, limit: int, budget: BodyBudget | None) -> bytes:
    """The body that :func:`_arrived` did not find all in."""
    if budget is None:
        return await _read(request, limit, None)
    length = request.content_length
    try:
        async with asyncio.timeout(budget.timeout or None):
            return await _read(request, limit, None if length else budget)
    except TimeoutError:
        _broken(request)
        raise BadRequest(
            f"The request body did not arrive within {budget.timeout:g}s.",
            code="body_timeout",
            status=408,
        ) from None


def _arrived(request: web.Request, limit: int) -> tuple[bytes | None, BodyBudget | None]:
    """The body when it has all arrived (most requests: taken as it is, no timer, no wait, no
    coroutine), counted against the budget; else None. With the budget, if any."""
    # What request.content_length, request.app[BODY_BUDGET] and request.content give, read
    # without their calls (properties and mapping methods in Python, five a request).
    value = request._headers.get(_CONTENT_LENGTH)
    length = None if value is None else int(value)
    if length is not None and length > limit:
        raise PayloadTooLarge(f"The request body is {length} bytes; the limit is {limit} bytes.")
    # The gateway's routes are on the main application; a sub-application's see it through
    # config_dict (a chain of mappings made on first use: dearer).
    match_info = request._match_info
    app = None if match_info is None else match_info._current_app
    state: Any = None if app is None else app._state  # typed, not cast(): that is a call
    budget: BodyBudget | None = None if state is None else state.get(BODY_BUDGET)
    if budget is None:
        budget = request.config_dict.get(BODY_BUDGET)
    if budget is None or not length:
        return None, budget
    budget.take(request, length)
    content = request._payload  # request.content, without its call
    if content.is_eof() and not content.at_eof():
        try:
            data = content.read_nowait(-1)
        except (web.RequestPayloadError, ValueError) as exc:
            raise _unreadable(request, exc) from exc
        if len(data) > limit:  # decompressed past the limit
            raise PayloadTooLarge(f"The request body exceeds the limit of {limit} bytes.")
        return data, budget
    return None, budget


def _unreadable(request: web.Request, exc: Exception) -> BadRequest:
    """The 400 for a body that could not be read (marking its connection not to be reused)."""
    _broken(request)
    encoding = request.headers.get("content-encoding")
    what = f" (Content-Encoding: {encoding[:32]})" if encoding else ""
    return BadRequest(f"The request body could not be read{what}.", code="invalid_body")


async def _read(request: web.Request, limit: int, budget: BodyBudget | None) -> bytes:
    content = request.content
    if content.at_eof():
        # Read before (an authenticator that checks a signature): aiohttp kept it.
        return await request.read()
    chunks: list[bytes] = []
    size = 0
    try:
        while True:
            chunk = await content.readany()
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"The request body exceeds the limit of {limit} bytes.")
            if budget is not None:
                budget.take(request, len(chunk))
            chunks.append(chunk)
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"The request body exceeds the limit of {limit} bytes.") from None
    except (web.RequestPayloadError, ValueError) as exc:
        raise _unreadable(request, exc) from exc
    return b"".join(chunks)


async def read_json(request: web.Request) -> Any:
    """The request body parsed as JSON; 413 past the app's body limit, 408 when it does not
    arrive in time, 400 when it is not JSON."""
    # read_body() without its coroutine when the body is all in.
    limit = request._client_max_size  # request.client_max_size, without its call
    data, budget = _arrived(request, limit)
    if data is None:
        data = await _rest(request, limit, budget)
    if not data:
        raise BadRequest("The request body is empty; expected a JSON object.")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"The request body is not valid JSON: {exc}.") from None


def json_response(
    obj: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(obj), status=status, content_type=JSON_CONTENT_TYPE, headers=headers
    )
