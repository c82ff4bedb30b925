"""Plugins found and registered: entry points, clashes, switches, one manager per app, and hook specs that are typed, documented and tested."""

from __future__ import annotations

import configparser
import inspect
import re

import pytest
from support import ROOT

from gateway import (
    GATEWAY,
    Backend,
    BackendConfig,
    GatewayError,
    create_app,
    hookimpl,
    hookspecs,
)
from gateway.core.plugins import BUILTINS, get_plugin_manager
from gateway.errors import ConfigError, Forbidden

SPECS = [
    name
    for name, _ in inspect.getmembers(hookspecs, inspect.isfunction)
    if name.startswith("gateway_")
]


def test_builtins_are_declared_as_entry_points():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    declared = dict(
        line.split(" = ") for line in cfg["options.entry_points"]["hookgate"].strip().splitlines()
    )
    assert declared == BUILTINS


def test_clashing_registrations_name_both_plugins():
    class A:
        @hookimpl
        def gateway_register_backends(self, register):
            register("echo", Backend)

    with pytest.raises(ConfigError) as info:
        create_app(env={}, plugins=[("twin", A())])
    assert (
        "'echo'" in info.value.errors[0]
        and "'backends.echo'" in info.value.errors[0]
        and "'twin'" in info.value.errors[0]
    )


def test_disable_and_autoload_switch():
    pm = get_plugin_manager(
        autoload=False, disable=["backends.echo"], plugins=list(BUILTINS.items())
    )
    assert pm.is_blocked("backends.echo") and not pm.has_plugin("backends.echo")
    assert pm.has_plugin("backends.openai")
    with pytest.raises(ConfigError) as info:
        create_app({"plugins": {"disable": ["backends.echo"]}}, env={})
    assert any("unknown backend kind 'echo'" in e for e in info.value.errors)
    assert get_plugin_manager(autoload=False).get_plugins() == set()


def test_each_app_has_its_own_plugin_manager():
    a, b = create_app(env={}), create_app(env={})
    assert a[GATEWAY].pm is not b[GATEWAY].pm
    assert a[GATEWAY].pm.get_plugin("backends.echo") is not None


def test_every_hook_is_typed_documented_in_code_and_docs_and_tested():
    guide = (ROOT / "docs" / "plugins.md").read_text()
    tests = "".join(p.read_text() for p in (ROOT / "tests").rglob("test_*.py"))
    specs = get_plugin_manager(autoload=False).hook
    for name in SPECS:
        fn = getattr(hookspecs, name)
        doc = inspect.getdoc(fn) or ""
        assert "Returns" in doc and "Called" in doc, (
            f"{name}: docstring must say when it is called and what it returns"
        )
        assert all(
            p.annotation is not inspect.Parameter.empty
            for p in inspect.signature(fn).parameters.values()
        )
        assert name in guide, f"{name} is not in docs/plugins.md"
        assert tests.count(name) >= 1, f"{name} has no test"
        # Versioned: every spec says when it was added; a deprecated one says so too.
        assert re.search(r"^\.\. versionadded:: \d+\.\d+$", doc, re.M), (
            f"{name}: docstring has no '.. versionadded::' line"
        )
        deprecated = getattr(specs, name).spec.warn_on_impl is not None
        assert deprecated == (".. deprecated::" in doc), name
    assert "semantic versioning" in (hookspecs.__doc__ or "")


def test_gateway_error_is_public():
    assert issubclass(Forbidden, GatewayError)


def test_registries_collect_every_kind_of_registration():
    def factory(*_):
        return None

    class P:
        @hookimpl
        def gateway_register_session_stores(self, register):
            register("dict", factory)

        @hookimpl
        def gateway_register_webhook_verifiers(self, register):
            register("always", factory)

        @hookimpl
        def gateway_register_listeners(self, register):
            register("cron", factory, BackendConfig)

        @hookimpl
        def gateway_register_auth(self, register):
            register("nobody", factory)

    gw = create_app(env={}, plugins=[("p", P())])[GATEWAY]
    assert gw.registry.session_stores["dict"].plugin == "p"
    assert gw.registry.verifiers["always"].value is factory
    assert gw.registry.listeners["cron"].config is BackendConfig
    assert (
        gw.registry.auth["nobody"].plugin == "p" and not gw.auth_enabled
    )  # its factory returned None


def test_section_reserved_by_core():
    class P:
        @hookimpl
        def gateway_config_sections(self, register):
            register("server", dict)

    with pytest.raises(ConfigError) as info:
        create_app(env={}, plugins=[("p", P())])
    assert "reserved by the core" in info.value.errors[0]
