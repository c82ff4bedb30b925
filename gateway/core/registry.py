"""What plugins registered, collected once at startup, with clashes reported by name.

Each ``gateway_register_*`` hook receives one of the ``register`` callables below. The registry
remembers which plugin registered what, so a clash names both plugins.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import attrs

if TYPE_CHECKING:
    import pluggy

    from gateway.backends.base import Backend
    from gateway.core.app import Gateway


class RegistryError(Exception):
    """Two plugins claim one name, or a registration is malformed."""


class RegisterSection(Protocol):
    def __call__(self, name: str, type: Any) -> None: ...


class RegisterProtocol(Protocol):
    def __call__(self, adapter: type) -> None: ...


class RegisterBackend(Protocol):
    def __call__(
        self, kind: str, factory: Callable[[str, Any, Gateway], Backend], config: type | None = None
    ) -> None: ...


class RegisterAuth(Protocol):
    def __call__(self, name: str, factory: Callable[[Gateway], Any]) -> None: ...


class RegisterFilter(Protocol):
    def __call__(self, name: str, factory: Callable[[Gateway], Any]) -> None: ...


class RegisterSessionStore(Protocol):
    def __call__(self, name: str, factory: Callable[[Gateway], Any]) -> None: ...


class RegisterVerifier(Protocol):
    def __call__(self, name: str, factory: Callable[[Any], Any]) -> None: ...


class RegisterTool(Protocol):
    def __call__(self, tool: Callable[..., Any]) -> None: ...


class RegisterAgent(Protocol):
    def __call__(self, agent: Any) -> None: ...


class RegisterTrigger(Protocol):
    def __call__(self, kind: str, factory: Callable[..., Any], config: type) -> None: ...


@attrs.frozen
class Registration:
    """One registered thing, and the plugin that registered it."""

    name: str
    value: Any
    plugin: str
    config: Any = None


class Table:
    """Registrations of one sort, keyed by name; a second registration of a name is an error."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.items: dict[str, Registration] = {}

    def add(self, name: str, value: Any, plugin: str, config: Any = None) -> None:
        if not isinstance(name, str) or not name:
            raise RegistryError(f"plugin {plugin!r} registered a {self.what} without a name")
        old = self.items.get(name)
        if old is not None:
            raise RegistryError(
                f"{self.what} {name!r} is registered by both plugin {old.plugin!r} and "
                f"plugin {plugin!r}; disable one of them in [plugins] disable"
            )
        self.items[name] = Registration(name, value, plugin, config)

    def __contains__(self, name: object) -> bool:
        return name in self.items

    def __getitem__(self, name: str) -> Registration:
        return self.items[name]

    def get(self, name: str) -> Registration | None:
        return self.items.get(name)

    def names(self) -> list[str]:
        return list(self.items)

    def values(self) -> list[Registration]:
        return list(self.items.values())


class Registry:
    """Everything the enabled plugins registered."""

    def __init__(self) -> None:
        self.sections = Table("config section")
        self.protocols = Table("protocol")
        self.backends = Table("backend kind")
        self.auth = Table("authenticator")
        self.filters = Table("filter")
        self.session_stores = Table("session store")
        self.verifiers = Table("webhook verifier")
        self.triggers = Table("trigger kind")
        self.tools = Table("tool")
        self.agents = Table("agent")

    @classmethod
    def collect_sections(cls, pm: pluggy.PluginManager) -> Registry:
        """A registry holding only the config sections (the configuration phase)."""
        reg = cls()
        _call(
            pm,
            "gateway_config_sections",
            lambda p: lambda name, type: reg.sections.add(name, type, p),
        )
        return reg

    def collect(self, pm: pluggy.PluginManager) -> None:
        """Call every registration hook once (the app-building phase)."""
        _call(
            pm,
            "gateway_register_protocols",
            lambda p: (
                lambda adapter: self.protocols.add(getattr(adapter, "name", None), adapter, p)
            ),
        )
        _call(pm, "gateway_register_backends", lambda p: self._backend(p))
        _call(
            pm,
            "gateway_register_auth",
            lambda p: lambda name, factory: self.auth.add(name, factory, p),
        )
        _call(
            pm,
            "gateway_register_filters",
            lambda p: lambda name, factory: self.filters.add(name, factory, p),
        )
        _call(
            pm,
            "gateway_register_session_stores",
            lambda p: lambda name, factory: self.session_stores.add(name, factory, p),
        )
        _call(
            pm,
            "gateway_register_webhook_verifiers",
            lambda p: lambda name, factory: self.verifiers.add(name, factory, p),
        )
        _call(
            pm,
            "gateway_register_triggers",
            lambda p: lambda kind, factory, config: self.triggers.add(kind, factory, p, config),
        )
        _call(pm, "gateway_register_tools", lambda p: self._tool(p))
        _call(
            pm,
            "gateway_register_agents",
            lambda p: lambda agent: self.agents.add(getattr(agent, "name", None), agent, p),
        )

    def _backend(self, plugin: str) -> RegisterBackend:
        from gateway.backends.base import BackendConfig

        def register(
            kind: str, factory: Callable[..., Backend], config: type | None = None
        ) -> None:
            cfg = config or BackendConfig
            if not attrs.has(cfg) or "kind" not in attrs.fields_dict(cfg):
                raise RegistryError(
                    f"plugin {plugin!r}: the config class of backend kind {kind!r} must be an attrs "
                    "class with a 'kind' field (subclass gateway.BackendConfig)"
                )
            self.backends.add(kind, factory, plugin, cfg)

        return register

    def _tool(self, plugin: str) -> RegisterTool:
        def register(tool: Callable[..., Any]) -> None:
            from gateway.agents.tools import as_tool

            try:
                made = as_tool(tool)
            except (TypeError, ValueError) as exc:
                raise RegistryError(
                    f"plugin {plugin!r} registered a tool that is not one: {exc}"
                ) from exc
            self.tools.add(made.name, made, plugin)

        return register


def _call(
    pm: pluggy.PluginManager, hook: str, make_register: Callable[[str], Callable[..., None]]
) -> None:
    """Call ``hook`` on each plugin separately, so every registration knows its plugin's name."""
    caller = getattr(pm.hook, hook)
    for impl in caller.get_hookimpls():
        # An implementation may accept a subset of the spec's arguments, as pluggy allows.
        impl.function(*[make_register(impl.plugin_name) for _ in impl.argnames])
