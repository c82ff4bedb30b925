"""Bad input and faults at ``/mcp``: JSON-RPC error codes for malformed messages, and a clear
error for a call that is too large, a tool that hangs, and a server that goes away mid-call,
after which the gateway goes on serving."""

from __future__ import annotations

import orjson
from support.mcp import http_server, mcp_client, stdio_server
from support.waiting import until

from gateway import GATEWAY


def config(**server):
    return {
        "auth": {"keys": ["k"]},
        "mcp": {
            "servers": {"calc": stdio_server(timeout="1s", **server)},
            "max_call_size": "2KiB",
        },
    }


def text(result):
    return "".join(block.text for block in result.content)


async def rpc(gateway, body, session=None):
    headers = {
        "Authorization": "Bearer k",
        "Accept": "application/json, text/event-stream",
        "content-type": "application/json",
    }
    if session:
        headers["Mcp-Session-Id"] = session
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    resp = await gateway.post("/mcp", data=data, headers=headers)
    return resp.status, await resp.json(), resp.headers


INIT = {
    "jsonrpc": "2.0",
    "id": "init",
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "1"},
    },
}


async def test_malformed_json_rpc_gets_json_rpc_error_codes(make_gateway):
    gateway = await make_gateway(config())
    _, _, headers = await rpc(gateway, INIT)
    session = headers["Mcp-Session-Id"]
    cases = [
        (b"{not json", None, 400, -32700),
        (b"[]", None, 400, -32600),
        ([{"jsonrpc": "2.0", "id": 1, "method": "ping"}], None, 400, -32600),
        ({"id": 1, "method": "ping"}, 1, 400, -32600),
        ({"jsonrpc": "2.0", "id": 2, "method": "resources/nope"}, 2, 200, -32601),
        ({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {}}, 3, 200, -32602),
        (
            {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "nope"}},
            4,
            200,
            -32602,
        ),
        (
            {"jsonrpc": "2.0", "id": "big", "method": "ping", "params": {"x": "y" * 4096}},
            None,
            413,
            -32004,
        ),
    ]
    for body, answer_id, status, code in cases:
        got_status, got, _ = await rpc(gateway, body, session)
        assert (got_status, got["error"]["code"], got["id"]) == (status, code, answer_id), body
        assert got["jsonrpc"] == "2.0" and got["error"]["message"]
    _, got, _ = await rpc(
        gateway,
        {"jsonrpc": "2.0", "id": "big", "method": "ping", "params": {"x": "y" * 4096}},
        session,
    )
    assert "at most 2048 bytes (max_call_size)" in got["error"]["message"]
    # Still serving.
    ok = {
        "jsonrpc": "2.0",
        "id": 5,
        "method": "tools/call",
        "params": {"name": "calc__add", "arguments": {"a": 1, "b": 2}},
    }
    status, got, _ = await rpc(gateway, ok, session)
    assert status == 200 and got["result"]["content"] == [{"type": "text", "text": "3"}]


async def test_a_tool_that_hangs_is_cut_at_its_timeout(make_gateway):
    gateway = await make_gateway(config())
    async with mcp_client(str(gateway.make_url("/mcp")), "k") as mcp:
        result = await mcp.session.call_tool("calc__slow", {"seconds": 60})
        assert result.is_error
        assert (
            text(result) == "The tool 'slow' of MCP server 'calc' did not finish within 1 seconds."
        )
        assert text(await mcp.session.call_tool("calc__add", {"a": 1, "b": 1})) == "2"


async def test_a_stdio_server_that_dies_mid_call(make_gateway):
    gateway = await make_gateway(config())
    source = gateway.app[GATEWAY].tool_sources["calc"]
    async with mcp_client(str(gateway.make_url("/mcp")), "k") as mcp:
        result = await mcp.session.call_tool("calc__die", {})
        assert result.is_error
        assert text(result) == "The MCP server 'calc' went away during the call to 'die'."
        await until(lambda: source.connections == 2, 20, "the server restarted")
        assert text(await mcp.session.call_tool("calc__add", {"a": 2, "b": 2})) == "4"


async def test_an_http_server_that_dies_mid_call(make_gateway):
    with http_server() as url:
        gateway = await make_gateway(
            {"auth": {"keys": ["k"]}, "mcp": {"servers": {"web": {"url": url}}}}
        )
        async with mcp_client(str(gateway.make_url("/mcp")), "k") as mcp:
            assert text(await mcp.session.call_tool("web__add", {"a": 1, "b": 1})) == "2"
            result = await mcp.session.call_tool("web__die", {})
            assert result.is_error
            assert text(result) == "The MCP server 'web' went away during the call to 'die'."
            assert (await gateway.get("/health")).status == 200
            listed = {t.name for t in (await mcp.session.list_tools()).tools}
            assert "web__add" not in listed
