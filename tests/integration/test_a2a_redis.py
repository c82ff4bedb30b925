"""A2A tasks in Redis: read, listed, resumed and cancelled through any instance."""

from __future__ import annotations

import asyncio
import signal
import time

import aiohttp
from a2a.types.a2a_pb2 import (
    CancelTaskRequest,
    GetTaskRequest,
    ListTasksRequest,
    SubscribeToTaskRequest,
)
from fakes.openai_upstream import CANCELLED
from fakes.triggers import until
from google.protobuf import json_format
from support.a2a_check import answer, ask, collect, fold, head_of, rpc
from support.configs import agent_toml, recorded, upstream_config
from support.processes import gateway_process

from gateway import GATEWAY
from gateway.auth.keys import digest
from gateway.protocols.a2a.tasks import TaskRecord

WORDS = " ".join(f"w{i}" for i in range(30))


def config(upstream, redis_url, prefix):
    cfg = upstream_config(upstream)
    cfg["backends"]["slow"] = {"kind": "echo", "delay": "20ms"}
    cfg["models"]["slow"] = {"backend": "slow"}
    cfg["agents"] = {"talker": {"model": "slow"}, "helper": {"model": "gpt-test"}}
    return {
        **cfg,
        "redis": {"url": redis_url, "prefix": prefix},
        "a2a": {"store": "redis"},
        "auth": {"keys": ["sk-a", "sk-b"]},
    }


def task_of(response):
    return json_format.MessageToDict(response)


async def test_a_task_of_one_instance_is_read_resumed_and_cancelled_on_another(
    make_gateway, upstream, redis_url, redis_prefix, official
):
    one = await make_gateway(config(upstream, redis_url, redis_prefix))
    two = await make_gateway(config(upstream, redis_url, redis_prefix))
    assert one.server.app[GATEWAY].state.users["a2a.store"] == "redis"
    a = await official(str(one.make_url("/a2a/talker")), "sk-a")
    b = await official(str(two.make_url("/a2a/talker")), "sk-a", legacy=True)

    head = await head_of(a.send_message(ask(WORDS)), 4)
    task_id = head[0]["task"]["id"]
    # the other instance (and a 0.3 client) reads it live, then follows it to its end
    live = task_of(await b.get_task(GetTaskRequest(id=task_id)))
    assert live["status"]["state"] == "TASK_STATE_WORKING" and answer(live)
    rest = await collect(b.subscribe(SubscribeToTaskRequest(id=task_id)))
    final = fold(rest)
    assert final["status"]["state"] == "TASK_STATE_COMPLETED" and answer(final) == WORDS
    for client in (a, b):
        done = task_of(await client.get_task(GetTaskRequest(id=task_id)))
        assert done["status"]["state"] == "TASK_STATE_COMPLETED" and answer(done) == WORDS
    listed = task_of(await a.list_tasks(ListTasksRequest()))
    assert [t["id"] for t in listed["tasks"]] == [task_id]
    # another key sees nothing, on either instance
    body = await rpc(
        two,
        "/a2a/talker",
        "GetTask",
        {"id": task_id},
        headers={"A2A-Version": "1.0", "x-api-key": "sk-b"},
    )
    assert body["error"]["code"] == -32001

    # a task running on one instance is canceled through the other, upstream request included
    starter = await official(
        str(one.make_url("/a2a/helper")), "sk-a", streaming=False, polling=True
    )
    canceller = await official(str(two.make_url("/a2a/helper")), "sk-a", streaming=False)
    (started,) = await collect(starter.send_message(ask("DRIP")))
    drip = started["task"]["id"]

    async def dripping():
        return answer(task_of(await canceller.get_task(GetTaskRequest(id=drip)))).startswith("drip")

    await until(dripping)
    canceled = task_of(await canceller.cancel_task(CancelTaskRequest(id=drip)))
    assert canceled["status"]["state"] == "TASK_STATE_CANCELED"
    await until(lambda: "DRIP" in upstream.app[CANCELLED])
    assert task_of(await starter.get_task(GetTaskRequest(id=drip)))["status"]["state"] == (
        "TASK_STATE_CANCELED"
    )

    # a context goes on through any instance
    sender = await official(str(one.make_url("/a2a/helper")), "sk-a", streaming=False)
    (first,) = await collect(sender.send_message(ask("hello")))
    context = first["task"]["contextId"]
    (second,) = await collect(canceller.send_message(ask("again", context_id=context)))
    assert second["task"]["contextId"] == context
    assert [(m["role"], m["content"]) for m in recorded(upstream)[-1]["messages"]] == [
        ("user", "hello"),
        ("assistant", "upstream says: hello"),
        ("user", "again"),
    ]


async def test_a_task_whose_instance_stopped_ends_failed(
    make_gateway, upstream, redis_url, redis_prefix
):
    cfg = config(upstream, redis_url, redis_prefix)
    # A Redis timeout long enough that a follower's blocking read outlasts GetTask's wait for
    # the live log: the loss is still told at once.
    cfg["redis"]["timeout"] = "5s"
    client = await make_gateway(cfg)
    service = client.server.app[GATEWAY].protocols["a2a"].service
    owner = "key-" + digest("sk-a").hex()[:16]
    now = time.time()
    task = {"id": "t-lost", "contextId": "c-1", "status": {"state": "TASK_STATE_WORKING"}}
    await service.tasks.put(owner, TaskRecord(task, "talker", now, now))
    a = {"A2A-Version": "1.0", "x-api-key": "sk-a"}
    body = await rpc(client, "/a2a/talker", "GetTask", {"id": "t-lost"}, headers=a)
    failed = body["result"]
    assert failed["status"]["state"] == "TASK_STATE_FAILED"
    assert "lost" in failed["status"]["message"]["parts"][0]["text"]
    assert failed["metadata"] == {"code": "task_lost"}
    body = await rpc(client, "/a2a/talker", "ListTasks", {"status": "TASK_STATE_FAILED"}, headers=a)
    assert [t["id"] for t in body["result"]["tasks"]] == ["t-lost"]
    body = await rpc(client, "/a2a/talker", "CancelTask", {"id": "t-lost"}, headers=a)
    assert body["error"]["code"] == -32002


async def test_a_task_cut_by_a_drain_is_failed_for_every_instance(
    make_gateway, upstream, upstream_process, tmp_path, redis_url, redis_prefix
):
    head = (
        f'[redis]\nurl = "{redis_url}"\nprefix = "{redis_prefix}"\n[a2a]\nstore = "redis"\n'
        '[server]\ndrain_timeout = "500ms"\n[auth]\nkeys = ["sk-a"]\n'
    )
    toml = agent_toml(tmp_path / "hookgate.toml", upstream_process, head)
    reader = await make_gateway(config(upstream, redis_url, redis_prefix))
    a = {"A2A-Version": "1.0", "x-api-key": "sk-a"}
    message = {"messageId": "m1", "role": "ROLE_USER", "parts": [{"text": "DRIP"}]}
    params = {"message": message, "configuration": {"returnImmediately": True}}
    with gateway_process("serve", "--config", toml) as gateway:
        call = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": params}
        async with aiohttp.ClientSession(headers=a) as session:
            async with session.post(f"{gateway.url}/a2a/helper", json=call) as resp:
                task_id = (await resp.json())["result"]["task"]["id"]

            async def dripping():
                body = await rpc(reader, "/a2a/helper", "GetTask", {"id": task_id}, headers=a)
                return answer(body["result"]).startswith("drip")

            await until(dripping)  # read live through Redis by the other instance
            gateway.signal(signal.SIGTERM)
            await asyncio.to_thread(gateway.proc.wait, 30)
    assert gateway.returncode == 0, gateway.output
    task = (await rpc(reader, "/a2a/helper", "GetTask", {"id": task_id}, headers=a))["result"]
    assert task["status"]["state"] == "TASK_STATE_FAILED"
    assert "shutting down" in task["status"]["message"]["parts"][0]["text"]
    assert task["metadata"]["code"] == "unavailable"
