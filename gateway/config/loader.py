"""Reading the configuration: TOML, ``${VAR}`` expansion, ``HOOKGATE_*`` variables and flags.

Precedence is flag > environment > file > default. :func:`read` gives the raw tree,
:func:`plugins_section` its ``[plugins]`` (which decides the plugins, and so the sections), and
:func:`structure` every section through its owner's class; :func:`gateway.core.loading.load`
runs the three around the plugin manager. All errors are collected and reported together, each
with its path.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cattrs

from gateway.config.sections import (
    CORE_SECTIONS,
    DEFAULT_BACKENDS,
    DEFAULT_MODELS,
    BackendConfig,
    Config,
    DatabaseConfig,
    ModelConfig,
    PluginsConfig,
    RedisConfig,
    ServerConfig,
)
from gateway.config.types import format_errors
from gateway.errors import ConfigError


def read(
    path: str | os.PathLike[str] | None = None,
    *,
    data: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], str | None]:
    """The raw configuration tree, read, expanded and overridden, and the file it came from.

    ``path`` is a TOML file (``HOOKGATE_CONFIG`` when ``None``; no file at all is valid). ``data``
    is an already-parsed tree used instead of a file. ``overrides`` are dotted keys from
    command-line flags (``{"server.port": 9000}``). With no backend and no model at all, the
    embedded default (the echo backend for every model name) is filled in. Raises
    :class:`~gateway.errors.ConfigError` with every fault found.
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
    return raw, source


def plugins_section(raw: Mapping[str, Any], conv: cattrs.Converter) -> PluginsConfig:
    """``[plugins]`` alone: it decides which plugins run, so it is read before the others."""
    errors: list[str] = []
    value = _structure(conv, raw.get("plugins", {}), PluginsConfig, "plugins", errors)
    if errors or not isinstance(value, PluginsConfig):
        raise ConfigError(errors)
    return value


def structure(
    raw: Mapping[str, Any],
    conv: cattrs.Converter,
    source: str | None,
    sections: Mapping[str, tuple[Any, str]],
    backend_kinds: Mapping[str, type],
) -> Config:
    """Structure every section of ``raw`` with the class of the plugin that owns it.

    ``sections`` maps each plugin section's name to its class and the plugin that registered it;
    ``backend_kinds`` maps each backend kind to the config class of its tables.
    """
    errors: list[str] = []
    for name, (_, plugin) in sections.items():
        if name in CORE_SECTIONS:
            errors.append(f"{name}: section is reserved by the core (plugin {plugin!r})")
    for name in raw:
        if name not in CORE_SECTIONS and name not in sections:
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
        cls = backend_kinds.get(kind) if isinstance(kind, str) else None
        if cls is None:
            known = ", ".join(sorted(backend_kinds)) or "none"
            errors.append(f"backends.{name}.kind: unknown backend kind {kind!r} (known: {known})")
            continue
        value = _structure(conv, table, cls, f"backends.{name}", errors)
        if value is not None:
            backends[name] = value
    for name, model in models.items():
        errors += _model_errors(name, model, raw.get("backends", {}))
    errors.extend(shadowed_routes(list(models)))

    plugin_sections = sections
    structured: dict[str, Any] = {
        "redis": _structure(conv, raw.get("redis", {}), RedisConfig, "redis", errors),
        "database": _structure(conv, raw.get("database", {}), DatabaseConfig, "database", errors),
    }
    for name, (cls, _) in plugin_sections.items():
        if name in CORE_SECTIONS:
            continue
        structured[name] = _structure(conv, raw.get(name, {}), cls, name, errors)
    if errors:
        raise ConfigError(errors)
    return Config(server, plugins, models, backends, structured, source)


def _model_errors(name: str, model: ModelConfig, backends: Mapping[str, Any]) -> list[str]:
    """What is wrong with ``[models.<name>]``'s backend or targets."""
    path = f"models.{name}"
    if (model.backend is None) == (not model.targets):
        return [f'{path}: give either backend = "..." or targets = [...] (one of them)']
    if model.backend is not None:
        if model.backend not in backends:
            return [f"{path}.backend: no backend named {model.backend!r}"]
        return []
    return [
        f"{path}.targets[{i}].backend: no backend named {target.backend!r}"
        for i, target in enumerate(model.targets)
        if target.backend not in backends
    ]


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
        "HOOKGATE_DATABASE_URL": ("database.url", str),
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
        # One more key beside the file's, unless the file holds it (as "${HOOKGATE_API_KEY}").
        auth = raw.setdefault("auth", {})
        keys = auth.get("keys")
        keys = list(keys) if isinstance(keys, list | tuple) else []
        held = [k.get("key") if isinstance(k, dict) else k for k in keys]
        if gateway_key not in held:
            keys.append(gateway_key)
        auth["keys"] = keys
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


def shadowed_routes(names: list[str]) -> list[str]:
    """Errors for glob model names that can never match. Globs are tried in file order, so a
    ``"prefix*"`` glob (``"*"`` itself) takes every name that a glob listed after it and
    starting with the same prefix could match. (Exact names are looked up first: never
    shadowed.)"""
    errors: list[str] = []
    earlier: list[str] = []
    for name in names:
        if not _is_glob(name):
            continue
        literal = re.split(r"[*?\[]", name, maxsplit=1)[0]
        for before in earlier:
            prefix = before[:-1]
            if before.endswith("*") and not _is_glob(prefix) and literal.startswith(prefix):
                errors.append(
                    f"models.{name}: this route can never match: {before!r}, listed before "
                    f"it, takes every model name it would (globs are tried in file order; "
                    f"list {name!r} first)"
                )
                break
        earlier.append(name)
    return errors


def _is_glob(name: str) -> bool:
    return any(ch in name for ch in "*?[")


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
