"""What ``/mcp`` offers a caller: the MCP servers' tools (``<server>__<tool>``) and the gateway's
agents (``agent__<name>``), and whether the caller's key may use each.

A tool a key may not use is refused by name with the reason (never left out silently, so a
client can tell "not allowed" from "does not exist"); a listing that would be empty because of
the key's allowlist, or because the servers it allows are down, is an error saying so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs
import mcp_types

from gateway.mcp.config import AGENTS, SEPARATOR, MCPAccessConfig, MCPConfig

if TYPE_CHECKING:
    from gateway import Gateway, Principal
    from gateway.mcp.upstream import MCPUpstream

#: The arguments of an agent offered as a tool.
AGENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "prompt": {"type": "string", "description": "What to ask the agent, in full."},
    },
    "required": ["prompt"],
}


@attrs.frozen
class Entry:
    """One tool of ``/mcp``: its public name, where it comes from, and its description."""

    name: str
    server: str
    tool: str
    spec: mcp_types.Tool

    @property
    def is_agent(self) -> bool:
        return self.server == AGENTS


class Denied(Exception):
    """The caller's key may not use a tool (or any)."""


class Catalog:
    def __init__(
        self, gateway: Gateway, config: MCPConfig, upstreams: Mapping[str, MCPUpstream]
    ) -> None:
        self.gateway = gateway
        self.upstreams = upstreams
        self.agents = config.agents
        self.access: Mapping[str, MCPAccessConfig] = config.access

    def entries(self) -> dict[str, Entry]:
        """Every tool ``/mcp`` offers now (servers that are down offer none)."""
        out: dict[str, Entry] = {}
        for server, upstream in self.upstreams.items():
            for name, spec in upstream.specs.items():
                public = f"{server}{SEPARATOR}{name}"
                out[public] = Entry(public, server, name, spec.model_copy(update={"name": public}))
        if self.agents:
            for name, agent in self.gateway.agents.items():
                public = f"{AGENTS}{SEPARATOR}{name}"
                description = agent.description or f"Run the agent '{name}' on a prompt."
                spec = mcp_types.Tool(
                    name=public, description=description, input_schema=AGENT_SCHEMA
                )
                out[public] = Entry(public, AGENTS, name, spec)
        return out

    def allows(self, principal: Principal, entry: Entry) -> bool:
        if entry.is_agent and not principal.may_use(entry.tool):
            return False
        access = self.access.get(principal.name)
        if access is None:
            return True
        return entry.server in access.servers or entry.name in access.tools

    def listing(self, principal: Principal) -> list[mcp_types.Tool]:
        """The tools ``principal`` may use; raises :class:`Denied` rather than answer with none
        when its allowlist is what leaves nothing."""
        entries = self.entries()
        allowed = [e.spec for e in entries.values() if self.allows(principal, e)]
        if allowed or (not entries and principal.name not in self.access):
            return allowed
        access = self.access.get(principal.name)
        if entries:
            raise Denied(
                f"The key '{principal.name}' may use none of the tools this gateway offers."
            )
        down = [s for s in (access.servers if access else ()) if s in self.upstreams]
        reason = (
            f" (the servers it may use are not connected now: {', '.join(down)})" if down else ""
        )
        raise Denied(f"No tool is available to the key '{principal.name}'{reason}.")

    def find(self, principal: Principal, name: str) -> Entry | None:
        """The tool called ``name`` if it exists; raises :class:`Denied` when the key may not
        use it."""
        entry = self.entries().get(name)
        if entry is not None and not self.allows(principal, entry):
            raise Denied(f"The key '{principal.name}' may not use the tool '{name}'.")
        return entry
