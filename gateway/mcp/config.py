"""``[mcp]``: the MCP servers whose tools agents use, and hookgate's own ``/mcp`` endpoint.

This module imports nothing of the ``mcp`` SDK, so the section can be checked (and left empty)
where the ``mcp`` extra is not installed.
"""

from __future__ import annotations

import re
from typing import Any

import attrs

from gateway import ByteSize, Duration

#: Tool names through ``/mcp`` are ``<server><SEPARATOR><tool>``; agents are ``agent__<name>``.
SEPARATOR = "__"
#: The prefix hookgate's own agents have among ``/mcp``'s tools (a server may not be so named).
AGENTS = "agent"
_NAME = re.compile(r"^[A-Za-z0-9-]+(?:_[A-Za-z0-9-]+)*$")


@attrs.frozen
class MCPServerConfig:
    """``[mcp.servers.<name>]``: one MCP server, run as a process (stdio) or reached by URL::

    [mcp.servers.files]
    command = "uvx"
    args = ["mcp-server-filesystem", "/srv/data"]

    [mcp.servers.tickets]
    url = "https://tickets.example/mcp"
    headers = { Authorization = "Bearer ${TICKETS_TOKEN}" }
    """

    #: The program to start (stdio transport); give either ``command`` or ``url``.
    command: str | None = None
    #: Its arguments.
    args: tuple[str, ...] = ()
    #: Environment variables for it, over a minimal inherited environment (PATH, HOME, ...).
    env: dict[str, str] = attrs.Factory(dict)
    #: Its working directory (default: the gateway's).
    cwd: str | None = None
    #: The server's streamable HTTP endpoint (``https://host/mcp``).
    url: str | None = None
    #: HTTP headers sent with every request to ``url`` (credentials: use ``${VAR}``).
    headers: dict[str, str] = attrs.Factory(dict)
    #: Only these of the server's tools are used (by the server's names); all when absent.
    tools: tuple[str, ...] | None = None
    #: How long one tool call may take (default: ``[mcp] call_timeout``).
    timeout: Duration | None = None

    def problems(self, where: str) -> list[str]:
        """What is wrong with this table (checked when the app is built)."""
        if bool(self.command) == bool(self.url):
            return [f"{where}: give either 'command' (a stdio server) or 'url' (streamable HTTP)"]
        if self.url and not self.url.startswith(("http://", "https://")):
            return [f"{where}.url: expected an http:// or https:// URL, not {self.url!r}"]
        if self.command is None and (self.args or self.env or self.cwd):
            return [f"{where}: 'args', 'env' and 'cwd' go with 'command'"]
        if self.url is None and self.headers:
            return [f"{where}.headers: headers go with 'url'"]
        return []


@attrs.frozen
class MCPAccessConfig:
    """``[mcp.access.<key name>]``: what one API key may use through ``/mcp``.

    A key without a table may use every tool. With one, a tool is allowed when its server is
    in ``servers`` or its full name (``files__read_file``, ``agent__research``) is in ``tools``;
    ``"agent"`` in ``servers`` allows every agent the key's ``models`` allow.
    """

    servers: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()


@attrs.frozen
class MCPConfig:
    """``[mcp]``: MCP servers as tool sources, and the gateway's own MCP endpoint."""

    #: MCP servers, by name: agents list them in their ``mcp``, ``/mcp`` serves their tools.
    servers: dict[str, MCPServerConfig] = attrs.Factory(dict)
    #: How long startup waits for the servers to connect (slower ones join when they do), and
    #: how long one attempt to connect may take.
    startup_timeout: Duration = Duration(10.0)
    #: How long one tool call may take (a server's ``timeout`` wins).
    call_timeout: Duration = Duration(60.0)
    #: How often a connected server is asked for its tools (and so found dead, and restarted).
    health_interval: Duration = Duration(15.0)
    #: The longest wait between two attempts to restart a server (waits double up to it).
    max_backoff: Duration = Duration(30.0)
    #: Serve ``/mcp`` (the configured servers' tools and the agents, as one MCP server). Default:
    #: when the ``mcp`` extra is installed.
    serve: bool | None = None
    #: Where the gateway's MCP endpoint is.
    path: str = "/mcp"
    #: Offer the gateway's agents through ``/mcp`` as tools ``agent__<name>``.
    agents: bool = True
    #: Largest ``tools/call`` request through ``/mcp``; larger ones get a JSON-RPC error.
    max_call_size: ByteSize = ByteSize(1024**2)
    #: How long an idle ``/mcp`` session (``Mcp-Session-Id``) is kept.
    session_ttl: Duration = Duration(3600.0)
    #: Where ``/mcp`` sessions live: ``auto`` (Redis when ``[redis] url`` is set), ``memory``
    #: or ``redis`` (so any instance serves any session).
    store: str = "auto"
    #: Authorization servers named in the OAuth protected-resource metadata
    #: (``/.well-known/oauth-protected-resource``); none: clients use their gateway key.
    authorization_servers: tuple[str, ...] = ()
    #: Per-key allowlists, by key name (``[auth] keys`` names).
    access: dict[str, MCPAccessConfig] = attrs.Factory(dict)

    def problems(self) -> list[str]:
        errors = []
        for name, server in self.servers.items():
            where = f"mcp.servers.{name}"
            if not _NAME.match(name) or len(name) > 32:
                errors.append(
                    f"{where}: a server's name is 1-32 letters, digits, '-' and single '_'"
                )
            elif name == AGENTS:
                errors.append(f"{where}: '{AGENTS}' names the gateway's agents; choose another")
            errors += server.problems(where)
        if not self.path.startswith("/"):
            errors.append(f"mcp.path: expected a path starting with '/', not {self.path!r}")
        for key, access in self.access.items():
            for named in access.servers:
                if named != AGENTS and named not in self.servers:
                    errors.append(f"mcp.access.{key}.servers: no MCP server named {named!r}")
        return errors


def split_name(value: Any) -> tuple[str, str] | None:
    """``("files", "read_file")`` for ``"files__read_file"``; ``None`` for other names."""
    if not isinstance(value, str):
        return None
    server, sep, tool = value.partition(SEPARATOR)
    return (server, tool) if sep and server and tool else None
