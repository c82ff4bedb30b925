"""The built-in ``agents`` plugin: ``[agents.<name>]`` tables and Python-registered agents become
model names served by the agent loop.

Agents are compiled once, while the app is built: every tool is imported or looked up and
described, every agent's model is routed, and any fault stops the start with its TOML path
(``agents.research.tools[1]: cannot import module 'mypkg.tools' ...``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway import ANONYMOUS, ConfigError, GatewayError, hookimpl
from gateway.agents.agent import Agent, AgentConfig
from gateway.agents.remote import RemoteAgents
from gateway.agents.runtime import AgentBackend
from gateway.tools import Tool, as_tool, import_tool

if TYPE_CHECKING:
    from gateway import Gateway

log = logging.getLogger(__name__)


def build_agents(gateway: Gateway, remotes: RemoteAgents | None = None) -> dict[str, AgentBackend]:
    """Compile every declared agent and route its name to it. Raises :class:`ConfigError`.

    Each of an agent's ``remote_agents`` becomes one of its tools, collected in ``remotes``
    (whose ``lifespan`` fetches their cards when the app starts)."""
    remotes = remotes if remotes is not None else RemoteAgents()
    errors: list[str] = []
    registered: dict[str, Tool] = {r.name: r.value for r in gateway.registry.tools.values()}
    declared: list[tuple[str, Agent]] = [
        (f"agents.{name}", Agent.from_config(name, cfg))
        for name, cfg in gateway.config.section("agents").items()
    ]
    for reg in gateway.registry.agents.values():
        agent = reg.value
        where = f"agent {reg.name!r} (plugin {reg.plugin!r})"
        if not isinstance(agent, Agent):
            errors.append(f"{where}: expected a gateway.agents.Agent, got {type(agent).__name__}")
        elif any(a.name == agent.name for _, a in declared):
            errors.append(f"{where}: [agents.{agent.name}] declares the same name")
        else:
            declared.append((where, agent))
    names = {agent.name for _, agent in declared}
    compiled: list[tuple[Agent, dict[str, Tool], Any, list[Any], list[Any]]] = []
    for where, agent in declared:
        tools = _tools(agent.tools, registered, where, errors)
        sources = []
        for i, use in enumerate(agent.mcp):
            source = gateway.tool_sources.get(use.server)
            if source is None:
                known = ", ".join(sorted(gateway.tool_sources)) or "none"
                errors.append(
                    f"{where}.mcp[{i}]: no MCP server named {use.server!r} ([mcp.servers]: {known})"
                )
            else:
                sources.append((source, use))
        remote = []
        for i, cfg in enumerate(agent.remote_agents):
            if cfg.tool_name in tools:
                errors.append(
                    f"{where}.remote_agents[{i}]: a second tool named {cfg.tool_name!r} "
                    "(set 'name')"
                )
                continue
            remote.append(remotes.add(cfg, where))
            tools[cfg.tool_name] = remote[-1].tool
        route = None
        if agent.model in names:
            errors.append(
                f"{where}.model: {agent.model!r} is an agent; an agent thinks with a model"
            )
        else:
            try:
                route = gateway.router.resolve(agent.model, ANONYMOUS)
            except GatewayError:
                errors.append(f"{where}.model: no model named {agent.model!r} is configured")
        if agent.name in gateway.router.exact:
            errors.append(f"{where}: {agent.name!r} is already a [models] name")
        if agent.max_steps < 1:
            errors.append(f"{where}.max_steps: expected a whole number of at least 1")
        if route is not None:
            compiled.append((agent, tools, route, remote, sources))
    if errors:
        raise ConfigError(errors)
    backends = {}
    for agent, tools, route, remote, sources in compiled:
        backend = AgentBackend(agent, tools, route, gateway, sources)
        for source, _ in sources:
            source.subscribe(backend.refresh_tools)
        gateway.router.add(agent.name, backend, description=agent.description)
        backends[agent.name] = backend
        for item in remote:
            item.on_card = backend.refresh_tools
    if backends:
        log.info("agents: %s", ", ".join(sorted(backends)))
    return backends


def _tools(
    items: Iterable[Any], registered: dict[str, Tool], where: str, errors: list[str]
) -> dict[str, Tool]:
    tools: dict[str, Tool] = {}
    for i, item in enumerate(items):
        at = f"{where}.tools[{i}]"
        try:
            if isinstance(item, str):
                if "." in item or ":" in item:
                    made = import_tool(item)
                elif item in registered:
                    made = registered[item]
                else:
                    known = ", ".join(sorted(registered)) or "none"
                    raise ValueError(f"no registered tool named {item!r} (registered: {known})")
            else:
                made = as_tool(item)
        except (ImportError, ValueError, TypeError) as exc:
            errors.append(f"{at}: {exc}")
            continue
        if made.name in tools:
            errors.append(f"{at}: a second tool named {made.name!r}")
            continue
        tools[made.name] = made
    return tools


@hookimpl
def gateway_config_sections(register: Any) -> None:
    register("agents", dict[str, AgentConfig])


@hookimpl
def gateway_configure_app(app: web.Application, gateway: Gateway) -> None:
    remotes = RemoteAgents()
    gateway.agents.update(build_agents(gateway, remotes))
    if remotes.agents:
        app.cleanup_ctx.append(remotes.lifespan)
