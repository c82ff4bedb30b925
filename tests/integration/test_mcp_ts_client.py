"""The official MCP TypeScript SDK's client (``@modelcontextprotocol/sdk``) against ``/mcp``."""

from __future__ import annotations

import asyncio
import json
import shutil

from support.mcp import stdio_server

from gateway import __version__


async def test_typescript_sdk_client(make_gateway, mcp_ts_client):
    gateway = await make_gateway(
        {
            "auth": {"keys": ["k-ts"]},
            "mcp": {"servers": {"calc": stdio_server()}},
            "agents": {"helper": {"model": "echo"}},
        }
    )
    node = shutil.which("node")
    assert node, "node runs the TypeScript SDK's client"
    proc = await asyncio.create_subprocess_exec(
        node,
        str(mcp_ts_client / "run.mjs"),
        str(gateway.make_url("/mcp")),
        "k-ts",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    seen = json.loads(out)
    assert seen["protocolVersion"] == "2025-11-25"
    assert seen["sessionId"]
    assert seen["server"] == {"name": "hookgate", "version": __version__}
    assert seen["tools"] == [
        "agent__helper",
        *sorted(f"calc__{t}" for t in ("add", "die", "echo", "fail", "slow", "tick", "whoami")),
    ]
    assert seen["add"] == {
        "content": [{"type": "text", "text": "42"}],
        "structuredContent": {"result": 42},
        "isError": False,
    }
    assert seen["agent"] == {
        "content": [{"type": "text", "text": "from typescript"}],
        "isError": False,
    }
    assert seen["progress"] == [{"progress": 1, "message": "step 1"}]
    assert seen["failed"]["isError"] is True
    assert seen["failed"]["content"] == [{"type": "text", "text": "Error executing tool fail: ts"}]
    assert seen["unknown"] == {
        "code": -32602,
        "message": "MCP error -32602: Unknown tool: calc__nope",
    }
