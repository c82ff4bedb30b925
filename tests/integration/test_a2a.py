"""A2A: the official a2a-sdk client (1.0 and 0.3) against hookgate's agents; cards and errors."""

from __future__ import annotations

import time

import orjson
import pytest
from a2a.client.card_resolver import parse_agent_card
from a2a.compat.v0_3 import types as types_v03
from a2a.types.a2a_pb2 import (
    CancelTaskRequest,
    GetTaskRequest,
    ListTasksRequest,
    SubscribeToTaskRequest,
)
from a2a.utils.errors import (
    TaskNotCancelableError,
    TaskNotFoundError,
    UnsupportedOperationError,
)
from fakes.openai_upstream import CANCELLED
from fakes.triggers import until
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp
from support.a2a_check import KEYS, agent_config, answer, ask, collect, fold, head_of, rpc, states
from support.configs import recorded

from gateway import ConfigError, __version__, create_app
from gateway.protocols.a2a.cards import AGENTS_EXTENSION

COMPLETED = "TASK_STATE_COMPLETED"
WORKING = "TASK_STATE_WORKING"
WORDS = " ".join(f"w{i}" for i in range(30))


def slow_config(**extra):
    """An agent whose model (echo) writes one word every 20 ms."""
    return {
        "backends": {"slow": {"kind": "echo", "delay": "20ms"}},
        "models": {"slow": {"backend": "slow"}},
        "agents": {"talker": {"model": "slow"}},
        **KEYS,
        **extra,
    }


def data_parts(results):
    """The data parts of the status messages of a stream (the agent's tool activity)."""
    return [
        p["data"]
        for r in results
        if "statusUpdate" in r
        for p in r["statusUpdate"]["status"].get("message", {}).get("parts", [])
        if "data" in p
    ]


@pytest.mark.parametrize("streaming", [True, False], ids=["stream", "send"])
async def test_the_official_client_runs_an_agent_with_its_tools(
    make_gateway, upstream, official, streaming
):
    client = await make_gateway(agent_config(upstream))
    a2a = await official(str(client.make_url("/a2a/helper")), "sk-a", streaming=streaming)
    results = await collect(a2a.send_message(ask('CALL get_weather {"city": "Paris"}')))
    assert a2a.sent == [("1.0", "SendStreamingMessage" if streaming else "SendMessage")]
    expected = 'Calling tools.\n\nresults: {"city":"Paris","temperature":21,"unit":"C"}'
    if streaming:
        task = fold(results)
        assert states(results)[:2] == ["TASK_STATE_SUBMITTED", WORKING]
        assert states(results)[-1] == COMPLETED
        activity = data_parts(results)
        # the answer streams as chunks of one artifact
        chunks = [r for r in results if "artifactUpdate" in r]
        assert len(chunks) > 2 and chunks[-1]["artifactUpdate"]["lastChunk"] is True
    else:
        (only,) = results
        task = only["task"]
        history = task["history"]
        assert [m["role"] for m in history] == ["ROLE_USER", *["ROLE_AGENT"] * 3]
        activity = [p["data"] for m in history for p in m["parts"] if "data" in p]
    assert task["status"]["state"] == COMPLETED
    assert answer(task) == expected
    assert [(d["type"], d["name"]) for d in activity] == [
        ("tool_call", "get_weather"),
        ("tool_result", "get_weather"),
    ]
    assert activity[0]["arguments"] == {"city": "Paris"} and activity[1]["isError"] is False
    usage = (results[-1]["statusUpdate"] if streaming else task)["metadata"]["usage"]
    assert usage == {"inputTokens": 22, "outputTokens": 14}  # both model calls
    # the agent's model got its instructions, its tools and the user's text
    first = recorded(upstream)[0]
    assert first["messages"][0] == {"role": "system", "content": "You help."}
    assert first["messages"][1]["content"] == 'CALL get_weather {"city": "Paris"}'
    assert {t["function"]["name"] for t in first["tools"]} == {"get_weather", "get_time", "explode"}


@pytest.mark.parametrize("streaming", [True, False], ids=["stream", "send"])
async def test_the_official_client_through_the_0_3_card(
    make_gateway, upstream, official, streaming
):
    client = await make_gateway(agent_config(upstream))
    url = str(client.make_url("/a2a/helper"))
    a2a = await official(url, "sk-a", streaming=streaming, legacy=True)
    results = await collect(a2a.send_message(ask('CALL explode {"reason": "no"}')))
    assert a2a.sent == [("0.3", "message/stream" if streaming else "message/send")]
    task = fold(results) if streaming else results[0]["task"]
    assert task["status"]["state"] == COMPLETED
    assert answer(task) == "Calling tools.\n\nresults: Error: ValueError: no"
    # tasks/get and tasks/cancel through 0.3 too
    got = json_format.MessageToDict(await a2a.get_task(GetTaskRequest(id=task["id"])))
    assert got["status"]["state"] == COMPLETED and answer(got) == answer(task)
    with pytest.raises(TaskNotCancelableError):
        await a2a.cancel_task(CancelTaskRequest(id=task["id"]))
    assert a2a.sent[1:] == [("0.3", "tasks/get"), ("0.3", "tasks/cancel")]


async def test_cards_in_each_form_with_their_security(make_gateway, upstream):
    client = await make_gateway(agent_config(upstream))
    url = str(client.make_url("/a2a/helper"))
    resp = await client.get(
        "/a2a/helper/.well-known/agent-card.json", headers={"A2A-Version": "1.0"}
    )
    assert resp.status == 200 and resp.headers["Vary"] == "A2A-Version"
    raw = await resp.json()
    assert "url" not in raw and "security" not in raw  # 1.0 only
    card = parse_agent_card(raw)
    assert (card.name, card.description, card.version) == (
        "helper",
        "Helps with the weather.",
        __version__,
    )
    assert [(i.url, i.protocol_binding, i.protocol_version) for i in card.supported_interfaces] == [
        (url, "JSONRPC", "1.0"),
        (url, "JSONRPC", "0.3"),
    ]
    assert card.capabilities.streaming and not card.capabilities.push_notifications
    assert list(card.default_output_modes) == ["text/plain"]
    assert {"text/plain", "application/json", "image/png"} <= set(card.default_input_modes)
    assert [s.id for s in card.skills] == [
        "helper",
        "helper.get_weather",
        "helper.get_time",
        "helper.explode",
    ]
    assert card.skills[1].description == "The current weather in a city."
    assert card.security_schemes["bearer"].http_auth_security_scheme.scheme == "Bearer"
    api_key = card.security_schemes["apiKey"].api_key_security_scheme
    assert (api_key.location, api_key.name) == ("header", "x-api-key")
    assert [list(r.schemes) for r in card.security_requirements] == [["bearer"], ["apiKey"]]

    # without A2A-Version: the same 1.0 card
    plain = await (await client.get("/a2a/helper/.well-known/agent-card.json")).json()
    assert plain == raw

    # asked for 0.3: a card in 0.3's shape only, as at the path where 0.2 clients looked
    old = await (
        await client.get("/a2a/helper/.well-known/agent-card.json", headers={"A2A-Version": "0.3"})
    ).json()
    assert old == await (await client.get("/a2a/helper/.well-known/agent.json")).json()
    assert "supportedInterfaces" not in old and "securityRequirements" not in old
    legacy = types_v03.AgentCard.model_validate(old)
    assert (legacy.url, legacy.protocol_version, legacy.preferred_transport) == (
        url,
        "0.3.0",
        "JSONRPC",
    )
    assert legacy.security == [{"bearer": []}, {"apiKey": []}]
    assert legacy.security_schemes["bearer"].root.scheme == "bearer"
    assert parse_agent_card(old).supported_interfaces[0].protocol_version == "0.3.0"

    # the gateway's card lists its agents as skills, and where their cards are
    top = await (
        await client.get("/.well-known/agent-card.json", headers={"A2A-Version": "1"})
    ).json()
    gateway = parse_agent_card(dict(top))
    assert gateway.name == "hookgate" and [s.id for s in gateway.skills] == ["helper"]
    assert gateway.supported_interfaces[0].url == str(client.make_url("/a2a"))
    (extension,) = top["capabilities"]["extensions"]
    assert extension["uri"] == AGENTS_EXTENSION
    assert extension["params"]["agents"] == [
        {"name": "helper", "url": url, "card": url + "/.well-known/agent-card.json"}
    ]
    assert (
        types_v03.AgentCard.model_validate(
            await (await client.get("/.well-known/agent.json")).json()
        )
        .skills[0]
        .id
        == "helper"
    )

    # cards are public, the agents are not
    resp = await client.post("/a2a/helper", json={"jsonrpc": "2.0", "id": 1, "method": "GetTask"})
    assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
    body = await resp.json()
    assert body["jsonrpc"] == "2.0" and body["error"]["code"] == -32000
    assert (await client.get("/a2a/nobody/.well-known/agent-card.json")).status == 404
    missing = await rpc(
        client, "/a2a/nobody", "GetTask", {"id": "x"}, headers={"x-api-key": "sk-a"}, status=404
    )
    assert missing["error"]["code"] == -32602 and missing["id"] is None


async def test_cards_say_no_security_when_the_gateway_is_open(make_gateway, upstream):
    cfg = agent_config(upstream)
    del cfg["auth"]
    client = await make_gateway(cfg)
    for path in ("/a2a/helper/.well-known/agent-card.json", "/.well-known/agent.json"):
        card = await (await client.get(path, headers={"A2A-Version": "1.0"})).json()
        assert "securitySchemes" not in card and "securityRequirements" not in card
    public = await make_gateway(
        {**agent_config(upstream), "a2a": {"public_url": "https://gw.example/"}}
    )
    card = await (await public.get("/a2a/helper/.well-known/agent-card.json")).json()
    assert card["supportedInterfaces"][0]["url"] == "https://gw.example/a2a/helper"
    with pytest.raises(ConfigError) as info:
        create_app({"a2a": {"public_url": "gw.example"}}, env={})
    assert info.value.errors == ["a2a.public_url: not a URL: 'gw.example'"]


async def test_get_list_and_context_history(make_gateway, upstream, official):
    client = await make_gateway(agent_config(upstream))
    url = str(client.make_url("/a2a/helper"))
    a2a = await official(url, "sk-a", streaming=False)
    (first,) = await collect(a2a.send_message(ask("one")))
    first = first["task"]
    (second,) = await collect(a2a.send_message(ask("two", context_id=first["contextId"])))
    second = second["task"]
    assert second["contextId"] == first["contextId"] and second["id"] != first["id"]
    # the second task's agent saw the first exchange of the context
    messages = recorded(upstream)[-1]["messages"]
    assert [(m["role"], m["content"]) for m in messages] == [
        ("system", "You help."),
        ("user", "one"),
        ("assistant", "upstream says: one"),
        ("user", "two"),
    ]
    got = json_format.MessageToDict(
        await a2a.get_task(GetTaskRequest(id=first["id"], history_length=1))
    )
    assert got["status"]["state"] == COMPLETED and answer(got) == "upstream says: one"
    assert [m["role"] for m in got["history"]] == ["ROLE_AGENT"]
    page = json_format.MessageToDict(
        await a2a.list_tasks(ListTasksRequest(context_id=first["contextId"], page_size=1))
    )
    assert [t["id"] for t in page["tasks"]] == [second["id"]]  # the latest first
    assert page["totalSize"] == 2 and page["nextPageToken"] and "artifacts" not in page["tasks"][0]
    rest = json_format.MessageToDict(
        await a2a.list_tasks(
            ListTasksRequest(page_size=5, page_token=page["nextPageToken"], include_artifacts=True)
        )
    )
    assert [t["id"] for t in rest["tasks"]] == [first["id"]] and not rest.get("nextPageToken")
    assert answer(rest["tasks"][0]) == "upstream says: one"
    done = json_format.MessageToDict(
        await a2a.list_tasks(ListTasksRequest(status="TASK_STATE_COMPLETED", page_size=10))
    )
    assert done["totalSize"] == 2
    since = Timestamp()
    since.FromSeconds(int(time.time()) + 3600)
    later = json_format.MessageToDict(
        await a2a.list_tasks(ListTasksRequest(status_timestamp_after=since))
    )
    assert later.get("totalSize", 0) == 0
    since.FromSeconds(int(time.time()) - 3600)
    earlier = json_format.MessageToDict(
        await a2a.list_tasks(ListTasksRequest(status_timestamp_after=since))
    )
    assert earlier["totalSize"] == 2
    assert a2a.sent[-1] == ("1.0", "ListTasks")

    # another key sees none of it, and its own context of the same id starts empty
    other = await official(url, "sk-b", streaming=False)
    with pytest.raises(TaskNotFoundError):
        await other.get_task(GetTaskRequest(id=first["id"]))
    assert (
        json_format.MessageToDict(await other.list_tasks(ListTasksRequest())).get("totalSize", 0)
        == 0
    )
    await collect(other.send_message(ask("three", context_id=first["contextId"])))
    assert [m["role"] for m in recorded(upstream)[-1]["messages"]] == ["system", "user"]


async def test_cancel_task_stops_the_run_and_its_upstream_request(make_gateway, upstream, official):
    client = await make_gateway(agent_config(upstream))
    a2a = await official(str(client.make_url("/a2a/helper")), "sk-a", streaming=False, polling=True)
    (started,) = await collect(a2a.send_message(ask("DRIP")))
    task_id = started["task"]["id"]
    assert started["task"]["status"]["state"] == WORKING  # returnImmediately

    async def writing():
        task = json_format.MessageToDict(await a2a.get_task(GetTaskRequest(id=task_id)))
        return answer(task).startswith("drip")

    await until(writing)
    canceled = json_format.MessageToDict(await a2a.cancel_task(CancelTaskRequest(id=task_id)))
    assert canceled["status"]["state"] == "TASK_STATE_CANCELED"
    assert answer(canceled).startswith("drip drip")
    await until(lambda: "DRIP" in upstream.app[CANCELLED])
    with pytest.raises(TaskNotCancelableError):
        await a2a.cancel_task(CancelTaskRequest(id=task_id))
    again = json_format.MessageToDict(await a2a.get_task(GetTaskRequest(id=task_id)))
    assert again["status"]["state"] == "TASK_STATE_CANCELED"
    with pytest.raises(TaskNotFoundError):
        await a2a.cancel_task(CancelTaskRequest(id="no-such-task"))


async def test_subscribe_resumes_a_task_in_both_versions(make_gateway, official):
    client = await make_gateway(slow_config())
    url = str(client.make_url("/a2a/talker"))
    for legacy in (False, True):
        a2a = await official(url, "sk-a", legacy=legacy)
        head = await head_of(
            a2a.send_message(ask(WORDS)), 5
        )  # the client goes away; the task goes on
        task_id = head[0]["task"]["id"]
        rest = await collect(a2a.subscribe(SubscribeToTaskRequest(id=task_id)))
        snapshot = rest[0]["task"]  # first what happened so far, as one task
        assert snapshot["status"]["state"] == WORKING
        assert answer(snapshot).startswith(answer(fold(head)))
        final = fold(rest)
        assert final["status"]["state"] == COMPLETED and answer(final) == WORDS
        method = "tasks/resubscribe" if legacy else "SubscribeToTask"
        assert a2a.sent[-1] == ("0.3" if legacy else "1.0", method)
        # a task that has ended takes no subscription
        with pytest.raises(UnsupportedOperationError):
            await collect(a2a.subscribe(SubscribeToTaskRequest(id=task_id)))


async def test_a_task_that_cannot_finish_ends_failed_saying_why(make_gateway, upstream, official):
    client = await make_gateway(agent_config(upstream))
    a2a = await official(str(client.make_url("/a2a/helper")), "sk-a")
    results = await collect(a2a.send_message(ask("ERRFRAME")))  # fails mid-answer
    assert states(results)[-1] == "TASK_STATE_FAILED"
    final = results[-1]["statusUpdate"]
    assert "mid-stream (type server_error)" in final["status"]["message"]["parts"][0]["text"]
    assert answer(fold(results)) == "upstream "  # what was written before stays
    task = json_format.MessageToDict(await a2a.get_task(GetTaskRequest(id=final["taskId"])))
    assert task["status"]["state"] == "TASK_STATE_FAILED"
    # an upstream that refuses at once (a rate limit, a 500): the task fails with the reason
    sync = await official(str(client.make_url("/a2a/helper")), "sk-a", streaming=False)
    for text, code in (("STATUS:429", "rate_limit"), ("STATUS:500", "upstream")):
        (only,) = await collect(sync.send_message(ask(text)))
        status = only["task"]["status"]
        assert status["state"] == "TASK_STATE_FAILED"
        assert "answered with an error (status" in status["message"]["parts"][0]["text"]
        assert only["task"]["metadata"]["code"] == code
    assert only["task"]["metadata"] == {"code": "upstream"}
    (limited,) = await collect(sync.send_message(ask("STATUS:429")))
    assert limited["task"]["metadata"] == {"code": "rate_limit", "retryAfter": 7}


async def test_the_gateway_endpoint_reaches_every_agent(make_gateway, upstream):
    cfg = agent_config(upstream)
    cfg["agents"]["other"] = {"model": "gpt-test"}
    client = await make_gateway(cfg)
    a = {"A2A-Version": "1.0", "x-api-key": "sk-a"}

    def send(text, **metadata):
        message = {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": text}]}
        return rpc(
            client, "/a2a", "SendMessage", {"message": message, "metadata": metadata}, headers=a
        )

    body = await send("hi")
    assert body["error"]["code"] == -32602 and "helper, other" in body["error"]["message"]
    body = await send("hi", agent="nobody")
    assert body["error"]["code"] == -32602
    body = await send("hi", agent="other")
    task = body["result"]["task"]
    assert answer(task) == "upstream says: hi"
    assert task["metadata"] == {"agent": "other", "usage": {"inputTokens": 11, "outputTokens": 7}}
    assert "system" not in [m["role"] for m in recorded(upstream)[-1]["messages"]]  # other's
    # tasks are found through the gateway endpoint, or their own agent's only
    body = await rpc(client, "/a2a", "GetTask", {"id": task["id"]}, headers=a)
    assert body["result"]["id"] == task["id"]
    body = await rpc(client, "/a2a/other", "GetTask", {"id": task["id"]}, headers=a)
    assert body["result"]["id"] == task["id"]
    body = await rpc(client, "/a2a/helper", "GetTask", {"id": task["id"]}, headers=a)
    assert body["error"]["code"] == -32001
    body = await rpc(client, "/a2a/helper", "ListTasks", {}, headers=a)
    assert body["result"]["totalSize"] == 0
    body = await rpc(client, "/a2a", "ListTasks", {}, headers=a)
    assert body["result"]["totalSize"] == 1
    # the client's 0.3 stream: status updates say final, results have kinds
    message = {
        "kind": "message",
        "messageId": "m",
        "role": "user",
        "parts": [{"kind": "text", "text": "yo"}],
    }
    resp = await client.post(
        "/a2a/other",
        json={
            "jsonrpc": "2.0",
            "id": "s",
            "method": "message/stream",
            "params": {"message": message},
        },
        headers={"x-api-key": "sk-a"},
    )
    assert resp.headers["content-type"].startswith("text/event-stream")
    frames = [
        orjson.loads(line[6:])
        for line in (await resp.read()).split(b"\n")
        if line.startswith(b"data: ")
    ]
    kinds = [f["result"]["kind"] for f in frames]
    assert kinds[0] == "task" and kinds[-1] == "status-update" and "artifact-update" in kinds
    assert (
        frames[-1]["result"]["final"] is True
        and frames[-1]["result"]["status"]["state"] == "completed"
    )
    assert all(f["id"] == "s" for f in frames)
