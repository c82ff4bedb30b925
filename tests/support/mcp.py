"""Upstream MCP servers for the tests (``fakes/mcp_server.py``, written with the official SDK):
as a stdio command in a configuration, or as a streamable HTTP process on a free port."""

from __future__ import annotations

import contextlib
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx2
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client

from support import TESTS
from support.processes import Process, free_port
from support.waiting import wait_until

SERVER = str(TESTS / "fakes" / "mcp_server.py")


def stdio_server(**extra: Any) -> dict[str, Any]:
    """An ``[mcp.servers.<name>]`` table running the test server over stdio."""
    return {"command": sys.executable, "args": [SERVER, "stdio"], **extra}


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def http_server(port: int | None = None) -> Iterator[str]:
    """The test server over streamable HTTP until the block ends; its endpoint URL."""
    port = port or free_port()
    proc = Process([sys.executable, SERVER, "http", str(port)], env={"PATH": "/usr/bin:/bin"})
    try:
        wait_until(
            lambda: _accepts(port) or proc.returncode is not None,
            30,
            "the MCP test server listening",
            proc.describe,
        )
        assert proc.returncode is None, proc.describe()
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.stop()
        proc.kill()


@contextlib.asynccontextmanager
async def mcp_client(url: str, key: str | None = None, mode: str = "auto") -> AsyncIterator[Client]:
    """The official Python SDK's client on ``url`` (hookgate's ``/mcp``), with ``key`` as its
    bearer token. ``mode``: ``"auto"`` (the SDK's default: the stateless 2026-07-28 revision
    when the server speaks it) or ``"legacy"`` (the ``initialize`` handshake and a session)."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with (
        httpx2.AsyncClient(headers=headers) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,
    ):
        yield client
