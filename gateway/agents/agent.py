"""Declaring agents: a model, instructions and tools, served under a name.

An agent is declared in TOML (``[agents.<name>]``, :class:`AgentConfig`) or in Python
(:class:`Agent`, registered with ``gateway_register_agents``). Either way it becomes a model name
clients can call through any protocol, and an AG-UI agent browsers can run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from gateway import Count, Duration
from gateway.agents.remote_config import RemoteAgentConfig
from gateway.tools import Tool

DEFAULT_MAX_STEPS = 8
DEFAULT_TOOL_TIMEOUT = 30.0


@attrs.frozen
class MCPToolsConfig:
    """One entry of an agent's ``mcp``: an MCP server's name (all its tools), or a table
    ``{server = "files", tools = ["read_file"]}`` naming the tools the agent may use."""

    server: str
    tools: tuple[str, ...] | None = None

    @classmethod
    def parse(cls, value: Any) -> MCPToolsConfig:
        if isinstance(value, MCPToolsConfig):
            return value
        if isinstance(value, str):
            value = {"server": value}
        if not isinstance(value, dict):
            raise ValueError("expected an MCP server's name or a table {server, tools}")
        unknown = set(value) - {"server", "tools"}
        if unknown:
            raise ValueError(f"unknown keys {', '.join(sorted(map(repr, unknown)))}")
        server, tools = value.get("server"), value.get("tools")
        if not isinstance(server, str) or not server:
            raise ValueError("'server' must be an MCP server's name")
        if tools is not None and not (
            isinstance(tools, list | tuple) and all(isinstance(t, str) for t in tools)
        ):
            raise ValueError("'tools' must be a list of the server's tool names")
        return cls(server, tuple(tools) if tools is not None else None)

    def allows(self, tool: str) -> bool:
        return self.tools is None or tool in self.tools


@attrs.frozen
class AgentConfig:
    """``[agents.<name>]``: an agent, callable as the model ``<name>``."""

    #: The model it thinks with: any configured model name (exact or matched by a glob).
    model: str
    #: Instructions, sent as the first system message of every model call.
    system: str = ""
    #: ``"package.module:function"`` paths of Python callables, or names of tools plugins register.
    tools: tuple[str, ...] = ()
    #: Model calls per run at most; a run that still wants tools after that many ends in an error.
    max_steps: Count = Count(DEFAULT_MAX_STEPS)
    #: How long one tool call may take (a tool's own ``timeout`` wins).
    tool_timeout: Duration = Duration(DEFAULT_TOOL_TIMEOUT)
    #: What the agent does, for listings and its A2A card.
    description: str | None = None
    #: Remote A2A agents this agent may delegate to, one tool each: URLs, or tables
    #: ``{url, agent, name, api_key, headers, timeout, discovery_timeout, description}``.
    remote_agents: tuple[RemoteAgentConfig, ...] = ()
    #: MCP servers (``[mcp.servers]`` names) whose tools the agent uses: names, or tables
    #: ``{server = "files", tools = ["read_file"]}`` to allow only some of a server's tools.
    mcp: tuple[MCPToolsConfig, ...] = ()


def _mcp(value: Any) -> tuple[MCPToolsConfig, ...]:
    return tuple(MCPToolsConfig.parse(v) for v in value)


def _tools(value: Any) -> tuple[Tool | Callable[..., Any] | str, ...]:
    return tuple(value)


def _remotes(value: Any) -> tuple[RemoteAgentConfig, ...]:
    return tuple(RemoteAgentConfig.parse(v) for v in value)


@attrs.frozen
class Agent:
    """An agent declared in Python::

        research = Agent("research", model="gpt-4o", system="You search and summarise.",
                         tools=[web_search, "mypkg.tools:fetch_page"])

    ``tools`` holds :func:`~gateway.agents.tool` functions, plain callables (described from their
    signature and docstring), import paths, or names of tools plugins register.
    """

    name: str
    model: str
    system: str = ""
    tools: tuple[Tool | Callable[..., Any] | str, ...] = attrs.field(default=(), converter=_tools)
    max_steps: int = DEFAULT_MAX_STEPS
    tool_timeout: float = DEFAULT_TOOL_TIMEOUT
    description: str | None = None
    #: Remote A2A agents, one tool each: URLs, tables or :class:`RemoteAgentConfig` objects.
    remote_agents: tuple[RemoteAgentConfig, ...] = attrs.field(default=(), converter=_remotes)
    #: MCP servers whose tools the agent uses: names, tables or :class:`MCPToolsConfig`.
    mcp: tuple[MCPToolsConfig, ...] = attrs.field(default=(), converter=_mcp)

    @classmethod
    def from_config(cls, name: str, config: AgentConfig) -> Agent:
        return cls(
            name,
            config.model,
            config.system,
            config.tools,
            int(config.max_steps),
            float(config.tool_timeout),
            config.description,
            config.remote_agents,
            config.mcp,
        )
