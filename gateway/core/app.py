"""The application factory and the compiled state of one gateway.

:func:`init_app` turns a loaded configuration into an ``aiohttp`` application: it calls the
plugins' registration hooks once, builds backends, router, authenticators, filters and protocol
adapters, and compiles them into plain objects the request path reads. Nothing on the request
path calls pluggy or looks configuration up by string.
"""

from __future__ import annotations

import asyncio
import logging
import os
import warnings
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import attrs
from aiohttp import web

from gateway.config.sections import Config
from gateway.core.dispatch import Dispatcher
from gateway.core.filters import Filter
from gateway.core.jsonio import BODY_BUDGET, BodyBudget
from gateway.core.loading import Loaded, load
from gateway.core.metrics import Metrics
from gateway.core.middlewares import RequestBound, make_middlewares, make_stamp_headers
from gateway.core.pipeline import Pipeline
from gateway.core.plugins import BUILTINS, PluginInfo, builtin_plugins, describe
from gateway.core.router import Router
from gateway.errors import ConfigError
from gateway.exchange import RouteInfo
from gateway.routing import Circuits, MemoryCircuits, RedisCircuits
from gateway.state import SharedState

if TYPE_CHECKING:
    from gateway.auth.base import Authenticator
    from gateway.backends.base import Backend
    from gateway.canonical import Tool
    from gateway.protocols.base import ProtocolAdapter
    from gateway.tools import Tool as RunnableTool

log = logging.getLogger(__name__)


class ServedAgent(Protocol):
    """An agent this gateway serves under a model name, as protocols that list agents (A2A cards,
    for one) see it: its name, what it says of itself, and the tools its model is offered."""

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str | None: ...

    @property
    def definitions(self) -> Sequence[Tool]: ...


class ToolSource(Protocol):
    """Tools from outside the process whose set may change while the gateway runs (an MCP
    server's): a plugin lists its sources in :attr:`Gateway.tool_sources` in a ``tryfirst``
    ``gateway_configure_app``, and the agents plugin offers them to the agents that name them."""

    @property
    def name(self) -> str: ...

    def tools(self) -> Mapping[str, RunnableTool]:
        """The tools available now, by name (none while the source is unreachable)."""
        ...

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Have ``callback`` called whenever :meth:`tools` changes."""
        ...


class Gateway:
    """Everything one application compiled at startup. Plugins receive it in their factories
    and in ``gateway_configure_app``; handlers reach it as ``request.app[GATEWAY]``."""

    def __init__(
        self, loaded: Loaded, app: web.Application, metrics: Metrics | None = None
    ) -> None:
        self.config: Config = loaded.config
        self.pm = loaded.pm
        self.registry = loaded.registry
        self.app = app
        #: On a reload, ``metrics`` are the previous application's: their counts carry on.
        self.metrics = Metrics(previous=metrics)
        #: Shared state (memory or Redis) for plugins that keep any; see :mod:`gateway.state`.
        self.state = SharedState(self.config)
        #: Route -> what the middlewares need to know about it, filled by :meth:`add_route`.
        self.routes: dict[Any, RouteInfo] = {}
        self.backends: dict[str, Backend] = self._build_backends()
        self.router = Router(
            self.config.models, self.backends, circuits=self._circuits, metrics=self.metrics
        )
        self.authenticators: list[Authenticator] = self._build("auth", self.registry.auth.values())
        self.filters: list[Filter] = self._build("filters", self.registry.filters.values())
        self.pipeline = Pipeline(self.router, self.filters, self.metrics)
        self.protocols: dict[str, ProtocolAdapter] = {
            reg.name: reg.value(self) for reg in self.registry.protocols.values()
        }
        #: Tasks sending a stream now; ended with an error frame when a drain runs out of time.
        self.streams: set[asyncio.Task[Any]] = set()
        #: Tasks handling a request now (streams included); a drain waits for them.
        self.inflight: set[asyncio.Task[Any]] = set()
        self.draining_expired = False
        #: Requests in progress bounded in this process (the limits plugin sets it; the
        #: gateway's middlewares take and give).
        self.request_bound: RequestBound | None = None
        #: Once set (the application retires: a reload or a drain), every response says
        #: ``Connection: close`` and its connection closes after it.
        self.closing = False
        #: The agents served here, by name; the agents plugin fills it while the app is built.
        self.agents: dict[str, ServedAgent] = {}
        #: Live tool sources by name (MCP servers); filled before the agents are built.
        self.tool_sources: dict[str, ToolSource] = {}

    def _circuits(self) -> Circuits:
        """Where routes keep their targets' circuits: Redis when ``[redis]`` is set, so every
        instance agrees, else this process (each process then judges targets on its own)."""
        if self.state.redis_configured:
            return RedisCircuits(self.state.redis("models (circuit breaking)"))
        return MemoryCircuits()

    @property
    def auth_enabled(self) -> bool:
        return bool(self.authenticators)

    def _build_backends(self) -> dict[str, Backend]:
        backends: dict[str, Backend] = {}
        errors = []
        for name, cfg in self.config.backends.items():
            factory = self.registry.backends[cfg.kind].value
            try:
                backends[name] = factory(name, cfg, self)
            except (ValueError, TypeError, ImportError) as exc:
                errors.append(f"backends.{name}: {exc}")
        if errors:
            raise ConfigError(errors)
        return backends

    def _build(self, section: str, registrations: Iterable[Any]) -> list[Any]:
        built = []
        for reg in registrations:
            try:
                obj = reg.value(self)
            except (ValueError, TypeError, ImportError) as exc:
                raise ConfigError([f"{section}.{reg.name} (plugin {reg.plugin!r}): {exc}"]) from exc
            if obj is not None:
                built.append(obj)
        return built

    def add_route(
        self,
        method: str,
        path: str,
        handler: Callable[[web.Request], Any],
        *,
        name: str,
        protocol: ProtocolAdapter | None = None,
        auth: bool = True,
        query_token: bool = False,
    ) -> web.AbstractRoute:
        """Add a route that the gateway's middlewares know: its errors are shaped by
        ``protocol``, it needs a key when ``auth`` (and keys are configured), and its requests
        are counted under ``name``."""
        route = self.app.router.add_route(method, path, handler)
        self.routes[route] = RouteInfo(name, protocol, auth and self.auth_enabled, query_token)
        return route

    def describe_plugins(self) -> list[PluginInfo]:
        """Every plugin, as ``hookgate plugins`` lists it: name, version, distribution, hooks,
        and whether it runs. Built-ins passed in a plugin list (autoload off) are the core
        distribution's too."""
        from gateway import __version__

        return [
            attrs.evolve(p, version=__version__, distribution="hookgate")
            if p.version is None and p.name in BUILTINS
            else p
            for p in describe(self.pm)
        ]

    def end_streams(self) -> None:
        """The drain deadline passed: end every open stream with the protocol's error frame."""
        self.draining_expired = True
        for task in list(self.streams):
            task.cancel()

    def cancel_requests(self) -> None:
        """Past the drain deadline: cancel every request still running."""
        for task in list(self.inflight):
            task.cancel()

    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        """Start every backend with the app and close them when it stops (``cleanup_ctx``)."""
        started: list[Backend] = []
        try:
            for backend in self.backends.values():
                await backend.start()
                started.append(backend)
            yield
        finally:
            for backend in reversed(started):
                try:
                    await backend.close()
                except Exception:
                    log.exception("closing backend %r failed", backend.name)


GATEWAY: web.AppKey[Gateway] = web.AppKey("hookgate.gateway", Gateway)


def init_app(loaded: Loaded, *, metrics: Metrics | None = None) -> web.Application:
    """Build the application for a loaded configuration (see :func:`gateway.load`).

    ``metrics`` carries the metrics of a previous application on (a configuration reload).
    """
    cfg = loaded.config
    with warnings.catch_warnings():  # aiohttp deprecates passing a router: this one is
        # aiohttp's own, with plain paths looked up in one dict (see gateway.core.dispatch)
        warnings.simplefilter("ignore", DeprecationWarning)
        app = web.Application(client_max_size=cfg.server.max_body_size, router=Dispatcher())
    gateway = Gateway(loaded, app, metrics)
    app[GATEWAY] = gateway
    app[BODY_BUDGET] = BodyBudget(cfg.server.max_bodies_in_flight, cfg.server.body_timeout)
    app.middlewares.extend(make_middlewares(gateway))
    app.on_response_prepare.append(make_stamp_headers(gateway))
    app.cleanup_ctx.append(gateway.state.lifespan)  # first in, so closed after all its users
    app.cleanup_ctx.append(gateway.lifespan)
    for adapter in gateway.protocols.values():
        adapter.setup(app)
    loaded.pm.hook.gateway_configure_app(app=app, gateway=gateway)
    if not gateway.auth_enabled:
        log.warning(
            "no API keys configured: the gateway is OPEN to anyone who can reach it "
            "(set [auth] keys or HOOKGATE_API_KEY)"
        )
    return app


def create_app(
    data: Mapping[str, Any] | None = None,
    *,
    path: str | os.PathLike[str] | None = None,
    plugins: Iterable[Any] = (),
    builtins: bool = True,
    autoload: bool = False,
    env: Mapping[str, str] | None = None,
) -> web.Application:
    """An application from a configuration tree or file, for embedders and tests.

    Autoload is off by default here: the gateway runs the built-in plugins (unless
    ``builtins=False``) plus ``plugins``, whatever else is installed.
    """
    extra = [*builtin_plugins(), *plugins] if builtins else list(plugins)
    if data is None and path is None:
        data = {}
    loaded = load(path, data=data, env=env, plugins=extra, autoload=autoload)
    return init_app(loaded)
