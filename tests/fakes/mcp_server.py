"""An MCP server written with the official SDK (``MCPServer``, formerly ``FastMCP``), the
upstream MCP server of the tests: ``python mcp_server.py stdio`` or ``... http PORT``.

Tools: ``add``, ``echo``, ``whoami`` (the process id: one process is one session over stdio),
``fail`` (the tool's own error), ``slow`` (sleeps), ``die`` (the process exits mid-call),
``tick`` (reports progress).
"""

from __future__ import annotations

import asyncio
import os
import sys

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("calc", instructions="Arithmetic for tests.", log_level="WARNING")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two whole numbers."""
    return a + b


@server.tool()
def echo(text: str) -> str:
    """Return the text as it came."""
    return text


@server.tool()
def whoami() -> str:
    """The server process's id."""
    return str(os.getpid())


@server.tool()
def fail(reason: str) -> str:
    """Always fails with the reason."""
    raise ToolError(reason)


@server.tool()
async def slow(seconds: float) -> str:
    """Sleep, then answer."""
    await asyncio.sleep(seconds)
    return "done"


@server.tool()
def die() -> str:
    """Exit the server process in the middle of the call."""
    os._exit(3)


@server.tool()
async def tick(steps: int, ctx: Context) -> str:
    """Count to ``steps``, reporting progress at each."""
    for i in range(steps):
        await ctx.report_progress(i + 1, steps, f"step {i + 1}")
    return f"ticked {steps}"


if __name__ == "__main__":
    if sys.argv[1] == "stdio":
        server.run()
    else:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
