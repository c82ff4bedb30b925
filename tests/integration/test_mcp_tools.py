"""MCP servers as agents' tools: upstream servers written with the official SDK, over stdio and
streamable HTTP, called by agents that the OpenAI SDK and AG-UI clients run."""

from __future__ import annotations

import asyncio
import sys
import time

from ag_ui.core import RunAgentInput, UserMessage
from support.agui_check import checked, types_of
from support.configs import recorded, upstream_config
from support.mcp import http_server, stdio_server
from support.waiting import until

from gateway import GATEWAY

TWO_CALLS = 'CALL echo {"text": "hi"}; fail {"reason": "nope"}'


def mcp_config(upstream, servers, *, agent_mcp=None, **mcp):
    cfg = upstream_config(upstream)
    cfg["mcp"] = {"servers": servers, "serve": False, **mcp}
    cfg["agents"] = {
        "helper": {"model": "gpt-test", "system": "You help.", "mcp": agent_mcp or list(servers)}
    }
    return cfg


async def ask(sdk, client, text):
    out = await sdk(client).chat.completions.create(
        model="helper", messages=[{"role": "user", "content": text}]
    )
    return out.choices[0].message.content


def offered(body):
    """The tools a model request offered: name -> parameters."""
    return {t["function"]["name"]: t["function"]["parameters"] for t in body.get("tools") or ()}


def tool_messages(body):
    return [m["content"] for m in body["messages"] if m["role"] == "tool"]


async def test_stdio_server_tools_reach_the_model_and_calls_reach_the_server(
    make_gateway, upstream, sdk
):
    client = await make_gateway(mcp_config(upstream, {"calc": stdio_server()}))
    answer = await ask(sdk, client, 'CALL add {"a": 2, "b": 40}')
    assert answer == "Calling tools.\n\nresults: 42"
    first, second = recorded(upstream)
    tools = offered(first)
    assert set(tools) == {"add", "echo", "whoami", "fail", "slow", "die", "tick"}
    assert tools["add"]["properties"] == {
        "a": {"title": "A", "type": "integer"},
        "b": {"title": "B", "type": "integer"},
    }
    assert tools["add"]["required"] == ["a", "b"]
    assert tool_messages(second) == ["42"]


async def test_a_tool_allowlist_per_agent(make_gateway, upstream, sdk):
    cfg = mcp_config(
        upstream,
        {"calc": stdio_server()},
        agent_mcp=[{"server": "calc", "tools": ["echo"]}],
    )
    client = await make_gateway(cfg)
    answer = await ask(sdk, client, 'CALL add {"a": 1, "b": 1}')
    assert "there is no tool named 'add' (tools: echo)" in answer
    assert set(offered(recorded(upstream)[0])) == {"echo"}


async def test_tool_errors_go_back_to_the_model_marked(make_gateway, upstream, sdk):
    client = await make_gateway(mcp_config(upstream, {"calc": stdio_server()}))
    answer = await ask(sdk, client, 'CALL fail {"reason": "the disk is full"}')
    assert answer == "Calling tools.\n\nresults: Error executing tool fail: the disk is full"
    # Bad arguments are the server's to refuse; the model reads why.
    answer = await ask(sdk, client, 'CALL add {"a": "two"}')
    assert answer.startswith("Calling tools.\n\nresults: ")
    assert "validation error" in answer.lower()


async def test_streamable_http_server_through_agui(make_gateway, upstream):
    with http_server() as url:
        client = await make_gateway(mcp_config(upstream, {"web": {"url": url}}))
        body = RunAgentInput(
            thread_id="t1",
            run_id="r1",
            messages=[UserMessage(id="m1", role="user", content=TWO_CALLS)],
            tools=[],
            context=[],
            state={},
            forwarded_props={},
        ).model_dump(by_alias=True, exclude_none=True)
        resp = await client.post(
            "/agui/agents/helper/runs", json=body, headers={"accept": "text/event-stream"}
        )
        assert resp.status == 200
        events = checked(await resp.read())
    starts = [e for e in events if e["type"] == "TOOL_CALL_START"]
    assert [e["toolCallName"] for e in starts] == ["echo", "fail"]
    # The calls run at once and each result goes out as it is ready, in either order.
    names = {e["toolCallId"]: e["toolCallName"] for e in starts}
    results = {
        names[e["toolCallId"]]: (e["content"], e.get("metadata"))
        for e in events
        if e["type"] == "TOOL_CALL_RESULT"
    }
    assert results == {
        "echo": ("hi", None),
        "fail": ("Error executing tool fail: nope", {"isError": True}),
    }
    assert types_of(events)[-1] == "RUN_FINISHED"
    assert "results: hi | Error executing tool fail: nope" in "".join(
        e.get("delta", "") for e in events if e["type"] == "TEXT_MESSAGE_CONTENT"
    )


async def test_one_session_per_server_shared_by_all_runs(make_gateway, upstream, sdk):
    client = await make_gateway(mcp_config(upstream, {"calc": stdio_server()}))
    answers = await asyncio.gather(*(ask(sdk, client, "CALL whoami {}") for _ in range(4)))
    pids = {a.rsplit(" ", 1)[-1] for a in answers}
    assert len(pids) == 1, answers
    source = client.app[GATEWAY].tool_sources["calc"]
    assert source.connections == 1


async def test_a_server_that_dies_is_restarted_and_its_tools_come_back(make_gateway, upstream, sdk):
    client = await make_gateway(mcp_config(upstream, {"calc": stdio_server()}))
    source = client.app[GATEWAY].tool_sources["calc"]
    before = await ask(sdk, client, "CALL whoami {}")
    answer = await ask(sdk, client, "CALL die {}")
    assert "went away during the call to 'die'" in answer
    await until(lambda: source.connections == 2, 20, "the server restarted")
    assert "add" in source.tools()
    after = await ask(sdk, client, "CALL whoami {}")
    assert after != before  # a new process
    helper = client.app[GATEWAY].agents["helper"]
    assert "add" in {d.name for d in helper.definitions}


async def test_startup_does_not_wait_for_a_slow_server(make_gateway, upstream, sdk, caplog):
    hang = {"command": sys.executable, "args": ["-c", "import time; time.sleep(120)"]}
    cfg = mcp_config(
        upstream,
        {"calc": stdio_server(), "stuck": hang},
        agent_mcp=["calc", "stuck"],
        startup_timeout="4s",
    )
    started = time.monotonic()
    client = await make_gateway(cfg)
    assert time.monotonic() - started < 15
    assert "mcp stuck: not connected within startup_timeout (4s)" in caplog.text
    calc = client.app[GATEWAY].tool_sources["calc"]
    await until(calc.connected.is_set, 20, "the calc server connected")
    answer = await ask(sdk, client, 'CALL add {"a": 1, "b": 2}')
    assert answer.endswith("results: 3")
    # The stuck server's attempt is given up at the same bound, and tried again.
    gave_up = "mcp stuck: cannot use the server at"
    await until(lambda: gave_up in caplog.text, 20, "the stuck attempt given up")
    assert "did not complete the handshake within 4s" in caplog.text


async def test_unknown_server_names_fail_at_startup(make_gateway, upstream):
    cfg = mcp_config(upstream, {"calc": stdio_server()}, agent_mcp=["calc", "nope"])
    try:
        await make_gateway(cfg)
    except Exception as exc:
        message = str(exc)
    else:
        raise AssertionError("an agent naming an unknown MCP server started")
    assert "agents.helper.mcp[1]: no MCP server named 'nope' ([mcp.servers]: calc)" in message
