"""Every hook a hookgate plugin can implement, grouped by the phase that calls it.

Hooks are declarative: each gets a ``register`` callable, the plugin calls it for each thing it
provides, and the core collects the results, checks name clashes and compiles the plain lists and
dicts the request path reads. pluggy is called while the app is built, never per request.
Implementations are plain (synchronous) functions; none of these hooks is ``firstresult`` and
none has wrappers, so every implementation runs and the order of calls is pluggy's (last
registered first), which only matters for the order of filters (see ``Filter.order``).

A plugin is a module (or object) with functions marked ``@gateway.hookimpl`` and named like the
specs below; it need implement only the hooks it uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from aiohttp import web

    from gateway.core.app import Gateway
    from gateway.core.registry import (
        RegisterAgent,
        RegisterAuth,
        RegisterBackend,
        RegisterFilter,
        RegisterProtocol,
        RegisterSection,
        RegisterSessionStore,
        RegisterTool,
        RegisterTrigger,
        RegisterVerifier,
    )

PROJECT = "hookgate"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --- configuration: called once when the configuration file is read --------------------------


@hookspec
def gateway_config_sections(register: RegisterSection) -> None:
    """Declare the top-level TOML sections this plugin owns.

    Called once, before the configuration is structured, with the plugins that are enabled.
    ``register(name, type)`` maps the table ``[name]`` to a frozen attrs class (or a type such as
    ``dict[str, SomeClass]`` for a table of named tables). The class's defaults apply when the
    section is absent; unknown keys in it are errors. A section may have only one owner; a second
    claim is a startup error naming both plugins. The structured value is then available as
    ``gateway.config.section(name)``. Returns nothing.
    """


# --- registration: called once while the app is built -----------------------------------------


@hookspec
def gateway_register_protocols(register: RegisterProtocol) -> None:
    """Register protocol adapters: the wire formats clients speak.

    Called once per application, while it is built (``hookgate check`` too).
    ``register(adapter_class)``: the class has a unique ``name`` (``"openai"``, ``"anthropic"``,
    ...), is instantiated once with the :class:`~gateway.core.app.Gateway`, and adds its routes in
    ``setup(app)``. Adapters decode requests into the canonical model, run them through the
    pipeline, and encode answers and errors in their protocol. Returns nothing.
    """


@hookspec
def gateway_register_backends(register: RegisterBackend) -> None:
    """Register backend kinds: what ``kind = "..."`` in ``[backends.<name>]`` may say.

    Called once per application, while it is built (``hookgate check`` too).
    ``register(kind, factory, config=BackendConfig)``: ``config`` is the frozen attrs class for a
    ``[backends.<name>]`` table of this kind (it must have a ``kind`` field); ``factory(name,
    config, gateway)`` returns a :class:`~gateway.backends.base.Backend`, once per configured backend, at
    startup. Two plugins registering one kind is a startup error. Returns nothing.
    """


@hookspec
def gateway_register_auth(register: RegisterAuth) -> None:
    """Register authenticators, tried in order for every request that needs a key.

    Called once per application, while it is built (``hookgate check`` too).
    ``register(name, factory)``: ``factory(gateway)`` returns an
    :class:`~gateway.auth.base.Authenticator` or ``None`` when its configuration leaves it
    off. The first authenticator that recognises the request's credentials decides; when none is
    enabled the gateway is open (with a loud warning at startup). Returns nothing.
    """


@hookspec
def gateway_register_filters(register: RegisterFilter) -> None:
    """Register filters that see every chat request and answer.

    Called once per application, while it is built (``hookgate check`` too).
    ``register(name, factory)``: ``factory(gateway)`` returns a :class:`~gateway.core.filters.Filter`
    or ``None`` (off by configuration). Filters run in ascending ``order``; only the methods a
    filter overrides are put on the request path. A filter that overrides ``on_event`` rewrites
    streams, which turns off the raw relay of same-protocol streams. Returns nothing.
    """


@hookspec
def gateway_register_session_stores(register: RegisterSessionStore) -> None:
    """Register conversation stores that ``[sessions] store = "..."`` may name.

    Called once per application, while it is built (``hookgate check`` too).
    ``register(name, factory)``: ``factory(gateway)`` returns the store, created at startup.
    Returns nothing.
    """


@hookspec
def gateway_register_webhook_verifiers(register: RegisterVerifier) -> None:
    """Register webhook signature verifiers that ``[webhooks.<name>] verifier = "..."`` may name.

    Called once per application, while it is built (``hookgate check`` too).
    ``register(name, factory)``: ``factory(config)`` gets one webhook's
    :class:`~gateway.triggers.webhooks.config.WebhookConfig` and returns a
    :class:`~gateway.triggers.webhooks.verifier.Verifier` (raising ``ValueError`` for options it cannot
    use), once per webhook, at startup. The verifier checks each delivery's signature on the raw
    body and reads its type and delivery id. Returns nothing.
    """


@hookspec
def gateway_register_triggers(register: RegisterTrigger) -> None:
    """Register listener kinds: what ``kind = "..."`` in ``[listeners.<name>]`` may say.

    Called once per application, while it is built (``hookgate check`` too).
    ``register(kind, factory, config)``: ``config`` is the frozen attrs class of one
    ``[listeners.<name>]`` table of this kind (subclass
    :class:`~gateway.triggers.ListenerConfig`); ``factory(name, config, gateway)`` returns the
    listener (usually a :class:`~gateway.triggers.Listener` subclass, which is the factory
    itself), started and stopped with the app. Two plugins registering one kind is a startup
    error. Returns nothing.
    """


@hookspec
def gateway_register_tools(register: RegisterTool) -> None:
    """Register tools that agents may use by name.

    Called once per application, while it is built (``hookgate check`` too).
    ``register(tool)``: a function decorated with :func:`gateway.agents.tool`, or a plain
    callable (sync or async) whose schema then comes from its signature and docstring. It is
    registered under the tool's name; an agent's ``tools`` entry without a dot or colon names a
    registered tool. Two plugins registering one name is a startup error. Returns nothing.
    """


@hookspec
def gateway_register_agents(register: RegisterAgent) -> None:
    """Register agents declared in Python, served exactly like ``[agents.<name>]`` tables.

    Called once per application, while it is built (``hookgate check`` too).
    ``register(agent)``: a :class:`gateway.agents.Agent` (a model, instructions, tools, limits).
    Each agent becomes a model name every protocol can call and an AG-UI agent. A name that is
    already an agent or an exact ``[models]`` name is a startup error. Returns nothing.
    """


# --- application: called once when the aiohttp application exists ---------------------------


@hookspec
def gateway_configure_app(app: web.Application, gateway: Gateway) -> None:
    """Add to the finished application: routes, ``app.cleanup_ctx`` entries, signals.

    Called once per application, after protocols, backends and filters are compiled. This is the
    lifecycle hook: a plugin that holds resources (clients, background tasks) appends an async
    generator to ``app.cleanup_ctx`` here, so they open on startup and close on shutdown. Routes
    added with ``gateway.add_route`` get the gateway's error mapping and metrics. Returns nothing.
    """
