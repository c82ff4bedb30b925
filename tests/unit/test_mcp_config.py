"""``[mcp]`` and agents' ``mcp``: every mistake found at startup, with its path."""

from __future__ import annotations

import pytest

from gateway import ConfigError, create_app


def errors_of(config):
    with pytest.raises(ConfigError) as info:
        create_app(config, env={})
    return info.value.errors


def test_servers_are_checked_at_startup():
    errors = errors_of(
        {
            "mcp": {
                "servers": {
                    "both": {"command": "x", "url": "http://h/mcp"},
                    "neither": {},
                    "agent": {"command": "x"},
                    "bad__name": {"command": "x"},
                    "ftp": {"url": "ftp://h/mcp"},
                    "stray": {"url": "http://h/mcp", "args": ["-v"]},
                },
                "path": "mcp",
                "access": {"ci": {"servers": ["nope"]}},
            }
        }
    )
    assert errors == [
        "mcp.servers.both: give either 'command' (a stdio server) or 'url' (streamable HTTP)",
        "mcp.servers.neither: give either 'command' (a stdio server) or 'url' (streamable HTTP)",
        "mcp.servers.agent: 'agent' names the gateway's agents; choose another",
        "mcp.servers.bad__name: a server's name is 1-32 letters, digits, '-' and single '_'",
        "mcp.servers.ftp.url: expected an http:// or https:// URL, not 'ftp://h/mcp'",
        "mcp.servers.stray: 'args', 'env' and 'cwd' go with 'command'",
        "mcp.path: expected a path starting with '/', not 'mcp'",
        "mcp.access.ci.servers: no MCP server named 'nope'",
    ]


def test_unknown_keys_are_refused():
    errors = errors_of({"mcp": {"servers": {"s": {"command": "x", "colour": "red"}}}})
    assert any("mcp.servers.s" in e and "colour" in e for e in errors), errors


def test_agents_mcp_entries():
    errors = errors_of(
        {
            "mcp": {"servers": {"calc": {"command": "x"}}, "serve": False},
            "agents": {
                "a": {
                    "model": "echo",
                    "mcp": ["calc", {"server": "calc", "tools": "add"}, {"srv": "calc"}, 3],
                }
            },
        }
    )
    assert errors == [
        "agents.a.mcp.1: 'tools' must be a list of the server's tool names",
        "agents.a.mcp.2: unknown keys 'srv'",
        "agents.a.mcp.3: expected an MCP server's name or a table {server, tools}",
    ]
