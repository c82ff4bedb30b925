"""Loading a gateway: the configuration read, the plugins it enables found and asked what they
register, and every section structured through its owner's class.

Loading happens in two phases because the file decides which plugins run (``[plugins]``) and the
plugins decide which sections exist: first the raw tree and ``[plugins]``, then the plugin
manager and its registry, then the rest of the tree.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
import pluggy

from gateway.config.loader import plugins_section, read, structure
from gateway.config.sections import Config
from gateway.config.types import make_converter
from gateway.core.plugins import get_plugin_manager
from gateway.core.registry import Registry, RegistryError
from gateway.errors import ConfigError


@attrs.frozen
class Loaded:
    """A configuration together with the plugin manager and registry it was checked against."""

    config: Config
    pm: pluggy.PluginManager
    registry: Registry


def load(
    path: str | os.PathLike[str] | None = None,
    *,
    data: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    plugins: Iterable[Any] = (),
    autoload: bool | None = None,
) -> Loaded:
    """Read, expand, override and structure a configuration; build its plugin manager.

    ``path``, ``data``, ``env`` and ``overrides`` are those of
    :func:`gateway.config.loader.read`. ``plugins`` are registered explicitly, besides (or, with
    ``autoload=False``, instead of) the installed ones. Raises :class:`~gateway.errors.ConfigError`.
    """
    raw, source = read(path, data=data, env=env, overrides=overrides)
    conv = make_converter()
    plugins_cfg = plugins_section(raw, conv)
    if autoload is None:
        autoload = plugins_cfg.autoload
    try:
        pm = get_plugin_manager(autoload=autoload, disable=plugins_cfg.disable, plugins=plugins)
        registry = Registry.collect_sections(pm)
        registry.collect(pm)
    except (RegistryError, ValueError, ImportError) as exc:
        raise ConfigError([f"plugins: {exc}"]) from exc
    sections = {reg.name: (reg.value, reg.plugin) for reg in registry.sections.values()}
    kinds = {reg.name: reg.config for reg in registry.backends.values()}
    config = structure(raw, conv, source, sections, kinds)
    return Loaded(config, pm, registry)
