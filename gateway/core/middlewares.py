"""The gateway's middlewares, compiled once per application.

In order: the exchange (request id, error mapping into the route's protocol, metrics), then
authentication (only installed when an authenticator is enabled: the ``[auth] keys`` one or any
plugin's). Plugins that need to act on every request add their own in ``gateway_configure_app``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from random import getrandbits
from typing import TYPE_CHECKING, Protocol

from aiohttp import web
from multidict import istr

from gateway.core.jsonio import BODY_BUDGET, json_response
from gateway.errors import BadRequest, GatewayError, NotFound, Unauthorized, default_error_body
from gateway.exchange import EXCHANGE, UNKNOWN_ROUTE, Exchange

if TYPE_CHECKING:
    from gateway.core.app import Gateway

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class RequestBound(Protocol):
    """Requests in progress counted in this process (``Gateway.request_bound``, set by the
    limits plugin): taken by the gateway's own middleware once the caller is known, given
    back when the request ends; routes in ``exempt`` are not counted."""

    exempt: frozenset[str]

    def take(self, owner: str, name: str) -> None: ...

    def give(self, owner: str) -> None: ...


_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")
_COUNTS = [str(n) for n in range(8)]
# Header names as istr: a response's headers take them without case-folding each time.
_CONNECTION, _REQUEST_ID_H, _BACKEND, _SERVED, _ATTEMPTS, _SERVER_TIMING, _OVERHEAD, _COST = map(
    istr,
    (
        "connection",
        "x-request-id",
        "x-hookgate-backend",
        "x-hookgate-served-model",
        "x-hookgate-attempts",
        "server-timing",
        "x-hookgate-overhead-ms",
        "x-hookgate-cost",
    ),
)


def make_middlewares(gateway: Gateway) -> list[Callable[..., Awaitable[web.StreamResponse]]]:
    routes = gateway.routes
    metrics = gateway.metrics
    inflight = gateway.inflight
    current_task = asyncio.current_task
    trust_request_id = gateway.config.server.trust_request_id
    clock = time.perf_counter
    bodies = gateway.app[BODY_BUDGET]
    # Requests in progress are bounded here, after authentication when there is one: one
    # middleware fewer on every request than a bound of its own.
    authenticates = gateway.auth_enabled

    def error_response(ex: Exchange, err: GatewayError) -> web.Response:
        if ex.route.protocol is not None:
            return ex.route.protocol.error_response(err, ex.request_id)
        headers = None
        if err.retry_after is not None:  # as ProtocolAdapter.error_headers does
            headers = {"retry-after": str(max(1, round(err.retry_after)))}
        return json_response(default_error_body(err), status=err.status, headers=headers)

    @web.middleware
    async def exchange(request: web.Request, handler: Handler) -> web.StreamResponse:
        # The match's route and the request's state read without aiohttp's properties and
        # mapping methods (a Python call each).
        match_info = request._match_info
        info = routes.get(match_info._route if match_info is not None else None, UNKNOWN_ROUTE)
        rid = request.headers.get(_REQUEST_ID_H)
        if not (trust_request_id and rid and _REQUEST_ID.fullmatch(rid)):
            # An id, not a secret (clients may send their own): 96 random bits, without a
            # system call each time. ``random`` is reseeded in a forked child.
            rid = getrandbits(96).to_bytes(12, "big").hex()
        ex = Exchange(rid, info, http=request)
        request._state[EXCHANGE] = ex
        # Given the loop, current_task() does not ask for the running one (a getpid() call in
        # Python 3.11).
        task = current_task(request._loop)
        assert task is not None  # aiohttp runs every handler in a task
        inflight.add(task)
        try:
            try:
                bound = None if authenticates else gateway.request_bound
                if bound is None or info.name in bound.exempt:
                    resp = await handler(request)
                else:
                    # No authenticator: every caller is the anonymous principal.
                    owner = ex.principal
                    bound.take(owner.id, owner.name)
                    try:
                        resp = await handler(request)
                    finally:
                        bound.give(owner.id)
            except GatewayError as err:
                resp = error_response(ex, err)
            except web.HTTPException as exc:
                if exc.status == 404:
                    mapped: GatewayError = NotFound(
                        f"No route for {request.method} {request.path}."
                    )
                elif exc.status == 405:
                    mapped = BadRequest(
                        f"{request.method} is not allowed on {request.path}.", status=405
                    )
                else:
                    mapped = GatewayError(exc.reason, status=exc.status)
                resp = error_response(ex, mapped)
                for name in ("allow",):
                    if name in exc.headers:
                        resp.headers[name] = exc.headers[name]
            except asyncio.CancelledError:
                metrics.record(ex, 499, clock() - ex.started)
                raise
            except Exception:
                log.exception("request %s failed", rid)
                resp = error_response(ex, GatewayError("The gateway failed to handle the request."))
            metrics.record(ex, resp._status, clock() - ex.started)
            return resp
        finally:
            inflight.discard(task)
            if ex.body_held:
                bodies.release_exchange(ex)
            # The request holds its exchange and the exchange its request: without this the
            # pair and all they hold (~40 objects) would wait for the garbage collector.
            ex.http = None

    if not gateway.auth_enabled:
        return [exchange]
    authenticators = list(gateway.authenticators)

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        ex = request._state[EXCHANGE]
        if ex.route.auth:
            # Every authenticator is asked, with or without a credential (a client certificate
            # or a cookie is no API key); one that raises ends the request with its error.
            key = credential(request, ex.route.query_token)
            for auth in authenticators:
                principal = await auth.authenticate(request, key)
                if principal is not None:
                    ex.principal = principal
                    break
            else:
                if key is None:
                    raise Unauthorized(
                        "Missing API key: send it as 'Authorization: Bearer <key>' or "
                        "'x-api-key: <key>'.",
                        code="missing_api_key",
                    )
                raise Unauthorized("Invalid API key.", code="invalid_api_key")
        bound = gateway.request_bound
        if bound is None or ex.route.name in bound.exempt:
            return await handler(request)
        owner = ex.principal
        bound.take(owner.id, owner.name)
        try:
            return await handler(request)
        finally:
            bound.give(owner.id)

    return [exchange, authenticate]


def make_stamp_headers(
    gateway: Gateway,
) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """The ``on_response_prepare`` receiver that stamps every response (see below)."""

    async def stamp_headers(request: web.Request, response: web.StreamResponse) -> None:
        """Before headers go out: the request id, the backend, where the time went, the
        cost, and ``Connection: close`` once the application retires (``Gateway.closing``).

        ``server-timing`` says ``gateway`` (time inside the gateway so far, upstream waits excluded)
        and ``upstream`` (time waiting on the upstream so far); for streams, up to the first byte.
        ``x-hookgate-overhead-ms`` is the same gateway time on its own. ``x-hookgate-cost`` is the
        request's cost in USD when it is known before the headers leave (answers not streamed).
        """
        if gateway.closing:
            # Set here too: aiohttp has written its Connection header by the time this runs,
            # and force_close() alone would close the connection unannounced.
            response.force_close()
            response.headers[_CONNECTION] = "close"
        ex = request._state.get(EXCHANGE)
        if ex is None:  # refused before the gateway's middlewares (a malformed request)
            return
        headers = response.headers
        if ex.body_broken:
            # What is left of its body cannot be read: the connection is not reused.
            response.force_close()
            headers[_CONNECTION] = "close"
        headers[_REQUEST_ID_H] = ex.request_id
        if ex.backend:
            headers[_BACKEND] = ex.backend
        if ex.served:
            headers[_SERVED] = ex.served
            attempts = ex.attempts
            headers[_ATTEMPTS] = _COUNTS[attempts] if attempts < 8 else str(attempts)
        # f-strings: cheaper than "%" formatting.
        overhead = f"{ex.gateway_seconds() * 1000:.3f}"
        headers[_SERVER_TIMING] = (
            f"gateway;dur={overhead}, upstream;dur={ex.upstream_seconds * 1000:.3f}"
        )
        headers[_OVERHEAD] = overhead
        if ex.response_headers:
            headers.update(ex.response_headers)
        if ex.cost is not None:
            headers[_COST] = f"{ex.cost:.8f}".rstrip("0").rstrip(".") or "0"

    return stamp_headers


def credential(request: web.Request, query_token: bool) -> str | None:
    """The key a request presents: ``Authorization: Bearer``, then ``x-api-key``, then (where the
    route allows it, for browsers' EventSource) the ``token`` query parameter."""
    headers = request.headers
    value = headers.get("authorization")
    if value:
        scheme, _, token = value.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    value = headers.get("x-api-key")
    if value:
        return value.strip()
    if query_token:
        return request.query.get("token") or None
    return None
