"""MCP (the Model Context Protocol): MCP servers' tools for agents, and the gateway as an MCP
server.

``[mcp.servers.<name>]`` tables name MCP servers (a command run over stdio, or a streamable
HTTP URL); the gateway keeps one session with each (:mod:`.upstream`) and agents that list a
server in their ``mcp`` see its tools. The official ``mcp`` SDK does the client side; it is
the ``mcp`` extra, imported only when something needs it.
"""
