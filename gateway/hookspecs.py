"""Every hook a hookgate plugin can implement, grouped by the phase that calls it.

Hooks are declarative: each gets a ``register`` callable of one shape,
``register(name, value, config=None)`` (:class:`~gateway.core.registry.Register`); the plugin
calls it for each thing it provides, and the core collects the results, checks name clashes and
compiles the plain lists and dicts the request path reads. pluggy is called while the app is
built, never per request. Implementations are plain (synchronous) functions; none of these hooks
is ``firstresult`` and none has wrappers, so every implementation runs.

Order: the registration hooks are called once per plugin, in the order the plugins were
registered with the plugin manager (installed entry points, then the plugins passed explicitly,
such as ``create_app(plugins=[...])``), ``tryfirst`` implementations before the others and
``trylast`` ones after; within a plugin, things are registered in the order it calls
``register``. That order matters only where the core keeps one: authenticators are asked in it,
and filters run in ascending :attr:`~gateway.core.filters.Filter.order`, then in it.

A plugin is a module (or object) with functions marked ``@gateway.hookimpl`` and named like the
specs below; it need implement only the hooks it uses.

Versions and deprecations: hookgate follows semantic versioning for its public API, which is the
names ``gateway`` exports and the hook specs in this module. Before 1.0 a minor release may
change them, but never silently: a changed or renamed hook or ``register`` shape keeps working,
with a :class:`DeprecationWarning` that names the plugin and the new form, for at least two
minor releases, and the changelog says so. Each spec below says in which version it was added
(``versionadded``), changed (``versionchanged``) or deprecated (``deprecated``).
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
        RegisterListener,
        RegisterProtocol,
        RegisterSection,
        RegisterSessionStore,
        RegisterTool,
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
    ``register(name, ConfigClass)`` maps the table ``[name]`` to a frozen attrs class (or a type
    such as ``dict[str, SomeClass]`` for a table of named tables). The class's defaults apply
    when the section is absent; unknown keys in it are errors. A section may have only one
    owner; a second claim is a startup error naming both plugins. The structured value is then
    available as ``gateway.config.section(name)``. Returns nothing.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2
       ``register`` is the one shape of every hook, ``register(name, value, config=None)``;
       a config class is refused here.
    """


# --- registration: called once while the app is built -----------------------------------------


@hookspec
def gateway_register_protocols(register: RegisterProtocol) -> None:
    """Register protocol adapters: the wire formats clients speak.

    Called once per application, while it is built (``hookgate check`` too).
    ``register(name, AdapterClass)``: ``name`` is the protocol's (``"openai"``,
    ``"anthropic"``, ...) and must equal the class's ``name``; the class is instantiated once
    with the :class:`~gateway.core.app.Gateway` and adds its routes in ``setup(app)``. Adapters
    decode requests into the canonical model, run them through the pipeline, and encode answers
    and errors in their protocol. Returns nothing.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2
       ``register(name, AdapterClass)``; the former ``register(AdapterClass)`` still works, with
       a :class:`DeprecationWarning`.
    """


@hookspec
def gateway_register_backends(register: RegisterBackend) -> None:
    """Register backend kinds: what ``kind = "..."`` in ``[backends.<name>]`` may say.

    Called once per application, while it is built (``hookgate check`` too).
    ``register(kind, factory, ConfigClass)`` (the config class may be given as ``config=``, and
    defaults to :class:`~gateway.backends.base.BackendConfig`): it is the frozen attrs class of
    a ``[backends.<name>]`` table of this kind and must have a ``kind`` field;
    ``factory(name, config, gateway)`` returns a :class:`~gateway.backends.base.Backend`, once
    per configured backend, at startup. Two plugins registering one kind is a startup error.
    Returns nothing.

    .. versionadded:: 0.1
    """


@hookspec
def gateway_register_auth(register: RegisterAuth) -> None:
    """Register authenticators, asked in order for every request to a route that needs auth.

    Called once per application, while it is built (``hookgate check`` too).
    ``register(name, factory)``: ``factory(gateway)`` returns an
    :class:`~gateway.auth.base.Authenticator`, or ``None`` when its configuration leaves it off.
    Any enabled authenticator turns authentication on (API keys are only the built-in one);
    when none is enabled the gateway is open, with a loud warning at startup. For each request
    every enabled authenticator is asked in registration order with
    ``authenticate(request, credential)``, where ``credential`` is the presented bearer token,
    ``x-api-key`` or ``?token=``, or ``None``: the first that returns a principal wins, one that
    raises a :class:`~gateway.errors.GatewayError` ends the request with that error, and when
    all decline the answer is 401. Returns nothing.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2
       Authenticators are asked even when the request presents no credential (``None``), so
       they may authenticate by a client certificate, a cookie or a signature.
    """


@hookspec
def gateway_register_filters(register: RegisterFilter) -> None:
    """Register filters that see every chat request and answer.

    Called once per application, while it is built (``hookgate check`` too).
    ``register(name, factory)``: ``factory(gateway)`` returns a
    :class:`~gateway.core.filters.Filter` or ``None`` (off by configuration). Filters run in
    ascending ``order``, then in registration order; only the methods a filter overrides are
    put on the request path. A filter that overrides ``on_event`` rewrites streams, which turns
    off the raw relay of same-protocol streams; ``on_end`` runs once at the end of every
    request, whatever its outcome. Returns nothing.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2
       ``Filter.on_event`` is async (a synchronous one still works, with a
       :class:`DeprecationWarning`), and ``Filter.on_end`` was added.
    """


@hookspec
def gateway_register_session_stores(register: RegisterSessionStore) -> None:
    """Register conversation stores that ``[sessions] store = "..."`` may name.

    Called once per application, while it is built (``hookgate check`` too).
    ``register(name, factory)``: ``factory(gateway)`` returns the store, created at startup.
    Returns nothing.

    .. versionadded:: 0.1
    """


@hookspec
def gateway_register_webhook_verifiers(register: RegisterVerifier) -> None:
    """Register webhook signature verifiers that ``[webhooks.<name>] verifier = "..."`` may name.

    Called once per application, while it is built (``hookgate check`` too).
    ``register(name, factory)``: ``factory(config)`` gets one webhook's
    :class:`~gateway.triggers.webhooks.config.WebhookConfig` and returns a
    :class:`~gateway.triggers.webhooks.verifier.Verifier` (raising ``ValueError`` for options it
    cannot use), once per webhook, at startup. The verifier checks each delivery's signature on
    the raw body and reads its type and delivery id. Returns nothing.

    .. versionadded:: 0.1
    """


@hookspec
def gateway_register_listeners(register: RegisterListener) -> None:
    """Register listener kinds: what ``kind = "..."`` in ``[listeners.<name>]`` may say.

    Called once per application, while it is built (``hookgate check`` too).
    ``register(kind, factory, ConfigClass)``: the config class is required; it is the frozen
    attrs class of one ``[listeners.<name>]`` table of this kind (subclass
    :class:`~gateway.triggers.ListenerConfig`); ``factory(name, config, gateway)`` returns the
    listener (usually a :class:`~gateway.triggers.Listener` subclass, which is the factory
    itself), started and stopped with the app. Two plugins registering one kind is a startup
    error. Returns nothing.

    .. versionadded:: 0.2
       Formerly ``gateway_register_triggers``.
    """


@hookspec(
    warn_on_impl=DeprecationWarning(
        "gateway_register_triggers is deprecated since hookgate 0.2 and will be removed: "
        "implement gateway_register_listeners instead (the same register(kind, ListenerClass, "
        "ConfigClass))"
    )
)
def gateway_register_triggers(register: RegisterListener) -> None:
    """Register listener kinds, under the hook's former name.

    Called once per application, while it is built, exactly like
    :func:`gateway_register_listeners` (both fill one table of listener kinds). Returns nothing.

    .. versionadded:: 0.1
    .. deprecated:: 0.2
       Implement :func:`gateway_register_listeners`, named for what it registers; a plugin
       implementing this one gets a :class:`DeprecationWarning` when it is registered.
    """


@hookspec
def gateway_register_tools(register: RegisterTool) -> None:
    """Register tools that agents may use by name.

    Called once per application, while it is built (``hookgate check`` too).
    ``register(name, tool)``: a function decorated with :func:`gateway.agents.tool`, or a plain
    callable (sync or async) whose schema then comes from its signature and docstring. It is
    registered, and shown to models, under ``name``, whatever the function's or the tool's own
    name; an agent's ``tools`` entry without a dot or colon names a registered tool. Two
    plugins registering one name is a startup error. Returns nothing.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2
       ``register(name, tool)``; the former ``register(tool)`` (named after the tool) still
       works, with a :class:`DeprecationWarning`.
    """


@hookspec
def gateway_register_agents(register: RegisterAgent) -> None:
    """Register agents declared in Python, served exactly like ``[agents.<name>]`` tables.

    Called once per application, while it is built (``hookgate check`` too).
    ``register(name, agent)``: a :class:`gateway.agents.Agent` (a model, instructions, tools,
    limits) whose own name is ``name`` (a mismatch is a startup error). Each agent becomes a
    model name every protocol can call and an AG-UI agent. A name that is already an agent or an
    exact ``[models]`` name is a startup error. Returns nothing.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2
       ``register(name, agent)``; the former ``register(agent)`` still works, with a
       :class:`DeprecationWarning`.
    """


# --- application: called once when the aiohttp application exists ---------------------------


@hookspec
def gateway_configure_app(app: web.Application, gateway: Gateway) -> None:
    """Add to the finished application: routes, ``app.cleanup_ctx`` entries, signals.

    Called once per application, after protocols, backends and filters are compiled, for every
    plugin in pluggy's order (the last registered first; ``tryfirst`` and ``trylast`` apply).
    This is the lifecycle hook: a plugin that holds resources (clients, background tasks)
    appends an async generator to ``app.cleanup_ctx`` here, so they open on startup and close on
    shutdown. Routes added with ``gateway.add_route`` get the gateway's error mapping and
    metrics. Returns nothing.

    .. versionadded:: 0.1
    """
