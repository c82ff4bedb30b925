"""``/mcp``'s routes, keys, its protected-resource metadata and the 401 challenge, without the
SDK.

Importing the SDK's types costs seconds of CPU, which every gateway start would pay whether or
not anyone uses ``/mcp``; so the routes are added here, and the endpoint
(:mod:`gateway.mcp.server`, which imports them) is built at the first ``/mcp`` request.
Everything a bad configuration can break (where sessions live) is decided while the app is
built, as everywhere else.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from gateway import EXCHANGE, GatewayError, ProtocolAdapter
from gateway.mcp.config import MCPConfig
from gateway.mcp.metrics import ToolCallMetrics
from gateway.mcp.sessions import MemorySessions, RedisSessions, Sessions

if TYPE_CHECKING:
    from gateway import Gateway
    from gateway.mcp.server import MCPEndpoint
    from gateway.mcp.upstream import MCPUpstream

log = logging.getLogger(__name__)

WELL_KNOWN = "/.well-known/oauth-protected-resource"
#: JSON-RPC error codes for the errors the gateway raises before the handler, by HTTP status.
_CODES = {400: -32600, 401: -32001, 403: -32003, 404: -32002, 413: -32004}


class MCPErrors(ProtocolAdapter):
    """Errors the gateway raises before ``/mcp``'s handler (no key, a bad key, a body past the
    server's limit) in JSON-RPC's shape."""

    name = "mcp"

    def setup(self, app: web.Application) -> None:
        """Routes are added by :func:`serve`."""

    def error_body(self, err: GatewayError) -> Any:
        code = _CODES.get(err.status, -32603)
        return {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": err.message}}


def choose_sessions(gateway: Gateway, config: MCPConfig) -> Sessions | None:
    """Where sessions live. ``auto`` with several workers and no Redis: nowhere (each worker
    would know only its own sessions), which a warning says at startup and a 503 to each
    request, rather than refusing to start; an explicit ``memory`` is refused then."""
    state = gateway.state
    if config.store == "auto" and not state.redis_configured and state.workers > 1:
        log.warning(
            "mcp: /mcp is unavailable: with %d workers its sessions need [redis] url "
            "(HOOKGATE_REDIS_URL)",
            state.workers,
        )
        return None
    ttl = float(config.session_ttl)
    if state.choose("mcp.store", config.store) == "redis":
        return RedisSessions(state.redis("mcp.store"), ttl)
    return MemorySessions(ttl)


class MCPRoutes:
    def __init__(
        self,
        gateway: Gateway,
        config: MCPConfig,
        upstreams: Mapping[str, MCPUpstream],
        metrics: ToolCallMetrics,
    ) -> None:
        self.gateway = gateway
        self.config = config
        self.upstreams = upstreams
        self.metrics = metrics
        self.sessions = choose_sessions(gateway, config)
        self.authenticators = list(gateway.authenticators)
        self._endpoint: MCPEndpoint | None = None

    def endpoint(self) -> MCPEndpoint:
        if self._endpoint is None:
            from gateway.mcp.server import MCPEndpoint

            self._endpoint = MCPEndpoint(self)
        return self._endpoint

    async def post(self, request: web.Request) -> web.StreamResponse:
        refused = await self.authenticate(request)
        return refused or await self.endpoint().post(request)

    async def get(self, request: web.Request) -> web.StreamResponse:
        """No server-initiated stream: the specification's 405 for servers that send none."""
        refused = await self.authenticate(request)
        return refused or web.Response(status=405, headers={"Allow": "POST, DELETE"})

    async def delete(self, request: web.Request) -> web.StreamResponse:
        refused = await self.authenticate(request)
        return refused or await self.endpoint().delete(request)

    async def authenticate(self, request: web.Request) -> web.Response | None:
        """Find the caller by its bearer token, as the gateway's auth middleware would; a 401
        says where the resource metadata is (RFC 9728, section 5.1), so MCP clients find out
        how to authenticate. (The routes are added without the middleware's check so that
        only they, not every route, carry the challenge.)"""
        if not self.authenticators:
            return None
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        key = token.strip() if scheme.lower() == "bearer" and token.strip() else None
        for auth in self.authenticators:
            principal = await auth.authenticate(request, key)
            if principal is not None:
                request[EXCHANGE].principal = principal
                return None
        message = (
            "Invalid API key." if key else "Missing API key: send 'Authorization: Bearer <key>'."
        )
        body = {"jsonrpc": "2.0", "id": None, "error": {"code": -32001, "message": message}}
        where = str(request.url.origin()) + WELL_KNOWN + self.config.path
        return web.Response(
            body=orjson.dumps(body),
            status=401,
            content_type="application/json",
            headers={"WWW-Authenticate": f'Bearer resource_metadata="{where}"'},
        )

    async def resource_metadata(self, request: web.Request) -> web.Response:
        """OAuth 2.0 protected-resource metadata (RFC 9728) for ``/mcp``: how to get a token.
        Without ``authorization_servers`` the token is a gateway key, given by its operator."""
        body: dict[str, Any] = {
            "resource": str(request.url.origin()) + self.config.path,
            "bearer_methods_supported": ["header"],
            "resource_name": "hookgate MCP gateway",
        }
        if self.config.authorization_servers:
            body["authorization_servers"] = list(self.config.authorization_servers)
        return web.Response(body=orjson.dumps(body), content_type="application/json")


def serve(
    gateway: Gateway,
    config: MCPConfig,
    upstreams: Mapping[str, MCPUpstream],
    metrics: ToolCallMetrics,
) -> MCPRoutes:
    """Add ``/mcp`` and its metadata to the app."""
    routes = MCPRoutes(gateway, config, upstreams, metrics)
    errors = MCPErrors(gateway)
    path = config.path
    for method, handler in (("POST", routes.post), ("GET", routes.get), ("DELETE", routes.delete)):
        gateway.add_route(method, path, handler, name="mcp", protocol=errors, auth=False)
    for where in (WELL_KNOWN, WELL_KNOWN + path):
        gateway.add_route("GET", where, routes.resource_metadata, name="mcp-metadata", auth=False)
    log.info("MCP endpoint at %s (%d servers)", path, len(upstreams))
    return routes
