"""What plugins registered, collected once at startup, with clashes reported by name.

Every ``gateway_register_*`` hook (and ``gateway_config_sections``) receives a ``register``
callable of one shape, :class:`Register`: ``register(name, value, config=None)``. The registry
remembers which plugin registered what, so a clash names both plugins, and checks each kind's
rules (a backend's config class, a tool's or an agent's own name) when the hook calls it.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias, TypeVar

import attrs

if TYPE_CHECKING:
    import pluggy

    from gateway.agents.agent import Agent
    from gateway.auth.base import Authenticator
    from gateway.backends.base import Backend
    from gateway.core.app import Gateway
    from gateway.core.filters import Filter
    from gateway.protocols.base import ProtocolAdapter
    from gateway.sessions.base import SessionStore
    from gateway.triggers.webhooks.verifier import Verifier

V = TypeVar("V", contravariant=True)


class RegistryError(Exception):
    """Two plugins claim one name, or a registration is malformed."""


class Register(Protocol[V]):
    """The ``register`` callable of every registration hook: ``register(name, value, config=None)``.

    ``name`` is what configuration (or a client) calls the thing; ``value`` is the thing, or the
    factory that builds it; ``config`` is the frozen attrs class of its TOML table, for the
    kinds that have one (backends, listeners). A second registration of a name is a startup
    error naming both plugins.
    """

    def __call__(self, name: str, value: V, config: type | None = None) -> None: ...


#: ``gateway_config_sections``: ``register("auth", AuthConfig)``.
RegisterSection: TypeAlias = Register[Any]
#: ``gateway_register_protocols``: ``register("openai", OpenAIProtocol)``.
RegisterProtocol: TypeAlias = Register["type[ProtocolAdapter]"]
#: ``gateway_register_backends``: ``register("openai", OpenAIBackend, OpenAIBackendConfig)``.
RegisterBackend: TypeAlias = Register["Callable[[str, Any, Gateway], Backend]"]
#: ``gateway_register_auth``: ``register("keys", factory)``.
RegisterAuth: TypeAlias = Register["Callable[[Gateway], Authenticator | None]"]
#: ``gateway_register_filters``: ``register("limits", factory)``.
RegisterFilter: TypeAlias = Register["Callable[[Gateway], Filter | None]"]
#: ``gateway_register_session_stores``: ``register("redis", factory)``.
RegisterSessionStore: TypeAlias = Register["Callable[[Gateway], SessionStore]"]
#: ``gateway_register_webhook_verifiers``: ``register("stripe", StripeVerifier)``.
RegisterVerifier: TypeAlias = Register["Callable[[Any], Verifier]"]
#: ``gateway_register_listeners``: ``register("nats", NatsListener, NatsConfig)``.
RegisterListener: TypeAlias = Register["Callable[..., Any]"]
#: The former name of :data:`RegisterListener` (``gateway_register_triggers``).
RegisterTrigger: TypeAlias = RegisterListener
#: ``gateway_register_tools``: ``register("web_search", fn)``.
RegisterTool: TypeAlias = Register["Callable[..., Any]"]
#: ``gateway_register_agents``: ``register("research", Agent(...))``.
RegisterAgent: TypeAlias = Register["Agent"]


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


#: Checks one registration of a kind: ``(name, value, config, plugin)`` -> ``(value, config)``
#: to keep; raises :class:`RegistryError`.
Check = Callable[[str, Any, Any, str], tuple[Any, Any]]


@attrs.frozen
class Kind:
    """How one registration hook's ``register`` behaves."""

    hook: str
    table: Table
    #: The call this kind documents, for error and deprecation messages.
    shape: str
    #: Whether ``config`` is refused, optional or required.
    config: Literal["none", "optional", "required"] = "none"
    #: For the deprecated one-argument shape ``register(value)``: the value's own name.
    legacy_name: Callable[[Any], Any] | None = None
    check: Check | None = None


_MISSING: Any = object()


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
        self.listeners = Table("listener kind")
        #: The same table under its former name.
        self.triggers = self.listeners
        self.tools = Table("tool")
        self.agents = Table("agent")

    @classmethod
    def collect_sections(cls, pm: pluggy.PluginManager) -> Registry:
        """A registry holding only the config sections (the configuration phase)."""
        reg = cls()
        kind = Kind("gateway_config_sections", reg.sections, "register(name, ConfigClass)")
        _call(pm, kind.hook, lambda plugin: reg._register(kind, plugin))
        return reg

    def collect(self, pm: pluggy.PluginManager) -> None:
        """Call every registration hook once (the app-building phase)."""
        listeners = Kind(
            "gateway_register_listeners",
            self.listeners,
            "register(kind, ListenerClass, ConfigClass)",
            config="required",
        )
        kinds = [
            Kind(
                "gateway_register_protocols",
                self.protocols,
                "register(name, AdapterClass)",
                legacy_name=lambda adapter: getattr(adapter, "name", None),
                check=_protocol,
            ),
            Kind(
                "gateway_register_backends",
                self.backends,
                "register(kind, factory, ConfigClass)",
                config="optional",
                check=_backend,
            ),
            Kind("gateway_register_auth", self.auth, "register(name, factory)"),
            Kind("gateway_register_filters", self.filters, "register(name, factory)"),
            Kind("gateway_register_session_stores", self.session_stores, "register(name, factory)"),
            Kind("gateway_register_webhook_verifiers", self.verifiers, "register(name, factory)"),
            listeners,
            attrs.evolve(listeners, hook="gateway_register_triggers"),
            Kind(
                "gateway_register_tools",
                self.tools,
                "register(name, function)",
                legacy_name=_tool_name,
                check=_tool,
            ),
            Kind(
                "gateway_register_agents",
                self.agents,
                "register(name, Agent(...))",
                legacy_name=lambda agent: getattr(agent, "name", None),
                check=_agent,
            ),
        ]
        for kind in kinds:
            _call(pm, kind.hook, functools.partial(self._register, kind))

    def _register(self, kind: Kind, plugin: str) -> Register[Any]:
        """The ``register`` callable ``plugin`` gets for ``kind``."""

        def register(name: Any = _MISSING, value: Any = _MISSING, config: Any = None) -> None:
            if value is _MISSING:
                if kind.legacy_name is None or isinstance(name, str) or name is _MISSING:
                    raise RegistryError(
                        f"plugin {plugin!r}: {kind.hook} takes {kind.shape}, not a single argument"
                    )
                value, name = name, kind.legacy_name(name)
                warnings.warn(
                    f"plugin {plugin!r}: register(value) in {kind.hook} is deprecated since "
                    f"hookgate 0.2 and will be removed; call {kind.shape} instead "
                    f"(here: register({name!r}, ...))",
                    DeprecationWarning,
                    stacklevel=2,
                )
            if kind.config == "none" and config is not None:
                raise RegistryError(
                    f"plugin {plugin!r}: {kind.hook} takes {kind.shape}, without a config class"
                )
            if kind.config == "required" and config is None:
                raise RegistryError(
                    f"plugin {plugin!r}: {kind.table.what} {name!r} needs its config class: "
                    f"{kind.shape}"
                )
            if kind.check is not None and isinstance(name, str):
                value, config = kind.check(name, value, config, plugin)
            kind.table.add(name, value, plugin, config)

        return register


def _protocol(name: str, adapter: Any, config: Any, plugin: str) -> tuple[Any, Any]:
    # The adapter's own name is the protocol a backend's raw frames are matched against.
    own = getattr(adapter, "name", None)
    if own and own != name:
        raise RegistryError(
            f"plugin {plugin!r} registered protocol {name!r}, but its adapter class is named "
            f"{own!r}: the names must match"
        )
    return adapter, config


def _backend(name: str, factory: Any, config: Any, plugin: str) -> tuple[Any, Any]:
    from gateway.config.sections import BackendConfig

    cfg = config or BackendConfig
    if not attrs.has(cfg) or "kind" not in attrs.fields_dict(cfg):
        raise RegistryError(
            f"plugin {plugin!r}: the config class of backend kind {name!r} must be an attrs "
            "class with a 'kind' field (subclass gateway.BackendConfig)"
        )
    return factory, cfg


def _tool_name(value: Any) -> Any:
    from gateway.tools.python import Tool

    return value.name if isinstance(value, Tool) else getattr(value, "__name__", None)


def _tool(name: str, value: Any, config: Any, plugin: str) -> tuple[Any, Any]:
    """A tool under the registered name (it wins over the function's or the tool's own)."""
    from gateway.tools.python import Tool

    try:
        if isinstance(value, Tool):
            made = value if value.name == name else _renamed(value, name)
        else:
            made = Tool(value, name=name)
    except (TypeError, ValueError) as exc:
        raise RegistryError(f"plugin {plugin!r} registered a tool that is not one: {exc}") from exc
    return made, config


def _renamed(tool: Any, name: str) -> Any:
    from gateway.tools.python import Tool

    return Tool(tool.fn, name=name, description=tool.description, timeout=tool.timeout)


def _agent(name: str, agent: Any, config: Any, plugin: str) -> tuple[Any, Any]:
    # An agent's name is its model name in every protocol: two names for one agent would leave
    # one of them unreachable, so a mismatch is refused rather than resolved.
    own = getattr(agent, "name", name)
    if own != name:
        raise RegistryError(
            f"plugin {plugin!r} registered agent {name!r}, but the Agent is named {own!r}: "
            "the names must match"
        )
    return agent, config


def _call(
    pm: pluggy.PluginManager, hook: str, make_register: Callable[[str], Callable[..., None]]
) -> None:
    """Call ``hook`` on each plugin separately, so every registration knows its plugin's name.

    Plugins are called in the order they were registered with the plugin manager (installed
    entry points, then the explicit plugin list), except that ``tryfirst`` implementations come
    before all others and ``trylast`` ones after.
    """
    impls = getattr(pm.hook, hook).get_hookimpls()
    first = [i for i in impls if i.tryfirst]
    last = [i for i in impls if i.trylast]
    # pluggy keeps trylast implementations first in its list, newest first.
    last.reverse()
    middle = [i for i in impls if not (i.tryfirst or i.trylast)]
    for impl in [*first, *middle, *last]:
        # An implementation may accept a subset of the spec's arguments, as pluggy allows.
        impl.function(*[make_register(impl.plugin_name) for _ in impl.argnames])
