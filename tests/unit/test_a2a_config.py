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
