"""Agents: a model, instructions and tools, served as a model name and over AG-UI.

The Python API::

    from gateway.agents import Agent, AgentsPlugin, tool

    @tool
    async def get_weather(city: str) -> dict:
        \"\"\"Current weather for a city.

        Args:
            city: The city's name.
        \"\"\"

    weather = Agent("weather", model="gpt-4o", system="Answer briefly.", tools=[get_weather])
    app = create_app(config, plugins=[AgentsPlugin(agents=[weather])])

Plugins register tools and agents with the ``gateway_register_tools`` and
``gateway_register_agents`` hooks; :class:`AgentsPlugin` is such a plugin for an embedding app.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from gateway import ToolContext, ToolOutcome, hookimpl, tool
from gateway.agents.agent import Agent, AgentConfig
from gateway.tools import Tool

__all__ = ["Agent", "AgentConfig", "AgentsPlugin", "Tool", "ToolContext", "ToolOutcome", "tool"]


class AgentsPlugin:
    """A plugin that registers the given agents and tools (for embedders and tests)::

    create_app(config, plugins=[AgentsPlugin(agents=[research], tools=[web_search])])
    """

    def __init__(
        self,
        *,
        agents: Iterable[Agent] = (),
        tools: Iterable[Tool | Callable[..., Any]] = (),
        name: str = "agents-app",
    ) -> None:
        self.name = name
        self.agents = list(agents)
        self.tools = list(tools)

    @hookimpl
    def gateway_register_tools(self, register: Any) -> None:
        for item in self.tools:
            register(item.name if isinstance(item, Tool) else getattr(item, "__name__", ""), item)

    @hookimpl
    def gateway_register_agents(self, register: Any) -> None:
        for agent in self.agents:
            register(agent.name, agent)
