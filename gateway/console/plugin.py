"""The built-in ``console`` plugin: ``[console]``, the page at ``/ui`` and its JSON endpoints.

The page is plain HTML, CSS and ES modules written by hand (``static/``), read once at startup
and served from memory under a strict Content-Security-Policy: nothing inline, nothing from
another origin. What the page shows comes from the gateway's public and admin APIs; the few
things no API says yet (what a key may do, the routes, the plugins) come from ``/ui/api``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from importlib import resources
from typing import Any

import attrs
from aiohttp import web

from gateway import (
    ANONYMOUS,
    Forbidden,
    Gateway,
    GatewayError,
    NonNegative,
    Principal,
    Unauthorized,
    __version__,
    hookimpl,
    json_response,
)
from gateway.console.recent import RecentRequests

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
_CAPABILITIES = {"keys": "/admin/keys", "spend": "/admin/spend"}


@attrs.frozen
class ConsoleConfig:
    """``[console]``: the console in the browser at ``/ui``."""

    #: Serve the console at ``/ui`` (and redirect ``/`` there). Unset: on when ``[server] host``
    #: is a loopback address (``127.0.0.1``, ``::1``, ``localhost``), off when the gateway
    #: listens on other addresses.
    enabled: bool | None = None
    #: Chat requests the Requests view lists (the latest, kept in each process's memory);
    #: 0: none are kept and the view is off.
    recent_requests: NonNegative = NonNegative(200)


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


def credential(request: web.Request) -> str | None:
    """The key a request presents: ``Authorization: Bearer``, else ``x-api-key``."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-api-key") or None


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class Console:
    """The console's handlers.

    Who may do what: the playground is for keys the gateway's authenticators accept (anyone on
    a gateway without keys); the admin views are for the ``[admin] keys`` of the admin API when
    it has any, else for anyone on a gateway without keys, else for nobody. The console's own
    routes therefore check keys themselves (``auth=False``), since an admin key is no model key.
    """

    def __init__(self, gateway: Gateway, assets: dict[str, Asset], recent: RecentRequests) -> None:
        self.gateway = gateway
        self.assets = assets
        self.recent = recent
        admin = gateway.config.sections.get("admin")
        self.admin_keys = [_digest(k) for k in getattr(admin, "keys", ())]

    def is_admin(self, key: str | None) -> bool:
        if self.admin_keys:
            d = _digest(key) if key else b""
            return any(hmac.compare_digest(d, a) for a in self.admin_keys)
        return not self.gateway.auth_enabled

    async def principal(self, request: web.Request, key: str | None) -> Principal | None:
        """The model key presenting ``key`` (``ANONYMOUS`` on a gateway without keys)."""
        if not self.gateway.auth_enabled:
            return ANONYMOUS
        for auth in self.gateway.authenticators:
            try:
                found = await auth.authenticate(request, key)
            except GatewayError:
                return None
            if found is not None:
                return found
        return None

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
        auth = self.gateway.auth_enabled or bool(self.admin_keys)
        return json_response({"auth": auth, "version": __version__})

    async def whoami(self, request: web.Request) -> web.Response:
        """Who the key is and what the page may offer it: its name, whether it may use the
        playground (a model key) and the admin views, the agents it may run, and which admin
        capabilities this gateway has."""
        key = credential(request)
        principal = await self.principal(request, key)
        admin = self.is_admin(key)
        if principal is None and not admin:
            raise Unauthorized("Invalid API key." if key else "Missing API key.")
        agents = [
            {
                "name": agent.name,
                "description": agent.description,
                "tools": [
                    {"name": t.name, "description": t.description} for t in agent.definitions
                ],
            }
            for agent in self.gateway.agents.values()
            if principal is not None and principal.may_use(agent.name)
        ]
        return json_response(
            {
                "name": principal.name if principal is not None else "admin",
                "admin": admin,
                "playground": principal is not None,
                "auth": self.gateway.auth_enabled or bool(self.admin_keys),
                "version": __version__,
                "agents": agents,
                "capabilities": self._capabilities(request.app) if admin else {},
            }
        )

    def _capabilities(self, app: web.Application) -> dict[str, bool]:
        paths = {resource.canonical for resource in app.router.resources()}
        found = {name: path in paths for name, path in _CAPABILITIES.items()}
        return {**found, "requests": self.recent.records.maxlen != 0}

    async def routes(self, request: web.Request) -> web.Response:
        """The public model names and where each goes (the targets' live state is /health's)."""
        self._admin(request)
        config = self.gateway.config
        kinds = {name: backend.kind for name, backend in config.backends.items()}
        models = []
        for name, model in config.models.items():
            targets = [
                {
                    "backend": t.backend,
                    "kind": kinds.get(t.backend),
                    "upstream_model": t.upstream_model or model.upstream_model,
                }
                for t in model.target_list()
            ]
            # The first target's backend, as a one-target model has it; all of them in targets.
            models.append(
                {"model": name, **targets[0], "description": model.description}
                | {"targets": targets, "strategy": model.strategy}
            )
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

    async def requests(self, request: web.Request) -> web.Response:
        """The latest chat requests this process handled, newest first."""
        self._admin(request)
        return json_response({"data": self.recent.newest_first()})

    def _admin(self, request: web.Request) -> None:
        key = credential(request)
        if self.is_admin(key):
            return
        if key is None:
            raise Unauthorized("Missing API key.", code="missing_api_key")
        raise Forbidden("This view needs an admin key.", code="admin_only")


@hookimpl
def gateway_config_sections(register: Any) -> None:
    register("console", ConsoleConfig)


@hookimpl
def gateway_register_filters(register: Any) -> None:
    def factory(gateway: Gateway) -> RecentRequests | None:
        cfg: ConsoleConfig = gateway.config.section("console")
        if not enabled(cfg, gateway.config.server.host) or not cfg.recent_requests:
            return None
        return RecentRequests(int(cfg.recent_requests))

    register("console.recent", factory)


@hookimpl
def gateway_configure_app(app: web.Application, gateway: Gateway) -> None:
    cfg: ConsoleConfig = gateway.config.section("console")
    if not enabled(cfg, gateway.config.server.host):
        return
    recent = next((f for f in gateway.filters if isinstance(f, RecentRequests)), None)
    console = Console(gateway, load_assets(), recent or RecentRequests(0))
    add = gateway.add_route
    add("GET", "/", console.to_console, name="console", auth=False)
    add("GET", "/ui", console.to_console, name="console", auth=False)
    add("GET", "/ui/", console.index, name="console", auth=False)
    add("GET", "/ui/{name}", console.asset, name="console", auth=False)
    # The console checks keys itself: an admin key is no model key (see Console).
    for path, handler in (
        ("/ui/api/gateway", console.about),
        ("/ui/api/whoami", console.whoami),
        ("/ui/api/routes", console.routes),
        ("/ui/api/plugins", console.plugins),
        ("/ui/api/requests", console.requests),
    ):
        add("GET", path, handler, name="console_api", auth=False)
