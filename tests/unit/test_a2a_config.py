"""Remote A2A agents in an agent's configuration: checked at startup."""

from __future__ import annotations

import pytest

from gateway import ConfigError, create_app
from gateway.agents import Agent, AgentsPlugin


def test_remote_agents_are_checked_at_startup():
    with pytest.raises(ConfigError) as info:
        create_app(
            {
                "agents": {
                    "boss": {
                        "model": "echo",
                        "remote_agents": [
                            "localhost:9000",
                            {"url": "http://a.example/a2a/x", "colour": "red"},
                            "http://a.example/a2a/twin",
                            "http://b.example/a2a/twin",
                        ],
                    }
                }
            },
            env={},
        )
    errors = info.value.errors
    assert errors[0].startswith("agents.boss.remote_agents.0: not a URL: 'localhost:9000'")
    assert errors[1] == "agents.boss.remote_agents.1: unknown keys 'colour'"
    assert len(errors) == 2  # the clash is found once the entries themselves are valid
    with pytest.raises(ConfigError) as info:
        create_app(
            {
                "agents": {
                    "boss": {
                        "model": "echo",
                        "remote_agents": ["http://a.example/a2a/twin", "http://b.example/a2a/twin"],
                    }
                }
            },
            env={},
        )
    assert info.value.errors == [
        "agents.boss.remote_agents[1]: a second tool named 'twin' (set 'name')"
    ]
    # in Python, remote agents are URLs or tables too
    agent = Agent("boss", model="echo", remote_agents=[{"url": "https://p.example", "name": "p"}])
    app = create_app({}, plugins=[AgentsPlugin(agents=[agent])])
    assert app is not None


def test_a_remote_agent_only_a_socks_proxy_reaches_is_refused_at_startup(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "socks5://ada:secret@127.0.0.1:1080")
    monkeypatch.setenv("NO_PROXY", "near.example")
    config = {
        "agents": {
            "boss": {
                "model": "echo",
                "remote_agents": ["https://far.example/a2a/x", "https://near.example/a2a/y"],
            }
        }
    }
    with pytest.raises(ConfigError) as info:
        create_app(config, env={})
    (line,) = info.value.errors  # the agent NO_PROXY lists is reached directly
    assert line.startswith("agents.boss.remote_agents.0: ") and "socks5://127.0.0.1:1080" in line
    assert "secret" not in line
