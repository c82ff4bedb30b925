"""``GET /health``: cheap liveness, no key needed, nothing upstream is called.

When models route to several targets, the body also lists each target's circuit
(``closed``, ``open``: skipped for its cooldown, ``half-open``: one probe let through) with the
failures counted in its window, as the circuit store (memory or Redis) has them.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway import __version__, hookimpl, json_response

_BODY = b'{"status":"ok","version":"' + __version__.encode() + b'"}'


async def health(request: web.Request) -> web.Response:
    return web.Response(body=_BODY, content_type="application/json")


@hookimpl
def gateway_configure_app(app: web.Application, gateway: Any) -> None:
    policies = gateway.router.policies()
    if not policies:
        gateway.add_route("GET", "/health", health, name="health", auth=False)
        return

    async def health_with_targets(request: web.Request) -> web.Response:
        models: dict[str, list[dict[str, Any]]] = {}
        for policy in policies:
            models[policy.name] = await policy.health()
        return json_response({"status": "ok", "version": __version__, "models": models})

    gateway.add_route("GET", "/health", health_with_targets, name="health", auth=False)
