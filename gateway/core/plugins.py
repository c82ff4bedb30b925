"""The plugin manager: one per application, filled from the ``hookgate`` entry-point group.

The core distribution declares its built-in plugins in that group too (``setup.cfg``), so
built-ins and third-party plugins are found, listed and disabled alike. With autoload off (tests,
embedders) the caller passes the plugins explicitly; :data:`BUILTINS` names the built-in ones.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

import attrs
import pluggy

from gateway import hookspecs

GROUP = hookspecs.PROJECT

#: The built-in plugins, by the name they have in the entry-point group.
BUILTINS: dict[str, str] = {
    "protocols.openai": "gateway.protocols.openai.adapter",
    "protocols.anthropic": "gateway.protocols.anthropic.adapter",
    "protocols.openai_responses": "gateway.protocols.openai.responses_adapter",
    "protocols.agui": "gateway.protocols.agui.adapter",
    "protocols.a2a": "gateway.protocols.a2a.adapter",
    "backends.echo": "gateway.backends.echo",
    "backends.openai": "gateway.backends.openai",
    "backends.anthropic": "gateway.backends.anthropic",
    "backends.openai_responses": "gateway.backends.openai_responses",
    "auth.keys": "gateway.auth.keys",
    "admin": "gateway.admin",
    "keys": "gateway.keys.plugin",
    "ops.health": "gateway.ops.health",
    "ops.metrics": "gateway.ops.metrics",
    "ops.openapi": "gateway.ops.openapi",
    "sessions": "gateway.sessions.history",
    "sessions.memory": "gateway.sessions.memory",
    "sessions.redis": "gateway.sessions.redis",
    "limits": "gateway.limits.filter",
    "spend": "gateway.spend.plugin",
    "telemetry": "gateway.telemetry.plugin",
    "request_logs": "gateway.requestlog.plugin",
    "agents": "gateway.agents.plugin",
    "mcp": "gateway.mcp.plugin",
    "triggers": "gateway.triggers.plugin",
    "triggers.pollers": "gateway.triggers.pollers",
    "listeners.redis_pubsub": "gateway.triggers.listeners.redis_pubsub",
    "listeners.redis_stream": "gateway.triggers.listeners.redis_stream",
    "listeners.sse": "gateway.triggers.listeners.sse",
    "listeners.nats": "gateway.triggers.listeners.nats",
    "webhooks": "gateway.triggers.webhooks.endpoint",
    "webhooks.stripe": "gateway.triggers.webhooks.stripe",
    "webhooks.slack": "gateway.triggers.webhooks.slack",
    "webhooks.github": "gateway.triggers.webhooks.github",
    "webhooks.standard": "gateway.triggers.webhooks.standard",
    "webhooks.hmac_sha256": "gateway.triggers.webhooks.hmac_sha256",
    "console": "gateway.console.plugin",
}


def builtin_plugins() -> list[tuple[str, ModuleType]]:
    """The built-in plugin modules with their names, for an explicit plugin list."""
    return [(name, importlib.import_module(mod)) for name, mod in BUILTINS.items()]


def get_plugin_manager(
    *, autoload: bool = True, disable: Iterable[str] = (), plugins: Iterable[Any] = ()
) -> pluggy.PluginManager:
    """A new plugin manager with the hook specs, the installed plugins and ``plugins``.

    ``plugins`` items are modules, objects, ``(name, plugin)`` pairs or import paths. Names in
    ``disable`` are blocked, whichever way they would have come in. When autoload finds none of
    the built-ins (hookgate run from a source tree that was never installed), they are
    registered from :data:`BUILTINS` so the gateway still works.
    """
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    for name in disable:
        pm.set_blocked(name)
    if autoload:
        pm.load_setuptools_entrypoints(GROUP)
        if not any(pm.has_plugin(name) or pm.is_blocked(name) for name in BUILTINS):
            plugins = [*BUILTINS.items(), *plugins]
    for item in plugins:
        name, plugin = _named(item)
        if pm.is_blocked(name) or pm.is_registered(plugin):
            continue
        pm.register(plugin, name=name)
    return pm


def _named(item: Any) -> tuple[str, Any]:
    if isinstance(item, tuple):
        name, plugin = item
    else:
        name, plugin = None, item
    if isinstance(plugin, str):
        plugin = importlib.import_module(plugin)
    if name is None:
        if isinstance(plugin, ModuleType):
            name = next((n for n, m in BUILTINS.items() if m == plugin.__name__), plugin.__name__)
        else:
            name = getattr(plugin, "name", None) or type(plugin).__name__
    return name, plugin


@attrs.frozen
class PluginInfo:
    """One plugin as ``hookgate plugins`` shows it."""

    name: str
    version: str | None
    distribution: str | None
    hooks: tuple[str, ...]
    enabled: bool


def describe(pm: pluggy.PluginManager) -> list[PluginInfo]:
    """Every plugin: the registered ones, and those of the entry-point group left disabled."""
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    rows: list[PluginInfo] = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        dist = dists.get(id(plugin))
        hooks = tuple(sorted(h.name for h in pm.get_hookcallers(plugin) or ()))
        rows.append(
            PluginInfo(
                name,
                dist.version if dist else None,
                dist.metadata["name"] if dist else None,
                hooks,
                True,
            )
        )
    for ep in entry_points(group=GROUP):
        if pm.is_blocked(ep.name):
            ep_dist = ep.dist
            rows.append(
                PluginInfo(
                    ep.name,
                    ep_dist.version if ep_dist else None,
                    ep_dist.metadata["name"] if ep_dist else None,
                    (),
                    False,
                )
            )
    return sorted(rows, key=lambda r: (not r.enabled, r.name))
