"""``GET /health``: cheap liveness, no key needed, nothing upstream is called."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway import __version__, hookimpl

_BODY = b'{"status":"ok","version":"' + __version__.encode() + b'"}'


async def health(request: web.Request) -> web.Response:
    return web.Response(body=_BODY, content_type="application/json")


@hookimpl
def gateway_configure_app(app: web.Application, gateway: Any) -> None:
    gateway.add_route("GET", "/health", health, name="health", auth=False)
