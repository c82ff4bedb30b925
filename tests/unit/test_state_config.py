"""The [redis] section and the store choices, checked at startup."""

from __future__ import annotations

import pytest

from gateway import create_app
from gateway.core.loading import load
from gateway.core.plugins import builtin_plugins
from gateway.errors import ConfigError


def _errors(data, env=None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        create_app(data, env=env or {})
    return info.value.errors


def test_redis_section_and_environment():
    cfg = load(data={}, env={}, plugins=builtin_plugins(), autoload=False).config
    assert cfg.section("redis").url == "" and cfg.section("redis").prefix == "hookgate:"
    env = {"HOOKGATE_REDIS_URL": "rediss://:pw@cache:6380/2", "HOOKGATE_SESSION_BACKEND": "redis"}
    cfg = load(data={}, env=env, plugins=builtin_plugins(), autoload=False).config
    assert cfg.section("redis").url == "rediss://:pw@cache:6380/2"
    assert cfg.section("redis").url.masked() == "rediss://:***@cache:6380/2"
    assert cfg.section("sessions").store == "redis"
    errors = _errors({"redis": {"url": "http://user:secret@cache", "timeout": "soon"}})
    assert errors == [
        "redis.url: not a Redis URL: 'http://user:***@cache' (expected redis://host:6379/0, "
        "rediss://... or unix:///path/to/socket)",
        'redis.timeout: not a duration: \'soon\' (say e.g. "30s", "15m", "24h")',
    ]


def test_stores_are_checked_at_startup():
    assert _errors({"sessions": {"store": "redis"}}) == [
        "sessions.store: the redis store needs [redis] url (or HOOKGATE_REDIS_URL) to be set"
    ]
    assert _errors({"sessions": {"store": "postgres"}}) == [
        "sessions.store: unknown session store 'postgres' (known: off, auto, memory, redis)"
    ]
    assert _errors({"limits": {"rpm": 5, "store": "disk"}}) == [
        "limits.store: expected 'auto', 'memory' or 'redis', not 'disk'"
    ]
    assert _errors({"sessions": {"max_tokens": -1}, "limits": {"rpm": "10"}}) == [
        "sessions.max_tokens: expected a whole number of at least 0",
        "limits.rpm: expected a whole number of at least 0",
    ]
