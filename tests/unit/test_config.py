"""Configuration: defaults, the shipped file, ${VAR} expansion, HOOKGATE_* and errors with paths."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import ROOT

from gateway.config.types import ByteSize, Duration
from gateway.core.loading import load
from gateway.core.plugins import builtin_plugins
from gateway.errors import ConfigError


def _load(data=None, env=None, overrides=None, path=None):
    return load(
        path,
        data=data if path is None else None,
        env=env or {},
        overrides=overrides,
        plugins=builtin_plugins(),
        autoload=False,
    ).config


def _errors(data, env=None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        _load(data, env)
    return info.value.errors


def test_no_configuration_is_the_echo_default():
    cfg = _load({})
    assert cfg.server.host == "127.0.0.1" and cfg.server.port == 8000 and cfg.server.workers == 1
    assert {n: b.kind for n, b in cfg.backends.items()} == {"echo": "echo"}
    assert {n: m.backend for n, m in cfg.models.items()} == {"echo": "echo", "*": "echo"}
    assert cfg.section("auth").keys == ()


def test_shipped_file_is_exactly_the_defaults():
    shipped = _load(path=ROOT / "config" / "hookgate.toml")
    default = _load({})
    assert shipped.server == default.server
    assert shipped.backends == default.backends and shipped.models == default.models
    assert shipped.sections == default.sections and shipped.plugins == default.plugins


def test_value_types():
    cfg = _load(
        {"server": {"max_body_size": "1.5MB", "drain_timeout": "1m30s", "keepalive_timeout": 5}}
    )
    assert cfg.server.max_body_size == ByteSize(1_500_000)
    assert cfg.server.drain_timeout == Duration(90.0)
    assert cfg.server.keepalive_timeout == 5.0


def test_environment_expansion():
    data = {
        "backends": {
            "up": {
                "kind": "openai",
                "base_url": "${BASE}",
                "api_key": "${KEY:-fallback}",
                "headers": {"x-cost": "$$5"},
            }
        },
        "models": {"m": {"backend": "up"}},
    }
    cfg = _load(data, env={"BASE": "http://127.0.0.1:9/v1"})
    backend = cfg.backends["up"]
    assert backend.base_url == "http://127.0.0.1:9/v1" and backend.api_key == "fallback"
    assert backend.headers == {"x-cost": "$5"}
    assert _load(data, env={"BASE": "http://h/v1", "KEY": "k1"}).backends["up"].api_key == "k1"
    assert _errors(data) == ["backends.up.base_url: environment variable BASE is not set"]


def test_hookgate_variables_and_precedence(tmp_path: Path):
    toml = tmp_path / "hookgate.toml"
    toml.write_text('[server]\nport = 9001\nhost = "0.0.0.0"\nlog_level = "warning"\n')
    cfg = _load(path=toml)
    assert (cfg.server.port, cfg.server.host) == (9001, "0.0.0.0")
    cfg = load(
        toml,
        env={"HOOKGATE_PORT": "9002", "HOOKGATE_LOG_LEVEL": "debug"},
        plugins=builtin_plugins(),
        autoload=False,
    ).config
    assert (cfg.server.port, cfg.server.host, cfg.server.log_level) == (9002, "0.0.0.0", "debug")
    cfg = load(
        toml,
        env={"HOOKGATE_PORT": "9002"},
        overrides={"server.port": 9003, "server.host": None},
        plugins=builtin_plugins(),
        autoload=False,
    ).config
    assert (cfg.server.port, cfg.server.host) == (9003, "0.0.0.0")
    with pytest.raises(ConfigError) as info:
        _load({}, env={"HOOKGATE_PORT": "eighty"})
    assert info.value.errors == ["HOOKGATE_PORT: not an integer: 'eighty'"]


def test_chat_variables_configure_one_upstream():
    cfg = _load(
        {},
        env={
            "HOOKGATE_CHAT_MODEL": "llama3.1:8b",
            "HOOKGATE_CHAT_BASE_URL": "http://127.0.0.1:11434/v1",
            "HOOKGATE_CHAT_API_KEY": "ollama",
        },
    )
    assert list(cfg.backends) == ["chat"]
    assert (
        cfg.backends["chat"].base_url == "http://127.0.0.1:11434/v1"
        and cfg.backends["chat"].api_key == "ollama"
    )
    assert cfg.models["llama3.1:8b"].backend == "chat"
    cfg = _load({}, env={"HOOKGATE_CHAT_API_KEY": "sk-x"})
    assert cfg.backends["chat"].base_url == "https://api.openai.com/v1" and "*" in cfg.models


def test_bad_values_are_reported_with_their_path():
    errors = _errors(
        {
            "server": {
                "port": 70000,
                "workers": 0,
                "log_level": "loud",
                "drain_timeout": "soon",
                "bogus": 1,
            },
            "backends": {
                "local": {
                    "kind": "openai",
                    "base_url": "localhost:11434",
                    "timeout": "x",
                    "extra": 1,
                },
                "odd": {"kind": "teleport"},
            },
            "models": {"m": {"backend": "missing"}, "n": {"backend": "local", "colour": "red"}},
            "sessionz": {},
        }
    )
    expected = [
        "server.port: not a port number (0-65535)",
        "server.workers: expected a whole number of at least 1",
        "server.log_level: expected one of debug, info, warning, error, critical",
        "server.drain_timeout: not a duration: 'soon'",
        "server: unknown key 'bogus'",
        "backends.local.base_url: not a URL: 'localhost:11434'",
        "backends.local.timeout: not a duration: 'x'",
        "backends.local: unknown key 'extra'",
        "backends.odd.kind: unknown backend kind 'teleport' (known: anthropic, echo, openai, openai_responses)",
        "models.n: unknown key 'colour'",
        "models.m.backend: no backend named 'missing'",
        "sessionz: unknown section (no enabled plugin provides [sessionz])",
    ]
    for line in expected:
        assert any(e.startswith(line) for e in errors), (line, errors)


def test_worker_timeout_must_be_above_the_heartbeat_interval():
    # Workers beat once a second: a timeout of one second or less kills healthy workers.
    for value, seconds in (("1s", "1"), ("500ms", "0.5"), (1, "1")):
        assert _errors({"server": {"worker_timeout": value}}) == [
            "server.worker_timeout: must be more than the workers' heartbeat interval (1s), "
            f"got {seconds}s"
        ]
    assert _load({"server": {"worker_timeout": "1.5s"}}).server.worker_timeout == 1.5


def test_key_tables_are_checked():
    errors = _errors({"auth": {"keys": ["ok", {"key": "k", "modles": ["x"]}, 5]}})
    assert any(e.startswith("auth.keys.1: unknown keys 'modles'") for e in errors), errors
    assert any(e.startswith("auth.keys.2: expected a key string") for e in errors), errors


def test_strict_types():
    errors = _errors({"server": {"port": "8000", "access_log": "yes"}})
    assert "server.port: not a port number (0-65535)" in errors
    assert "server.access_log: expected true or false, got the string 'yes'" in errors


def test_hookgate_api_key_adds_a_key_beside_the_files():
    keys = [{"name": "ci", "key": "sk-ci", "models": ["echo"]}, "sk-plain"]
    cfg = _load({"auth": {"keys": keys}}, env={"HOOKGATE_API_KEY": "sk-env"})
    held = [(k.name, k.key) for k in cfg.section("auth").keys]
    assert [key for _, key in held] == ["sk-ci", "sk-plain", "sk-env"]
    # the file's own "${HOOKGATE_API_KEY}" is that key, not a second copy of it
    data = {"auth": {"keys": ["${HOOKGATE_API_KEY}", {"name": "ci", "key": "sk-ci"}]}}
    cfg = _load(data, env={"HOOKGATE_API_KEY": "sk-env"})
    assert [k.key for k in cfg.section("auth").keys] == ["sk-env", "sk-ci"]
    assert [k.key for k in _load({}, env={"HOOKGATE_API_KEY": "sk-env"}).section("auth").keys] == [
        "sk-env"
    ]


def test_a_glob_route_that_can_never_match_is_refused():
    backends = {"b": {"kind": "echo"}}
    models = {"gpt-4o": {"backend": "b"}, "*": {"backend": "b"}, "gpt-*": {"backend": "b"}}
    assert _errors({"backends": backends, "models": models}) == [
        "models.gpt-*: this route can never match: '*', listed before it, takes every model "
        "name it would (globs are tried in file order; list 'gpt-*' first)"
    ]
    models = {"gpt-*": {"backend": "b"}, "gpt-4*": {"backend": "b"}, "claude-*": {"backend": "b"}}
    [error] = _errors({"backends": backends, "models": models})
    assert error.startswith("models.gpt-4*: this route can never match: 'gpt-*'")
    # specific first, then broader: every route can match
    fine = {"gpt-4*": {"backend": "b"}, "gpt-*": {"backend": "b"}, "*": {"backend": "b"}}
    assert list(_load({"backends": backends, "models": fine}).models) == ["gpt-4*", "gpt-*", "*"]
    # a glob that is not a prefix pattern proves nothing about later ones: no error
    other = {"gpt-?o": {"backend": "b"}, "gpt-4*": {"backend": "b"}}
    assert list(_load({"backends": backends, "models": other}).models) == ["gpt-?o", "gpt-4*"]


def test_a_choice_names_its_choices():
    targets = [{"backend": "echo"}]
    errors = _errors({"models": {"m": {"targets": targets, "strategy": "fastest"}}})
    assert errors == ["models.m.strategy: expected one of fallback, weighted, least-busy, latency"]


def test_access_log_format_is_text_or_json():
    assert _load({"server": {"access_log_format": "json"}}).server.access_log_format == "json"
    assert _errors({"server": {"access_log_format": "xml"}}) == [
        "server.access_log_format: expected one of text, json"
    ]
