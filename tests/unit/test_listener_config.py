"""Listener configuration: errors with their TOML path."""

from __future__ import annotations

import pytest

from gateway import create_app
from gateway.errors import ConfigError


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"kind": "kafka"}, "listeners.x.kind: unknown listener kind 'kafka'"),
        ({"kind": "redis-stream", "call": "fakes.triggers:record"}, "'stream' is required"),
        ({"kind": "redis-pubsub", "channel": "c", "call": "fakes.triggers:record"}, "set 'url'"),
        ({"kind": "nats", "subject": "s"}, "listeners.x: nothing to do"),
        (
            {"kind": "sse", "url": "ftp://x", "call": "fakes.triggers:record"},
            "listeners.x.url: not a URL",
        ),
        ({"kind": "nats", "subject": "s", "agent": "ghost"}, "listeners.x.agent: no agent"),
        ({"kind": "nats", "subject": "s", "call": "x:y", "nope": 1}, "unknown key 'nope'"),
    ],
)
def test_listener_configuration_errors(table, message):
    cfg = {
        "listeners": {"x": table},
        "backends": {"e": {"kind": "echo"}},
        "models": {"echo": {"backend": "e"}},
    }
    with pytest.raises(ConfigError) as info:
        create_app(cfg)
    assert any(message in line for line in info.value.errors), info.value.errors


def test_an_sse_source_only_a_socks_proxy_reaches_is_refused_at_startup(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "socks5://ada:secret@127.0.0.1:1080")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    cfg = {
        "listeners": {
            "x": {
                "kind": "sse",
                "url": "http://feed.example/events",
                "call": "fakes.triggers:record",
            }
        },
        "backends": {"e": {"kind": "echo"}},
        "models": {"echo": {"backend": "e"}},
    }
    with pytest.raises(ConfigError) as info:
        create_app(cfg)
    (line,) = info.value.errors
    assert line.startswith("listeners.x: ") and "socks5://127.0.0.1:1080" in line
    assert "secret" not in line
