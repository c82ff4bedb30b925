"""The built-in ``triggers`` plugin: ``[triggers]`` (what every trigger shares) and
``[listeners.<name>]`` tables, each structured by the config class of its ``kind`` (registered
with ``gateway_register_listeners``) and built by that kind's factory."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway import ConfigError, format_errors, hookimpl, make_converter
from gateway.triggers.service import SERVICE, TriggersConfig, service_for

if TYPE_CHECKING:
    from gateway import Gateway

log = logging.getLogger(__name__)


def build_listeners(gateway: Gateway) -> None:
    """Build every configured and Python-declared listener into the trigger service."""
    service = service_for(gateway)
    tables: list[tuple[str, Mapping[str, Any], Any]] = [
        (f"listeners.{name}", {"name": name, **table}, None)
        for name, table in gateway.config.section("listeners").items()
    ]
    tables += [
        (f"listener {name!r} (Python)", {"name": name, **table}, handler)
        for name, table, handler in service.python_listeners
    ]
    errors: list[str] = []
    conv = make_converter()
    names: set[str] = set()
    for where, table, handler in tables:
        name = table["name"]
        if name in names:
            errors.append(f"{where}: a second listener named {name!r}")
            continue
        names.add(name)
        kind = table.get("kind")
        reg = gateway.registry.triggers.get(kind) if isinstance(kind, str) else None
        if reg is None:
            known = ", ".join(sorted(gateway.registry.triggers.names())) or "none"
            errors.append(f"{where}.kind: unknown listener kind {kind!r} (known: {known})")
            continue
        fields = {k: v for k, v in table.items() if k != "name"}
        try:
            cfg = conv.structure(fields, reg.config)
        except Exception as exc:  # cattrs raises groups of field errors
            errors.extend(format_errors(exc, where))
            continue
        try:
            source = reg.value(name, cfg, gateway)
            if handler is not None:
                source.add_handler(handler)
            source.check(where)
        except ConfigError as exc:
            errors.extend(exc.errors)
            continue
        except (ValueError, TypeError, ImportError) as exc:
            errors.append(f"{where}: {exc}")
            continue
        service.add_source(source)
    if errors:
        raise ConfigError(errors)


@hookimpl
def gateway_config_sections(register: Any) -> None:
    register("triggers", TriggersConfig)
    # Each table's shape depends on its kind: checked when the app is built.
    register("listeners", dict[str, dict[str, Any]])


@hookimpl(trylast=True)
def gateway_configure_app(app: web.Application, gateway: Gateway) -> None:
    # Last, so agents (which other plugins route in this hook) can be checked by name.
    if gateway.config.section("listeners") or (SERVICE in app and app[SERVICE].python_listeners):
        build_listeners(gateway)
