"""The built-in ``console`` plugin: ``[console]``, the page at ``/ui`` and its JSON endpoints.

The page is plain HTML, CSS and ES modules written by hand (``static/``), read once at startup
and served from memory under a strict Content-Security-Policy: nothing inline, nothing from
another origin. What the page shows comes from the gateway's public and admin APIs; the few
things no API says yet (what a key may do, the routes, the plugins) come from ``/ui/api``.
"""

from __future__ import annotations

import hashlib
import logging
from importlib import resources
from typing import Any

import attrs
from aiohttp import web

from gateway import EXCHANGE, Forbidden, Gateway, Principal, __version__, hookimpl, json_response

log = logging.getLogger(__name__)

#: Hosts that only this machine can reach: the console is on by default when bound to one.
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})

#: Nothing inline, nothing from elsewhere: scripts, styles, images and requests from this origin
#: only, and the page may not be framed.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
_SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
}
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
#: Admin endpoints other plugins serve, which the page's admin views read when present.
_CAPABILITIES = {"keys": "/admin/keys", "spend": "/admin/spend", "requests": "/admin/requests"}


@attrs.frozen
class ConsoleConfig:
    """``[console]``: the console in the browser at ``/ui``."""

    #: Serve the console at ``/ui`` (and redirect ``/`` there). Unset: on when ``[server] host``
    #: is a loopback address (``127.0.0.1``, ``::1``, ``localhost``), off when the gateway
    #: listens on other addresses.
    enabled: bool | None = None


@attrs.frozen
class Asset:
    body: bytes
    content_type: str
    etag: str


def load_assets() -> dict[str, Asset]:
    """Every file of ``static/``, by name, read once."""
    assets = {}
    for item in resources.files("gateway.console").joinpath("static").iterdir():
        suffix = item.name[item.name.rfind(".") :]
        if not item.is_file() or suffix not in _TYPES:
            continue
        body = item.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        assets[item.name] = Asset(body, _TYPES[suffix], etag)
    return assets


def enabled(config: ConsoleConfig, host: str) -> bool:
    if config.enabled is not None:
        return config.enabled
    return host in LOCAL_HOSTS


def is_admin(gateway: Gateway, principal: Principal) -> bool:
    """Whether the caller may see the admin views: any caller of an open gateway (it has no
    keys to tell callers apart), else a key marked as an admin's."""
    return not gateway.auth_enabled or principal.attributes.get("admin") is True


class Console:
    """The console's handlers."""

    def __init__(self, gateway: Gateway, assets: dict[str, Asset]) -> None:
        self.gateway = gateway
        self.assets = assets

    # -- the page

    async def index(self, request: web.Request) -> web.StreamResponse:
        return self._asset(request, "index.html")

    async def asset(self, request: web.Request) -> web.StreamResponse:
        return self._asset(request, request.match_info["name"])

    def _asset(self, request: web.Request, name: str) -> web.StreamResponse:
        asset = self.assets.get(name)
        if asset is None:
            raise web.HTTPNotFound()
        headers = {**_SECURITY_HEADERS, "etag": asset.etag, "cache-control": "no-cache"}
        if request.headers.get("if-none-match") == asset.etag:
            return web.Response(status=304, headers=headers)
        return web.Response(
            body=asset.body, headers={**headers, "content-type": asset.content_type}
        )

    async def to_console(self, request: web.Request) -> web.StreamResponse:
        # Returned, not raised: the error mapping would turn a raised redirect into an error.
        return web.Response(status=302, headers={"location": "/ui/"})

    # -- what the page asks

    async def about(self, request: web.Request) -> web.Response:
        """What the page needs before sign-in: whether this gateway asks for a key at all."""
        return json_response({"auth": self.gateway.auth_enabled, "version": __version__})

    async def whoami(self, request: web.Request) -> web.Response:
        """Who the key is and what the page may offer it: its name, whether it is an admin's,
        the agents it may run, and which admin capabilities this gateway has."""
        principal = request[EXCHANGE].principal
        agents = [
            {
                "name": agent.name,
                "description": agent.description,
                "tools": [
                    {"name": t.name, "description": t.description} for t in agent.definitions
                ],
            }
            for agent in self.gateway.agents.values()
            if principal.may_use(agent.name)
        ]
        admin = is_admin(self.gateway, principal)
        return json_response(
            {
                "name": principal.name,
                "admin": admin,
                "auth": self.gateway.auth_enabled,
                "version": __version__,
                "agents": agents,
                "capabilities": self._capabilities(request.app) if admin else {},
            }
        )

    def _capabilities(self, app: web.Application) -> dict[str, bool]:
        paths = {resource.canonical for resource in app.router.resources()}
        return {name: path in paths for name, path in _CAPABILITIES.items()}

    async def routes(self, request: web.Request) -> web.Response:
        """The public model names and where each goes (the targets' live state is /health's)."""
        self._admin(request)
        config = self.gateway.config
        kinds = {name: backend.kind for name, backend in config.backends.items()}
        models = [
            {
                "model": name,
                "backend": model.backend,
                "kind": kinds.get(model.backend),
                "upstream_model": model.upstream_model,
                "description": model.description,
            }
            for name, model in config.models.items()
        ]
        agents = [
            {"model": name, "backend": f"agent:{name}", "kind": "agent", "upstream_model": None}
            for name in self.gateway.agents
        ]
        return json_response({"models": models + agents})

    async def plugins(self, request: web.Request) -> web.Response:
        """Every plugin with its version, distribution, hooks and state."""
        self._admin(request)
        rows = [
            {
                "name": p.name,
                "version": p.version,
                "distribution": p.distribution,
                "hooks": list(p.hooks),
                "enabled": p.enabled,
            }
            for p in self.gateway.describe_plugins()
        ]
        return json_response({"plugins": rows})

    def _admin(self, request: web.Request) -> None:
        if not is_admin(self.gateway, request[EXCHANGE].principal):
            raise Forbidden("This view needs an admin key.", code="admin_only")


@hookimpl
def gateway_config_sections(register: Any) -> None:
    register("console", ConsoleConfig)


@hookimpl
def gateway_configure_app(app: web.Application, gateway: Gateway) -> None:
    cfg: ConsoleConfig = gateway.config.section("console")
    if not enabled(cfg, gateway.config.server.host):
        return
    console = Console(gateway, load_assets())
    add = gateway.add_route
    add("GET", "/", console.to_console, name="console", auth=False)
    add("GET", "/ui", console.to_console, name="console", auth=False)
    add("GET", "/ui/", console.index, name="console", auth=False)
    add("GET", "/ui/{name}", console.asset, name="console", auth=False)
    add("GET", "/ui/api/gateway", console.about, name="console_api", auth=False)
    add("GET", "/ui/api/whoami", console.whoami, name="console_api")
    add("GET", "/ui/api/routes", console.routes, name="console_api")
    add("GET", "/ui/api/plugins", console.plugins, name="console_api")
