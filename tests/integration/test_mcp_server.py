"""hookgate as an MCP server: the official Python SDK's client against ``/mcp``, over an
upstream MCP server (stdio) and the gateway's agents."""

from __future__ import annotations

import orjson
import pytest
from mcp.shared.exceptions import MCPError
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS as HANDSHAKE
from support.mcp import mcp_client, stdio_server
from support.waiting import until

KEYS = [
    {"key": "k-all", "name": "all"},
    {"key": "k-ci", "name": "ci"},
    {"key": "k-none", "name": "none"},
    {"key": "k-agents", "name": "agents-only", "models": ["helper"]},
]
CALC = {
    "calc__add",
    "calc__echo",
    "calc__whoami",
    "calc__fail",
    "calc__slow",
    "calc__die",
    "calc__tick",
}


def gateway_config(**mcp):
    return {
        "auth": {"keys": KEYS},
        "agents": {"helper": {"model": "echo", "description": "Repeats the prompt."}},
        "mcp": {
            "servers": {"calc": stdio_server()},
            "access": {
                "ci": {"servers": ["calc"]},
                "none": {"servers": [], "tools": ["calc__nothing"]},
                "agents-only": {"servers": ["agent"]},
            },
            **mcp,
        },
    }


@pytest.fixture
async def gateway(make_gateway):
    return await make_gateway(gateway_config())


def url(client):
    return str(client.make_url("/mcp"))


def text(result):
    return "".join(block.text for block in result.content)


@pytest.mark.parametrize(("mode", "version"), [("auto", "2026-07-28"), ("legacy", "2025-11-25")])
async def test_tools_of_servers_and_agents_through_the_python_sdk(gateway, mode, version):
    async with mcp_client(url(gateway), "k-all", mode) as mcp:
        assert mcp.protocol_version == version
        if mode == "legacy":
            assert mcp.server_info.name == "hookgate"
        listed = (await mcp.session.list_tools()).tools
        assert {t.name for t in listed} == CALC | {"agent__helper"}
        add = next(t for t in listed if t.name == "calc__add")
        assert add.input_schema["required"] == ["a", "b"]
        helper = next(t for t in listed if t.name == "agent__helper")
        assert helper.description == "Repeats the prompt."
        result = await mcp.session.call_tool("calc__add", {"a": 2, "b": 3})
        assert (text(result), result.structured_content, result.is_error) == (
            "5",
            {"result": 5},
            False,
        )
        failed = await mcp.session.call_tool("calc__fail", {"reason": "no"})
        assert failed.is_error and text(failed) == "Error executing tool fail: no"


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_progress_of_agents_and_of_upstream_tools(gateway, mode):
    seen = []

    async def progress(value, total, message):
        seen.append((value, total, message))

    async with mcp_client(url(gateway), "k-all", mode) as mcp:
        result = await mcp.session.call_tool(
            "agent__helper", {"prompt": "hello there"}, progress_callback=progress
        )
        assert text(result) == "hello there" and not result.is_error
        assert seen == [(1.0, None, "step 1")]
        seen.clear()
        result = await mcp.session.call_tool("calc__tick", {"steps": 3}, progress_callback=progress)
        assert text(result) == "ticked 3"
        assert seen == [(1.0, 3.0, "step 1"), (2.0, 3.0, "step 2"), (3.0, 3.0, "step 3")]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_per_key_allowlists_refuse_by_name(gateway, mode):
    async with mcp_client(url(gateway), "k-ci", mode) as mcp:
        assert {t.name for t in (await mcp.session.list_tools()).tools} == CALC
        with pytest.raises(MCPError) as info:
            await mcp.session.call_tool("agent__helper", {"prompt": "hi"})
        assert info.value.code == -32003
        assert info.value.message == "The key 'ci' may not use the tool 'agent__helper'."
    async with mcp_client(url(gateway), "k-none", mode) as mcp:
        with pytest.raises(MCPError) as info:
            await mcp.session.list_tools()
        assert info.value.code == -32003
        assert "may use none of the tools" in info.value.message
    async with mcp_client(url(gateway), "k-agents", mode) as mcp:
        assert [t.name for t in (await mcp.session.list_tools()).tools] == ["agent__helper"]
        with pytest.raises(MCPError, match="may not use the tool 'calc__add'"):
            await mcp.session.call_tool("calc__add", {"a": 1, "b": 1})
    async with mcp_client(url(gateway), "k-all", mode) as mcp:
        with pytest.raises(MCPError) as info:
            await mcp.session.call_tool("calc__nope", {})
        assert info.value.code == -32602 and "Unknown tool" in info.value.message


async def test_keys_resource_metadata_and_the_challenge(gateway):
    resp = await gateway.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert resp.status == 401
    metadata_url = str(gateway.make_url("/.well-known/oauth-protected-resource/mcp"))
    assert resp.headers["WWW-Authenticate"] == f'Bearer resource_metadata="{metadata_url}"'
    body = await resp.json()
    assert body["jsonrpc"] == "2.0" and body["id"] is None
    assert body["error"]["code"] == -32001
    for path in (
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ):
        meta = await (await gateway.get(path)).json()
        assert meta == {
            "resource": url(gateway),
            "bearer_methods_supported": ["header"],
            "resource_name": "hookgate MCP gateway",
        }
    with pytest.raises(ExceptionGroup) as group:  # the SDK's task groups wrap its error
        async with mcp_client(url(gateway), "wrong-key") as mcp:
            await mcp.session.list_tools()
    refused = group.value.exceptions[0].exceptions[0]
    assert isinstance(refused, MCPError) and refused.message == "Invalid API key."


async def test_tool_calls_are_counted_in_metrics(gateway):
    async with mcp_client(url(gateway), "k-all") as mcp:
        await mcp.session.call_tool("calc__add", {"a": 1, "b": 1})
        await mcp.session.call_tool("calc__fail", {"reason": "x"})
        await mcp.session.call_tool("agent__helper", {"prompt": "hi"})
    async with mcp_client(url(gateway), "k-ci") as mcp:
        with pytest.raises(MCPError):
            await mcp.session.call_tool("agent__helper", {"prompt": "hi"})
    metrics = await (await gateway.get("/metrics")).text()
    for line in (
        'hookgate_mcp_tool_calls_total{outcome="ok",server="calc",tool="add"} 1.0',
        'hookgate_mcp_tool_calls_total{outcome="error",server="calc",tool="fail"} 1.0',
        'hookgate_mcp_tool_calls_total{outcome="ok",server="agent",tool="helper"} 1.0',
        'hookgate_mcp_tool_calls_total{outcome="forbidden",server="agent",tool="helper"} 1.0',
    ):
        assert line in metrics


async def post(gateway, body, session=None, key="k-all", **headers):
    headers = {
        "Authorization": f"Bearer {key}",
        "Accept": "application/json, text/event-stream",
        **headers,
    }
    if session:
        headers["Mcp-Session-Id"] = session
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    resp = await gateway.post(
        "/mcp", data=data, headers={"content-type": "application/json", **headers}
    )
    return resp.status, (await resp.json() if resp.status != 202 else None), resp.headers


INIT = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "1"},
    },
}


async def test_sessions_by_hand(gateway):
    status, body, headers = await post(gateway, INIT)
    assert status == 200 and body["result"]["protocolVersion"] == "2025-06-18"
    session = headers["Mcp-Session-Id"]
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    assert (await post(gateway, ping, session))[:2] == (
        200,
        {"jsonrpc": "2.0", "id": 1, "result": {}},
    )
    status, body, _ = await post(gateway, ping)
    assert (
        status == 400
        and body["error"]["code"] == -32600
        and "Mcp-Session-Id" in body["error"]["message"]
    )
    status, body, _ = await post(gateway, ping, session, key="k-ci")  # another key's session
    assert status == 404 and body["error"]["message"].startswith("Session not found")
    initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    assert (await post(gateway, initialized, session))[0] == 202
    resp = await gateway.delete(
        "/mcp", headers={"Authorization": "Bearer k-all", "Mcp-Session-Id": session}
    )
    assert resp.status == 204
    assert (await post(gateway, ping, session))[0] == 404
    resp = await gateway.get("/mcp", headers={"Authorization": "Bearer k-all"})
    assert resp.status == 405


async def test_several_workers_without_redis_make_mcp_unavailable(make_gateway, caplog):
    gateway = await make_gateway({"server": {"workers": 2}})
    assert "/mcp is unavailable: with 2 workers its sessions need [redis] url" in caplog.text
    status, body, _ = await post(gateway, INIT, key=None)
    assert status == 503
    assert body["error"]["message"].startswith("MCP sessions need shared state")


MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
}


async def test_the_stateless_revision_by_hand(gateway):
    discover = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "server/discover",
        "params": {"_meta": MODERN_META},
    }
    headers = {"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "server/discover"}
    status, body, answered = await post(gateway, discover, **headers)
    assert status == 200 and "Mcp-Session-Id" not in answered
    assert body["result"]["supportedVersions"] == ["2026-07-28", *HANDSHAKE]
    assert body["result"]["capabilities"] == {"tools": {"listChanged": False}}
    status, body, _ = await post(gateway, discover, **{**headers, "Mcp-Method": "tools/list"})
    assert status == 400 and body["error"]["code"] == -32020  # the headers disagree with the body
    old = {**MODERN_META, "io.modelcontextprotocol/protocolVersion": "2099-01-01"}
    status, body, _ = await post(
        gateway,
        {**discover, "params": {"_meta": old}},
        **{**headers, "MCP-Protocol-Version": "2099-01-01"},
    )
    assert status == 400 and body["error"]["code"] == -32022
    assert body["error"]["data"]["requested"] == "2099-01-01"
    call = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "calc__add", "arguments": {"a": 3, "b": 4}, "_meta": MODERN_META},
    }
    status, body, _ = await post(
        gateway, call, **{**headers, "Mcp-Method": "tools/call", "Mcp-Name": "calc__add"}
    )
    assert status == 200 and body["result"]["content"] == [{"type": "text", "text": "7"}]


async def test_agent_runs_through_mcp_are_in_the_request_logs(make_gateway, tmp_path):
    log = tmp_path / "requests.jsonl"
    cfg = gateway_config()
    cfg["request_logs"] = {"sink": "file", "path": str(log)}
    gateway = await make_gateway(cfg)
    async with mcp_client(url(gateway), "k-all") as mcp:
        result = await mcp.session.call_tool("agent__helper", {"prompt": "log me"})
        assert text(result) == "log me"

    def records():
        return [orjson.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    await until(records, 10, "the agent run's record")
    [record] = records()
    assert (record["route"], record["protocol"], record["model"]) == ("mcp", "mcp", "helper")
    assert (record["principal"], record["status"]) == ("all", "success")
