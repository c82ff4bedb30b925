"""Gateway configurations the tests build on: the fake upstreams as models, agents thinking with
them, and an echo model for gateway processes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestServer
from fakes import anthropic_upstream, openai_upstream


def upstream_config(server: TestServer | str, **backend: Any) -> dict[str, Any]:
    """A configuration with one ``openai`` backend ``up`` at ``server`` and model ``gpt-test``
    routed to upstream model ``up-model``."""
    base = server if isinstance(server, str) else str(server.make_url("/v1"))
    return {
        "backends": {
            "up": {"kind": "openai", "base_url": base, "api_key": "upstream-secret", **backend}
        },
        "models": {"gpt-test": {"backend": "up", "upstream_model": "up-model"}},
    }


def claude_config(server: TestServer | str, **backend: Any) -> dict[str, Any]:
    """A configuration with one ``anthropic`` backend ``claude`` at ``server`` and model
    ``claude-test`` routed to upstream model ``up-claude``."""
    base = server if isinstance(server, str) else str(server.make_url("")).rstrip("/")
    return {
        "backends": {
            "claude": {"kind": "anthropic", "base_url": base, "api_key": "claude-secret", **backend}
        },
        "models": {"claude-test": {"backend": "claude", "upstream_model": "up-claude"}},
    }


def both_config(openai_server: TestServer, claude_server: TestServer) -> dict[str, Any]:
    """Both fake upstreams: ``gpt-test`` (OpenAI kind) and ``claude-test`` (Anthropic kind)."""
    cfg = upstream_config(openai_server)
    other = claude_config(claude_server)
    cfg["backends"].update(other["backends"])
    cfg["models"].update(other["models"])
    return cfg


def recorded(server: TestServer) -> list[dict[str, Any]]:
    """The request bodies a fake upstream (either kind) received."""
    key = openai_upstream.REQUESTS if openai_upstream.REQUESTS in server.app else None
    return server.app[key or anthropic_upstream.REQUESTS]


def agent_toml(path: Path, upstream: str, head: str = "", **agent: str) -> str:
    """Write a configuration file with the fake upstream at ``upstream`` as model ``gpt-test``
    and an agent ``helper`` thinking with it (``agent``: its TOML values, as TOML text), after
    the tables in ``head``; returns the path, for ``--config``."""
    lines = [f"{key} = {value}" for key, value in agent.items()]
    path.write_text(
        f"""{head}
[backends.up]
kind = "openai"
base_url = "{upstream}"

[models.gpt-test]
backend = "up"

[agents.helper]
model = "gpt-test"
"""
        + "\n".join(lines)
        + "\n"
    )
    return str(path)


def echo_config(prefix: str, delay: str = "0s", **server: Any) -> str:
    """TOML text: model ``echo`` answering ``prefix`` + the prompt, one word each ``delay``, and
    ``[server]`` set to ``server``."""
    lines = ["[server]", *(f"{k} = {json.dumps(v)}" for k, v in server.items())]
    lines += [
        "[backends.echo]",
        'kind = "echo"',
        f"prefix = {json.dumps(prefix)}",
        f'delay = "{delay}"',
        "[models.echo]",
        'backend = "echo"',
    ]
    return "\n".join(lines) + "\n"
