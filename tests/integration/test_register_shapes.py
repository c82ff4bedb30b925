"""Registration: one ``register(name, value, config=None)`` shape for every hook, the deprecated
shapes and hook that keep working with a warning, each kind's checks, and the order of calls."""

from __future__ import annotations

import attrs
import pytest
from fakes.plain_protocol import PlainProtocol
from fakes.tools import get_weather

from gateway import (
    GATEWAY,
    Backend,
    BackendConfig,
    ConfigError,
    Filter,
    Finish,
    TextDelta,
    create_app,
    hookimpl,
)
from gateway.agents import Agent, tool
from gateway.triggers import Listener, ListenerConfig

MESSAGES = [{"role": "user", "content": "hello"}]


class Constant(Backend):
    async def stream(self, request, exchange):
        yield TextDelta(self.config.text)
        yield Finish("stop")


@attrs.frozen
class ConstantConfig(BackendConfig):
    kind: str = "constant"
    text: str = "constant"


@attrs.frozen
class CronConfig(ListenerConfig):
    kind: str = "cron"
    every: str = "1m"


class Cron(Listener):
    async def consume(self) -> None:
        raise NotImplementedError


@attrs.frozen
class ExtraConfig:
    enabled: bool = True


def _nothing(*_):
    return None


def _errors(config=None, plugins=()):
    with pytest.raises(ConfigError) as info:
        create_app(config or {}, plugins=plugins, env={})
    return info.value.errors


def test_every_kind_registers_with_one_shape():
    @tool(name="lookup")
    def lookup_order(order_id: str) -> str:
        """Look an order up."""
        return order_id

    class P:
        @hookimpl
        def gateway_config_sections(self, register):
            register("extra", ExtraConfig)

        @hookimpl
        def gateway_register_protocols(self, register):
            register("plain", PlainProtocol)

        @hookimpl
        def gateway_register_backends(self, register):
            register("constant", Constant, config=ConstantConfig)

        @hookimpl
        def gateway_register_auth(self, register):
            register("nobody", _nothing)

        @hookimpl
        def gateway_register_filters(self, register):
            register("nothing", _nothing)

        @hookimpl
        def gateway_register_session_stores(self, register):
            register("void", _nothing)

        @hookimpl
        def gateway_register_webhook_verifiers(self, register):
            register("never", _nothing)

        @hookimpl
        def gateway_register_listeners(self, register):
            register("cron", Cron, CronConfig)

        @hookimpl
        def gateway_register_tools(self, register):
            register("weather", get_weather)
            register("order", lookup_order)

        @hookimpl
        def gateway_register_agents(self, register):
            register("clerk", Agent("clerk", model="echo", tools=["order"]))

    gw = create_app({"extra": {"enabled": False}}, plugins=[("p", P())], env={})[GATEWAY]
    reg = gw.registry
    assert gw.config.section("extra") == ExtraConfig(enabled=False)
    assert reg.sections["extra"].plugin == "p"
    assert reg.protocols["plain"].value is PlainProtocol and "plain" in gw.protocols
    assert (reg.backends["constant"].value, reg.backends["constant"].config) == (
        Constant,
        ConstantConfig,
    )
    for table, name in [
        (reg.auth, "nobody"),
        (reg.filters, "nothing"),
        (reg.session_stores, "void"),
        (reg.verifiers, "never"),
    ]:
        assert (table[name].value, table[name].plugin) == (_nothing, "p")
    assert (reg.listeners["cron"].value, reg.listeners["cron"].config) == (Cron, CronConfig)
    assert reg.triggers is reg.listeners  # the table's former name, for its readers
    # The registered name wins over the function's and the tool's own.
    assert reg.tools["weather"].value.name == "weather"
    assert reg.tools["weather"].value.definition().name == "weather"
    assert reg.tools["order"].value.name == "order" and "lookup" not in reg.tools
    assert reg.tools["order"].value("A-1") == "A-1"
    assert reg.agents["clerk"].value.name == "clerk"


async def test_a_backend_registered_with_its_config_serves(make_gateway, sdk):
    class P:
        @hookimpl
        def gateway_register_backends(self, register):
            register("constant", Constant, ConstantConfig)

    client = await make_gateway(
        {
            "backends": {"c": {"kind": "constant", "text": "configured"}},
            "models": {"c": {"backend": "c"}},
        },
        plugins=[("p", P())],
    )
    out = await sdk(client).chat.completions.create(model="c", messages=MESSAGES)
    assert out.choices[0].message.content == "configured"


async def test_the_former_single_argument_shapes_still_work_with_a_warning(make_gateway, sdk):
    class Old:
        @hookimpl
        def gateway_register_protocols(self, register):
            register(PlainProtocol)

        @hookimpl
        def gateway_register_tools(self, register):
            register(get_weather)

        @hookimpl
        def gateway_register_agents(self, register):
            register(Agent("old-agent", model="echo", tools=["get_weather"]))

    with pytest.warns(DeprecationWarning) as warned:
        client = await make_gateway(plugins=[("old-plugin", Old())])
    messages = sorted(str(w.message) for w in warned)
    assert len(messages) == 3
    assert all(
        m.startswith("plugin 'old-plugin': register(value) in gateway_register_") for m in messages
    )
    assert (
        "call register(name, Agent(...)) instead (here: register('old-agent', ...))" in messages[0]
    )
    assert "call register(name, AdapterClass) instead (here: register('plain', ...))" in messages[1]
    assert (
        "call register(name, function) instead (here: register('get_weather', ...))"
        in (messages[2])
    )
    assert all(w.filename == __file__ for w in warned)  # they point at the plugin's call
    registry = client.server.app[GATEWAY].registry
    assert registry.tools["get_weather"].plugin == "old-plugin"
    resp = await client.post("/plain/echo", data="still served")
    assert (resp.status, await resp.text()) == (200, "still served")
    out = await sdk(client).chat.completions.create(model="old-agent", messages=MESSAGES)
    assert out.choices[0].message.content == "hello"


def test_the_deprecated_triggers_hook_still_registers_listener_kinds():
    class Old:
        @hookimpl
        def gateway_register_triggers(self, register):
            register("cron", Cron, CronConfig)

    with pytest.warns(DeprecationWarning, match="implement gateway_register_listeners instead"):
        gw = create_app(plugins=[("old", Old())], env={})[GATEWAY]
    assert gw.registry.listeners["cron"].plugin == "old"

    class New:
        @hookimpl
        def gateway_register_listeners(self, register):
            register("cron", Cron, CronConfig)

    with pytest.warns(DeprecationWarning):
        errors = _errors(plugins=[("old", Old()), ("new", New())])
    assert errors == [
        "plugins: listener kind 'cron' is registered by both plugin 'new' and plugin 'old'; "
        "disable one of them in [plugins] disable"
    ]


def test_names_that_disagree_and_malformed_registrations_are_startup_errors():
    class Named(PlainProtocol):
        name = "other"

    cases = {
        "gateway_register_protocols": (
            lambda register: register("plain", Named),
            "plugins: plugin 'p' registered protocol 'plain', but its adapter class is named "
            "'other': the names must match",
        ),
        "gateway_register_agents": (
            lambda register: register("research", Agent("helper", model="echo")),
            "plugins: plugin 'p' registered agent 'research', but the Agent is named 'helper': "
            "the names must match",
        ),
        "gateway_register_filters": (
            lambda register: register(_nothing),
            "plugins: plugin 'p': gateway_register_filters takes register(name, factory), not a "
            "single argument",
        ),
        "gateway_register_auth": (
            lambda register: register("a", _nothing, BackendConfig),
            "plugins: plugin 'p': gateway_register_auth takes register(name, factory), without a "
            "config class",
        ),
        "gateway_register_listeners": (
            lambda register: register("cron", Cron),
            "plugins: plugin 'p': listener kind 'cron' needs its config class: "
            "register(kind, ListenerClass, ConfigClass)",
        ),
        "gateway_register_backends": (
            lambda register: register("odd", Constant, ExtraConfig),
            "plugins: plugin 'p': the config class of backend kind 'odd' must be an attrs class "
            "with a 'kind' field (subclass gateway.BackendConfig)",
        ),
        "gateway_register_tools": (
            lambda register: register("bad name!", get_weather),
            "plugins: plugin 'p' registered a tool that is not one: tool name 'bad name!' must "
            "be 1-64 letters, digits, '_' or '-' (set name=...)",
        ),
    }
    for hook, (body, error) in cases.items():
        plugin = type("P", (), {hook: hookimpl(staticmethod(body))})()
        assert _errors(plugins=[("p", plugin)]) == [error], hook


async def test_registration_order_is_plugin_order_with_tryfirst_and_trylast(make_gateway, sdk):
    """Filters of one ``order`` run in registration order: plugins as registered (``tryfirst``
    ones first, ``trylast`` ones last), then each plugin's calls in turn."""
    seen: list[str] = []

    class Mark(Filter):
        def __init__(self, label):
            self.label = label

        async def on_request(self, request, exchange):
            seen.append(self.label)

    def plugin(*labels, **marker):
        class P:
            @hookimpl(**marker)
            def gateway_register_filters(self, register):
                for label in labels:
                    register(label, lambda gw, label=label: Mark(label))

        return P()

    client = await make_gateway(
        {"backends": {"e": {"kind": "echo"}}, "models": {"e": {"backend": "e"}}},
        plugins=[
            ("late", plugin("late", trylast=True)),
            ("one", plugin("one-a", "one-b")),
            ("early", plugin("early", tryfirst=True)),
            ("two", plugin("two")),
        ],
    )
    await sdk(client).chat.completions.create(model="e", messages=MESSAGES)
    assert seen == ["early", "one-a", "one-b", "two", "late"]
