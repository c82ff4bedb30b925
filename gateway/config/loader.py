"""Reading the configuration: TOML, ``${VAR}`` expansion, ``HOOKGATE_*`` variables and flags.

Precedence is flag > environment > file > default. Loading happens in two phases because the
file decides which plugins run (``[plugins]``) and the plugins decide which sections exist:
first the raw tree and ``[plugins]``, then the plugin manager, then every section structured
through its owner's class. All errors are collected and reported together, each with its path.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
import cattrs
import pluggy

from gateway.backends.base import BackendConfig
from gateway.config.types import (
    ModelConfig,
    PluginsConfig,
    ServerConfig,
    format_errors,
    make_converter,
)
from gateway.core.plugins import get_plugin_manager
from gateway.core.registry import Registry, RegistryError
from gateway.state.config import RedisConfig


class ConfigError(Exception):
    """The configuration is invalid; ``errors`` holds one ``"path: message"`` line per fault."""

    def __init__(self, errors: Iterable[str]) -> None:
        self.errors = list(errors)
        super().__init__("invalid configuration:\n  " + "\n  ".join(self.errors))


#: Sections the core itself owns (plugins own the rest).
CORE_SECTIONS: dict[str, Any] = {
    "server": ServerConfig,
    "plugins": PluginsConfig,
    "models": dict[str, ModelConfig],
    "backends": dict[str, BackendConfig],
    # Shared state is core: every plugin that keeps state reaches Redis through gateway.state.
    "redis": RedisConfig,
}

#: The embedded default when no backend is configured at all: the echo backend, any model name.
DEFAULT_BACKENDS = {"echo": {"kind": "echo"}}
DEFAULT_MODELS = {"echo": {"backend": "echo"}, "*": {"backend": "echo"}}


@attrs.frozen
class Config:
    """The whole structured configuration.

    The core's sections are attributes; plugin sections are reached with :meth:`section`.
    """

    server: ServerConfig
    plugins: PluginsConfig
    models: Mapping[str, ModelConfig]
    backends: Mapping[str, BackendConfig]
    sections: Mapping[str, Any]
    source: str | None = None

    def section(self, name: str) -> Any:
        """The structured value of a plugin's section (its defaults when the file omits it)."""
        return self.sections[name]


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

    ``path`` is a TOML file (``HOOKGATE_CONFIG`` when ``None``; no file at all is valid). ``data``
    is an already-parsed tree used instead of a file. ``overrides`` are dotted keys from
    command-line flags (``{"server.port": 9000}``). ``plugins`` are registered explicitly, besides
    (or, with ``autoload=False``, instead of) the installed ones. Raises :class:`ConfigError`.
    """
    env = os.environ if env is None else env
    source: str | None = None
    if data is not None:
        raw = _copy(data)
    else:
        path = path or env.get("HOOKGATE_CONFIG") or None
        raw = {}
        if path is not None:
            source = str(path)
            raw = read_toml(Path(path))
    errors: list[str] = []
    raw = expand(raw, env, errors)
    apply_environment(raw, env, errors)
    for key, value in (overrides or {}).items():
        if value is not None:
            _set(raw, key, value)
    if "backends" not in raw and "models" not in raw:
        raw["backends"] = _copy(DEFAULT_BACKENDS)
        raw["models"] = _copy(DEFAULT_MODELS)
    if errors:
        raise ConfigError(errors)

    conv = make_converter()
    plugins_cfg = _structure(conv, raw.get("plugins", {}), PluginsConfig, "plugins", errors)
    if errors:
        raise ConfigError(errors)
    if autoload is None:
        autoload = plugins_cfg.autoload
    try:
        pm = get_plugin_manager(autoload=autoload, disable=plugins_cfg.disable, plugins=plugins)
        registry = Registry.collect_sections(pm)
        registry.collect(pm)
    except (RegistryError, ValueError, ImportError) as exc:
        raise ConfigError([f"plugins: {exc}"]) from exc
    config = structure(raw, registry, conv, source)
    return Loaded(config, pm, registry)


def structure(
    raw: Mapping[str, Any], registry: Registry, conv: cattrs.Converter, source: str | None
) -> Config:
    """Structure every section of ``raw`` with the class of the plugin that owns it."""
    errors: list[str] = []
    for name in registry.sections.names():
        if name in CORE_SECTIONS:
            errors.append(
                f"{name}: section is reserved by the core (plugin {registry.sections[name].plugin!r})"
            )
    for name in raw:
        if name not in CORE_SECTIONS and name not in registry.sections:
            errors.append(f"{name}: unknown section (no enabled plugin provides [{name}])")

    server = _structure(conv, raw.get("server", {}), ServerConfig, "server", errors)
    plugins = _structure(conv, raw.get("plugins", {}), PluginsConfig, "plugins", errors)
    models: dict[str, ModelConfig] = {}
    for name, table in _tables(raw, "models", errors):
        value = _structure(conv, table, ModelConfig, f"models.{name}", errors)
        if value is not None:
            models[name] = value
    backends: dict[str, BackendConfig] = {}
    for name, table in _tables(raw, "backends", errors):
        kind = table.get("kind")
        reg = registry.backends.get(kind) if isinstance(kind, str) else None
        if reg is None:
            known = ", ".join(sorted(registry.backends.names())) or "none"
            errors.append(f"backends.{name}.kind: unknown backend kind {kind!r} (known: {known})")
            continue
        value = _structure(conv, table, reg.config, f"backends.{name}", errors)
        if value is not None:
            backends[name] = value
    for name, model in models.items():
        if model.backend not in raw.get("backends", {}):
            errors.append(f"models.{name}.backend: no backend named {model.backend!r}")

    sections: dict[str, Any] = {
        "redis": _structure(conv, raw.get("redis", {}), RedisConfig, "redis", errors)
    }
    for reg in registry.sections.values():
        if reg.name in CORE_SECTIONS:
            continue
        sections[reg.name] = _structure(conv, raw.get(reg.name, {}), reg.value, reg.name, errors)
    if errors:
        raise ConfigError(errors)
    return Config(server, plugins, models, backends, sections, source)


def _tables(
    raw: Mapping[str, Any], section: str, errors: list[str]
) -> list[tuple[str, Mapping[str, Any]]]:
    """The ``[section.<name>]`` tables of ``raw``; anything else there is reported."""
    value = raw.get(section, {})
    if not isinstance(value, Mapping):
        errors.append(f"{section}: expected a table of [{section}.<name>] tables")
        return []
    tables = []
    for name, table in value.items():
        if isinstance(table, Mapping):
            tables.append((name, table))
        else:
            errors.append(f"{section}.{name}: expected a table")
    return tables


def _structure(conv: cattrs.Converter, value: Any, type_: Any, path: str, errors: list[str]) -> Any:
    try:
        return conv.structure(value, type_)
    except Exception as exc:  # cattrs raises ExceptionGroups of arbitrary field errors
        errors.extend(format_errors(exc, path))
        return None


# --- reading and expanding ---------------------------------------------------------------------


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such configuration file"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None


_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand(node: Any, env: Mapping[str, str], errors: list[str], path: str = "") -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string; ``$$`` is a literal ``$``.

    A variable that is unset (or empty, with ``:-``) and has no default is an error at its path.
    """
    if isinstance(node, str):
        if "$" not in node:
            return node

        def sub(m: re.Match[str]) -> str:
            if m.group(0) == "$$":
                return "$"
            name, default = m.group(1), m.group(2)
            value = env.get(name)
            if value is None or (value == "" and default is not None):
                if default is None:
                    errors.append(f"{path or '<root>'}: environment variable {name} is not set")
                    return ""
                return default
            return value

        return _VAR.sub(sub, node)
    if isinstance(node, dict):
        return {k: expand(v, env, errors, f"{path}.{k}" if path else k) for k, v in node.items()}
    if isinstance(node, list):
        return [expand(v, env, errors, f"{path}[{i}]") for i, v in enumerate(node)]
    return node


def apply_environment(raw: dict[str, Any], env: Mapping[str, str], errors: list[str]) -> None:
    """Apply the ``HOOKGATE_*`` variables on top of the file."""
    simple = {
        "HOOKGATE_HOST": ("server.host", str),
        "HOOKGATE_PORT": ("server.port", int),
        "HOOKGATE_WORKERS": ("server.workers", int),
        "HOOKGATE_LOG_LEVEL": ("server.log_level", str),
        "HOOKGATE_SESSION_BACKEND": ("sessions.store", str),
        "HOOKGATE_REDIS_URL": ("redis.url", str),
    }
    for var, (key, kind) in simple.items():
        value = env.get(var)
        if value is None or value == "":
            continue
        if kind is int:
            try:
                _set(raw, key, int(value))
            except ValueError:
                errors.append(f"{var}: not an integer: {value!r}")
        else:
            _set(raw, key, value)
    gateway_key = env.get("HOOKGATE_API_KEY")
    if gateway_key:
        raw.setdefault("auth", {})["keys"] = [gateway_key]
    model = env.get("HOOKGATE_CHAT_MODEL")
    base_url = env.get("HOOKGATE_CHAT_BASE_URL")
    api_key = env.get("HOOKGATE_CHAT_API_KEY")
    if model or base_url or api_key:
        backend: dict[str, Any] = {
            "kind": "openai",
            "base_url": base_url or "https://api.openai.com/v1",
        }
        if api_key:
            backend["api_key"] = api_key
        raw.setdefault("backends", {})["chat"] = backend
        models = raw.setdefault("models", {})
        if model:
            models[model] = {"backend": "chat"}
        else:
            models.setdefault("*", {"backend": "chat"})


def _set(raw: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = raw
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[last] = value


def _copy(node: Any) -> Any:
    if isinstance(node, Mapping):
        return {k: _copy(v) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [_copy(v) for v in node]
    return node
