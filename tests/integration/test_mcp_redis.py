"""One MCP session across two gateway processes: a load balancer sends each request of the
official Python SDK client's session to the other instance; the session lives in Redis."""

from __future__ import annotations

import contextlib
import itertools
import json
import sys

import redis
from aiohttp import ClientSession, web
from support.mcp import SERVER, mcp_client
from support.processes import gateway_process

FORWARDED = ("content-type", "accept", "authorization", "mcp-session-id", "mcp-protocol-version")
RETURNED = ("content-type", "mcp-session-id", "www-authenticate", "allow")


def config_toml(redis_url, prefix):
    return f"""
[auth]
keys = ["k"]

[redis]
url = "{redis_url}"
prefix = "{prefix}"

[mcp]
store = "redis"

[mcp.servers.calc]
command = {json.dumps(sys.executable)}
args = [{json.dumps(SERVER)}, "stdio"]

[agents.helper]
model = "echo"
"""


def balancer(upstreams, served):
    """A round-robin load balancer: each request to the next instance; ``served`` records
    (instance, method, JSON-RPC method)."""
    turn = itertools.cycle(range(len(upstreams)))

    async def forward(request: web.Request) -> web.Response:
        index = next(turn)
        body = await request.read()
        rpc = json.loads(body).get("method") if body else None
        served.append((index, request.method, rpc))
        headers = {k: v for k, v in request.headers.items() if k.lower() in FORWARDED}
        async with (
            ClientSession() as http,
            http.request(
                request.method, upstreams[index] + request.path, data=body, headers=headers
            ) as resp,
        ):
            data = await resp.read()
            back = {k: v for k, v in resp.headers.items() if k.lower() in RETURNED}
            return web.Response(status=resp.status, body=data, headers=back)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


async def test_one_session_served_by_two_instances(
    aiohttp_server, tmp_path, redis_url, redis_prefix
):
    cfg = config_toml(redis_url, redis_prefix)
    served: list[tuple[int, str, str | None]] = []
    with contextlib.ExitStack() as stack:
        (tmp_path / "one").mkdir()
        (tmp_path / "two").mkdir()
        one = stack.enter_context(gateway_process(config=cfg, directory=tmp_path / "one"))
        two = stack.enter_context(gateway_process(config=cfg, directory=tmp_path / "two"))
        lb = await aiohttp_server(balancer([one.url, two.url], served))
        progress = []

        async def on_progress(value, total, message):
            progress.append(message)

        # The handshake revision, whose sessions the instances share (the stateless one has none).
        async with mcp_client(str(lb.make_url("/mcp")), "k", "legacy") as mcp:
            names = {t.name for t in (await mcp.session.list_tools()).tools}
            assert {"calc__add", "agent__helper"} <= names
            for a in range(4):
                result = await mcp.session.call_tool("calc__add", {"a": a, "b": 10})
                assert result.content[0].text == str(a + 10)
            result = await mcp.session.call_tool(
                "agent__helper", {"prompt": "over two instances"}, progress_callback=on_progress
            )
            assert result.content[0].text == "over two instances"
            assert progress == ["step 1"]
            with redis.Redis.from_url(redis_url) as store:
                assert len(store.keys(f"{redis_prefix}mcp:*")) == 1  # one session for both
    posts = [(index, rpc) for index, method, rpc in served if method == "POST"]
    assert posts[0][1] == "initialize"
    calls = [index for index, rpc in posts if rpc == "tools/call"]
    assert set(calls) == {0, 1}  # the session's calls were served by both instances
    assert "Session not found" not in one.output + two.output
