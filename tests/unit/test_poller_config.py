"""Poller configuration: errors with their TOML path, and what several workers need."""

from __future__ import annotations

import pytest

from gateway import create_app
from gateway.errors import ConfigError


def test_poller_configuration_errors():
    with pytest.raises(ConfigError) as info:
        create_app(
            {
                "pollers": {
                    "a": {"every": "0s", "call": "fakes.triggers:record"},
                    "c": {"every": "1m", "jitter": "2m", "call": "fakes.triggers:record"},
                }
            }
        )
    assert info.value.errors == [
        "pollers.a: every: must be more than 0",
        "pollers.c: jitter: must be less than 'every'",
    ]
    with pytest.raises(ConfigError) as info:
        create_app(
            {
                "backends": {"e": {"kind": "echo"}},
                "models": {"echo": {"backend": "e"}},
                "pollers": {
                    "b": {"every": "1m"},
                    "d": {"every": "1m", "agent": "ghost"},
                    "e": {"every": "1m", "call": "fakes.triggers:nothing"},
                },
            }
        )
    assert info.value.errors == [
        "pollers.b: a handler needs 'agent' (with 'prompt') or 'call'",
        "pollers.d.agent: no agent or model named 'ghost' that the key 'anonymous' may use",
        "pollers.e: module 'fakes.triggers' has no attribute 'nothing'",
    ]


def test_memory_pollers_refuse_several_workers():
    with pytest.raises(ConfigError, match=r"triggers\.store"):
        create_app(
            {
                "server": {"workers": 2},
                "pollers": {"a": {"every": "1m", "call": "fakes.triggers:record"}},
                "triggers": {"store": "memory"},
            }
        )
