"""Delegation out: A2AClient and remote_agents, against a second hookgate process."""

from __future__ import annotations

import re
import time
from types import SimpleNamespace

import aiohttp
import orjson
import pytest
from aiohttp import web
from fakes.triggers import until
from support.a2a_check import answer, ask, collect, fold
from support.agui_check import checked
from support.configs import agent_toml, recorded, upstream_config
from support.processes import fake_upstream_process, free_port, gateway_process
from support.proxy import ForwardProxy

from gateway.protocols.a2a import A2AClient, A2AError

KEY = "sk-remote"


@pytest.fixture(scope="module")
def remote(tmp_path_factory):
    """A second gateway, in a process of its own, serving the agent ``helper`` (described as
    researching things) over its own fake upstream, for the key ``sk-remote``."""
    with fake_upstream_process() as upstream:
        toml = agent_toml(
            tmp_path_factory.mktemp("remote") / "hookgate.toml",
            upstream,
            f'[auth]\nkeys = ["{KEY}"]\n',
            description='"Researches things."',
        )
        with gateway_process("serve", "--config", toml) as process:
            yield SimpleNamespace(url=process.url, process=process, upstream=upstream)


async def test_a2a_client_reaches_the_remote_through_the_environments_proxy(remote, monkeypatch):
    with ForwardProxy("ada", "pw").running() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url("ada:pw"))
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        async with A2AClient(remote.url, api_key=KEY) as client:
            (card,) = await client.discover()
            for stream in (True, False):
                result = await client.delegate("helper", f"proxied {stream}", stream=stream)
                assert result.ok and result.text == f"upstream says: proxied {stream}"
    assert proxy.refused == 0
    assert proxy.asked[0].startswith(f"GET {remote.url}/")
    assert any(line.startswith(f"POST {card.url}") for line in proxy.asked), (proxy.asked, card.url)


def run_input(text, run_id="run-1", thread_id="thread-1"):
    return {
        "threadId": thread_id,
        "runId": run_id,
        "messages": [{"id": "m1", "role": "user", "content": text}],
    }


async def test_a2a_client_discovers_and_delegates(remote):
    async with A2AClient(remote.url, api_key=KEY) as client:
        (card,) = await client.discover()
        assert (card.name, card.description) == ("helper", "Researches things.")
        assert card.url == f"{remote.url}/a2a/helper"
        assert (card.protocol, card.streaming, card.auth) == ("1.0", True, "bearer")
        result = await client.delegate("helper", "hello")
        assert result.ok and result.text == "upstream says: hello"
        assert result.state == "TASK_STATE_COMPLETED" and result.context_id
        updates = [u async for u in client.stream("helper", "streamed")]
        assert "task" in updates[0] and any("artifactUpdate" in u for u in updates)
        assert updates[-1]["statusUpdate"]["status"]["state"] == "TASK_STATE_COMPLETED"
        polled = await client.delegate("helper", "polled", stream=False)
        assert polled.ok and polled.text == "upstream says: polled"
        failed = await client.delegate("helper", "ERRFRAME")
        assert not failed.ok and failed.state == "TASK_STATE_FAILED"
        assert "mid-stream (type server_error)" in failed.status_text
        task = await client.get_task("helper", result.id, history_length=1)
        assert task["status"]["state"] == "TASK_STATE_COMPLETED" and len(task["history"]) == 1
        with pytest.raises(A2AError, match="no agent named 'nobody'"):
            await client.delegate("nobody", "hi")
        with pytest.raises(A2AError) as info:
            await client.get_task("helper", "no-such-task")
        assert info.value.code == -32001

    # the agent's 0.3 card: the same calls in 0.3's method names and shapes
    async with A2AClient(f"{remote.url}/a2a/helper/.well-known/agent.json", api_key=KEY) as old:
        card = await old.card()
        assert card.protocol == "0.3"
        for stream in (True, False):
            result = await old.delegate(card, f"legacy {stream}", stream=stream)
            assert result.ok and result.text == f"upstream says: legacy {stream}"
        assert (await old.get_task(card, result.id))["status"]["state"] == "TASK_STATE_COMPLETED"

    async with A2AClient(remote.url, api_key="wrong") as bad:
        with pytest.raises(A2AError) as info:
            await bad.delegate("helper", "hi")
        assert info.value.code == -32000 and "Invalid API key" in info.value.message
    async with A2AClient(f"http://127.0.0.1:{free_port()}") as gone:
        with pytest.raises(A2AError, match="cannot reach"):
            await gone.discover()


async def test_an_agent_delegates_to_remote_agents_as_tools(make_gateway, upstream, remote):
    ghost = f"http://127.0.0.1:{free_port()}/a2a/ghost"
    cfg = upstream_config(upstream)
    cfg["agents"] = {
        "boss": {
            "model": "gpt-test",
            "remote_agents": [
                {"url": f"{remote.url}/a2a/helper", "api_key": KEY, "name": "researcher"},
                {"url": remote.url, "agent": "helper", "api_key": KEY, "timeout": "1s"},
                ghost,
            ],
        }
    }
    started = time.monotonic()
    client = await make_gateway(cfg)
    assert time.monotonic() - started < 5  # a remote agent that is down does not hold the start
    script = 'CALL researcher {"task": "Find the capital"}; ghost {"task": "boo"}'
    resp = await client.post("/agui/agents/boss/runs", json=run_input(script))
    events = checked(await resp.read())
    names = {e["toolCallId"]: e["toolCallName"] for e in events if e["type"] == "TOOL_CALL_START"}
    results = {names[e["toolCallId"]]: e for e in events if e["type"] == "TOOL_CALL_RESULT"}
    assert results["researcher"]["content"] == "upstream says: Find the capital"
    assert "metadata" not in results["researcher"]
    assert results["ghost"]["metadata"] == {"isError": True}
    assert results["ghost"]["content"] == (
        "Error: the remote agent 'ghost' failed: it cannot be reached (ClientConnectorError)."
    )
    assert events[-1]["type"] == "RUN_FINISHED"
    # the model saw each remote agent as a tool described by its card
    tools = {t["function"]["name"]: t["function"] for t in recorded(upstream)[0]["tools"]}
    assert set(tools) == {"researcher", "helper", "ghost"}
    assert tools["researcher"]["description"].startswith("Researches things.")
    assert tools["researcher"]["parameters"]["required"] == ["task"]
    assert tools["ghost"]["description"] == "Delegate a task to the remote agent 'ghost'."

    # a remote call past its tool's timeout is a tool error, and its remote task is canceled
    resp = await client.post(
        "/agui/agents/boss/runs", json=run_input('CALL helper {"task": "SLOW:3"}', "run-2")
    )
    events = checked(await resp.read())
    (result,) = [e for e in events if e["type"] == "TOOL_CALL_RESULT"]
    assert result["metadata"] == {"isError": True}
    assert "did not finish within 1 seconds" in result["content"]
    headers = {"Authorization": f"Bearer {KEY}", "A2A-Version": "1.0"}
    listing = {"status": "TASK_STATE_CANCELED"}
    async with aiohttp.ClientSession(headers=headers) as session:

        async def canceled():
            call = {"jsonrpc": "2.0", "id": 1, "method": "ListTasks", "params": listing}
            async with session.post(f"{remote.url}/a2a/helper", json=call) as resp:
                return (await resp.json())["result"]["tasks"]

        (task,) = await until(canceled)
    assert task["history"][0]["parts"] == [{"text": "SLOW:3"}]


async def test_calls_of_one_conversation_share_a_remote_context(make_gateway, upstream, remote):
    cfg = upstream_config(upstream)
    cfg["agents"] = {
        "boss": {
            "model": "gpt-test",
            "remote_agents": [{"url": remote.url, "agent": "helper", "api_key": KEY}],
        }
    }
    client = await make_gateway(cfg)
    for run, word in (("r1", "alpha"), ("r2", "beta")):  # two runs of one AG-UI thread
        body = run_input(f'CALL helper {{"task": "{word}"}}', run, "thread-shared")
        checked(await (await client.post("/agui/agents/boss/runs", json=body)).read())
    async with (
        aiohttp.ClientSession() as session,
        session.get(remote.upstream.removesuffix("/v1") + "/_requests") as resp,
    ):
        seen = await resp.json()
    (last,) = [r for r in seen if r["messages"][-1]["content"] == "beta"]
    assert [(m["role"], m["content"]) for m in last["messages"]] == [
        ("user", "alpha"),
        ("assistant", "upstream says: alpha"),
        ("user", "beta"),
    ]


# --- a remote agent that fails: its URL and its words stay inside the gateway --------------------

USERINFO = "svc:userinfo-pw-7788"
QUERY_SECRET = "query-sig-4455"
INTERNAL = "10.9.8.7"
SAID = f"failed at http://{INTERNAL}:9000/admin?token=said-secret-1122 password=hunter22"


def failing_remote() -> web.Application:
    """A remote A2A agent (1.0, no streaming) that fails as its task says: ``HTTP500`` (a
    plain-text 500), ``RPCERROR`` (a JSON-RPC error), ``POLICY`` (a JSON-RPC error that explains
    a content-policy refusal), ``FAILTASK`` (a task that fails); each with a message full of
    URLs and secrets. ``/gone`` is an agent whose card points at a port nothing listens on."""
    gone_port = free_port()

    async def card(request: web.Request) -> web.Response:
        base = f"http://127.0.0.1:{request.url.port}"
        rpc = f"{base}/partner/rpc?sig={QUERY_SECRET}"
        if request.match_info["agent"] == "gone":
            rpc = f"http://127.0.0.1:{gone_port}/rpc?sig={QUERY_SECRET}"
        iface = {"url": rpc, "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}
        return web.json_response(
            {
                "name": request.match_info["agent"],
                "description": "Fails.",
                "version": "1",
                "supportedInterfaces": [iface],
                "capabilities": {"streaming": False},
            }
        )

    async def rpc(request: web.Request) -> web.Response:
        call = await request.json()
        text = call["params"]["message"]["parts"][0]["text"]
        if text == "HTTP500":
            return web.Response(status=500, text=SAID)
        error = None
        if text == "RPCERROR":
            error = {"code": -32603, "message": SAID}
        elif text == "POLICY":
            error = {"code": -32000, "message": f"content policy violation: {SAID}"}
        if error is not None:
            return web.json_response({"jsonrpc": "2.0", "id": call["id"], "error": error})
        status = {
            "state": "TASK_STATE_FAILED",
            "message": {"messageId": "m", "role": "ROLE_AGENT", "parts": [{"text": SAID}]},
        }
        task = {"id": "t-1", "contextId": "c-1", "status": status}
        return web.json_response({"jsonrpc": "2.0", "id": call["id"], "result": {"task": task}})

    app = web.Application()
    app.router.add_get("/{agent}/.well-known/agent-card.json", card)
    app.router.add_post("/partner/rpc", rpc)
    return app


async def test_a_failing_remote_agent_is_named_never_its_url_nor_its_words(
    make_gateway, upstream, aiohttp_server, official, caplog
):
    server = await aiohttp_server(failing_remote())
    base = f"http://{USERINFO}@127.0.0.1:{server.port}"
    cfg = upstream_config(upstream)
    cfg["agents"] = {
        "boss": {
            "model": "gpt-test",
            "remote_agents": [
                {"url": f"{base}/partner", "name": "partner"},
                {"url": f"{base}/gone", "name": "gone"},
            ],
        }
    }
    client = await make_gateway(cfg)
    script = "CALL " + "; ".join(
        f'{agent} {{"task": "{task}"}}'
        for agent, task in [
            ("partner", "HTTP500"),
            ("partner", "RPCERROR"),
            ("partner", "POLICY"),
            ("partner", "FAILTASK"),
            ("gone", "hello"),
        ]
    )
    a2a = await official(str(client.make_url("/a2a/boss")), streaming=True)
    caplog.clear()
    results = await collect(a2a.send_message(ask(script)))
    task = fold(results)
    assert task["status"]["state"] == "TASK_STATE_COMPLETED"  # tool errors are the model's to read
    outcomes = [
        p["data"]
        for r in results
        if "statusUpdate" in r
        for p in (r["statusUpdate"]["status"].get("message") or {}).get("parts", [])
        if p.get("data", {}).get("type") == "tool_result"
    ]
    assert all(o["isError"] for o in outcomes)
    contents = sorted(o["content"] for o in outcomes)  # in the order they ended
    assert contents == sorted(
        [
            "Error: the remote agent 'partner' failed: it answered HTTP 500 without JSON.",
            "Error: the remote agent 'partner' failed: it answered with an error (JSON-RPC -32603).",
            "Error: the remote agent 'partner' failed: it answered with an error (JSON-RPC -32000). "
            "content policy violation: failed at [redacted] password=[redacted]",
            "Error: the remote agent 'partner' failed: its task ended failed.",
            "Error: the remote agent 'gone' failed: it cannot be reached (ClientConnectorError).",
        ]
    )
    assert all(c in answer(task) for c in contents)  # the model's answer quotes them
    # nothing of the URLs, their secrets or the agent's words, anywhere the caller looks
    seen = orjson.dumps(results).decode()
    for secret in (USERINFO, "userinfo-pw", QUERY_SECRET, INTERNAL, "said-secret", "hunter22"):
        assert secret not in seen, secret
    assert f"127.0.0.1:{server.port}" not in seen
    # the log: one warning per failure, with the request id, the agent and the reason
    warnings = [r.getMessage() for r in caplog.records if "remote agent" in r.getMessage()]
    assert len(warnings) == 5, warnings
    for w in warnings:  # the A2A call's request id
        assert re.match(r"request [0-9a-f]{24}, agent boss: the remote agent \w+ \(", w), w
    (http500,) = [w for w in warnings if w.endswith("it answered HTTP 500 without JSON")]
    assert f"partner (http://[redacted]@127.0.0.1:{server.port}/partner) failed" in http500
    logged = caplog.text
    for secret in (USERINFO, "userinfo-pw", QUERY_SECRET, INTERNAL, "said-secret", "hunter22"):
        assert secret not in logged, secret
    assert not [r for r in caplog.records if r.exc_info], "no traceback for a remote failure"
