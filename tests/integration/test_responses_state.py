"""Stored Responses with the official openai package as the caller: ``store``,
``previous_response_id`` chains, retrieve / delete / input_items, item references, background
responses polled and cancelled; in memory and in Redis (and across two gateway processes on one
Redis). Custom and namespaced tools translated for a Chat Completions upstream. Every body is
checked against OpenAI's published schemas."""

from __future__ import annotations

import asyncio
from contextlib import ExitStack
from pathlib import Path

import openai
import orjson
import pytest
import redis.asyncio as aioredis
from redis.exceptions import WatchError
from support.configs import recorded, upstream_config
from support.openapi import validate
from support.processes import gateway_process
from support.waiting import until

from gateway import GATEWAY
from gateway.config.sections import RedisConfig, RedisUrl
from gateway.protocols.openai.responses_store import RedisResponseStore, ResponseRecord
from gateway.state.redis import RedisState

KEYS = [{"name": "alice", "key": "sk-alice"}, {"name": "bob", "key": "sk-bob"}]


@pytest.fixture
async def gateway(make_gateway, upstream, store_config):
    cfg = upstream_config(upstream)
    cfg.update(store_config("responses", cancel_poll="50ms"))
    cfg["auth"] = {"keys": KEYS}
    return await make_gateway(cfg)


def user_texts(body: dict) -> list[tuple[str, str]]:
    """(role, text) of each message an upstream received."""
    out = []
    for m in body["messages"]:
        content = m.get("content")
        text = content if isinstance(content, str) else "".join(p["text"] for p in content or ())
        out.append((m["role"], text))
    return out


async def test_stored_response_is_retrieved_listed_and_deleted(gateway, sdk):
    api = sdk(gateway, api_key="sk-alice")
    created = await api.responses.create(
        model="gpt-test", input="first question", instructions="be brief", parallel_tool_calls=None
    )
    assert created.store is True and created.parallel_tool_calls is True
    raw = await api.responses.with_raw_response.retrieve(created.id)
    body = orjson.loads(raw.content)
    validate(body, "Response")
    assert body["output"] == created.model_dump(mode="json", exclude_unset=True)["output"]
    assert raw.parse().output_text == "upstream says: first question"

    items = await api.responses.input_items.with_raw_response.list(created.id)
    listed = orjson.loads(items.content)
    validate(listed, "ResponseItemList")
    assert [i["content"][0]["text"] for i in listed["data"]] == ["first question"]
    assert listed["first_id"] == listed["last_id"] == listed["data"][0]["id"]

    # another key sees nothing of alice's
    with pytest.raises(openai.NotFoundError):
        await sdk(gateway, api_key="sk-bob").responses.retrieve(created.id)
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk(gateway, api_key="sk-bob").responses.create(
            model="gpt-test", input="x", previous_response_id=created.id
        )
    assert caught.value.body["code"] == "previous_response_not_found"

    await api.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError) as missing:
        await api.responses.retrieve(created.id)
    assert missing.value.body["message"] == f"Response with id '{created.id}' not found."
    with pytest.raises(openai.NotFoundError):
        await api.responses.delete(created.id)


@pytest.mark.parametrize("stream", [False, True])
async def test_previous_response_id_chain(gateway, upstream, sdk, stream):
    api = sdk(gateway, api_key="sk-alice")
    previous = None
    for turn in ("one", "two", "three"):
        if stream:
            async with api.responses.stream(
                model="gpt-test", input=turn, previous_response_id=previous
            ) as events:
                answer = await events.get_final_response()
        else:
            answer = await api.responses.create(
                model="gpt-test", input=turn, previous_response_id=previous
            )
        assert answer.previous_response_id == previous
        previous = answer.id
    assert user_texts(recorded(upstream)[-1]) == [
        ("user", "one"),
        ("assistant", "upstream says: one"),
        ("user", "two"),
        ("assistant", "upstream says: two"),
        ("user", "three"),
    ]
    # input_items lists the request's own input, newest first by default
    page = await api.responses.input_items.list(previous)
    assert [i.content[0].text for i in page.data] == ["three"]


async def test_store_false_keeps_nothing(gateway, sdk):
    api = sdk(gateway, api_key="sk-alice")
    answer = await api.responses.create(model="gpt-test", input="secret", store=False)
    assert answer.store is False
    with pytest.raises(openai.NotFoundError):
        await api.responses.retrieve(answer.id)


async def test_item_references_resolve_stored_items(gateway, upstream, sdk):
    """The AI SDK's second step: the tool calls by reference, then their outputs."""
    api = sdk(gateway, api_key="sk-alice")
    first = await api.responses.create(model="gpt-test", input="TOOLS")
    calls = [i for i in first.output if i.type == "function_call"]
    assert [c.name for c in calls] == ["get_weather", "get_time"]
    second = await api.responses.create(
        model="gpt-test",
        input=[
            {"role": "user", "content": "TOOLS"},
            *({"type": "item_reference", "id": c.id} for c in calls),
            *(
                {"type": "function_call_output", "call_id": c.call_id, "output": f"{c.name} ok"}
                for c in calls
            ),
        ],
    )
    assert second.status == "completed"
    sent = recorded(upstream)[-1]["messages"]
    assert [t["function"]["name"] for t in sent[1]["tool_calls"]] == ["get_weather", "get_time"]
    assert [m["content"] for m in sent[2:]] == ["get_weather ok", "get_time ok"]

    with pytest.raises(openai.BadRequestError) as caught:
        await api.responses.create(
            model="gpt-test", input=[{"type": "item_reference", "id": "fc_unknown"}]
        )
    assert caught.value.body["param"] == "input[0]"
    assert "fc_unknown" in caught.value.body["message"]


async def test_background_response_is_polled_to_completion(gateway, sdk):
    api = sdk(gateway, api_key="sk-alice")
    queued = await api.responses.with_raw_response.create(
        model="gpt-test", input="SLOW:0.3", background=True
    )
    body = orjson.loads(queued.content)
    validate(body, "Response")
    assert body["status"] == "queued" and body["background"] is True and body["output"] == []
    queued_items = [i.id for i in (await api.responses.input_items.list(body["id"])).data]
    seen = set()

    async def ended():
        answer = await api.responses.retrieve(body["id"])
        seen.add(answer.status)
        return answer if answer.status not in ("queued", "in_progress") else None

    answer = await until(ended, what="the background response ends")
    assert answer.status == "completed", answer.error
    assert answer.output_text == "upstream says: SLOW:0.3"
    done_items = [i.id for i in (await api.responses.input_items.list(body["id"])).data]
    assert done_items == queued_items and len(done_items) == 1  # the input keeps its ids
    assert seen <= {"queued", "in_progress", "completed"}
    with pytest.raises(openai.BadRequestError):
        await api.responses.create(model="gpt-test", input="x", background=True, store=False)


async def test_background_response_is_cancelled(gateway, sdk):
    api = sdk(gateway, api_key="sk-alice")
    queued = await api.responses.create(model="gpt-test", input="SLOW:30", background=True)

    async def running():
        return (await api.responses.retrieve(queued.id)).status == "in_progress"

    await until(running, what="the background response runs")
    raw = await api.responses.with_raw_response.cancel(queued.id)
    validate(orjson.loads(raw.content), "Response")
    assert raw.parse().status == "cancelled"
    assert (await api.responses.retrieve(queued.id)).status == "cancelled"
    # cancelling twice answers the response as it is
    assert (await api.responses.cancel(queued.id)).status == "cancelled"


@pytest.mark.parametrize("elsewhere", ["cancelled", "deleted"])
async def test_a_background_response_cancelled_or_deleted_as_it_ends_stays_so(
    gateway, sdk, elsewhere
):
    """Another instance cancels or deletes the response just before its run keeps the answer:
    the answer is not written over it."""
    api = sdk(gateway, api_key="sk-alice")
    state = gateway.server.app[GATEWAY].protocols["openai_responses"].state
    store = state.store
    replace = store.replace
    meanwhile: list[str] = []

    async def late(owner, record, statuses):
        if record.status == "completed" and not meanwhile:
            meanwhile.append(record.id)
            stored = await store.get(owner, record.id)
            if elsewhere == "cancelled":  # what a cancel on another instance writes
                gone = ResponseRecord(
                    {**stored.response, "status": "cancelled"}, stored.input, stored.context
                )
                await store.put(owner, gone)
            else:
                await store.delete(owner, record.id)
        return await replace(owner, record, statuses)

    store.replace = late
    queued = await api.responses.create(model="gpt-test", input="SLOW:0.1", background=True)
    await until(lambda: not state.runs, what="the background run ends")
    assert meanwhile == [queued.id]
    if elsewhere == "cancelled":
        assert (await api.responses.retrieve(queued.id)).status == "cancelled"
    else:
        with pytest.raises(openai.NotFoundError):
            await api.responses.retrieve(queued.id)


async def test_a_cancel_that_comes_as_the_response_ends_answers_it_ended(gateway, sdk):
    api = sdk(gateway, api_key="sk-alice")
    state = gateway.server.app[GATEWAY].protocols["openai_responses"].state
    store = state.store
    replace = store.replace
    queued = await api.responses.create(model="gpt-test", input="SLOW:2", background=True)

    async def running():
        return (await api.responses.retrieve(queued.id)).status == "in_progress"

    await until(running, what="the background response runs")

    async def ended_first(owner, record, statuses):
        if record.status == "cancelled":  # the run (here, or elsewhere) ends first
            stored = await store.get(owner, record.id)
            done = {**stored.response, "status": "completed"}
            await store.put(owner, ResponseRecord(done, stored.input, stored.context))
        return await replace(owner, record, statuses)

    store.replace = ended_first
    assert (await api.responses.cancel(queued.id)).status == "completed"
    await until(lambda: not state.runs, what="the background run ends")
    assert (await api.responses.retrieve(queued.id)).status == "completed"


async def test_a_write_over_a_response_changed_meanwhile_looks_again(
    redis_url, redis_prefix, monkeypatch
):
    """In Redis, a change made between the store's look at a response and its write (by another
    instance) makes the write fail, and the store looks again."""
    state = RedisState(RedisConfig(url=RedisUrl(redis_url), prefix=redis_prefix))
    await state.open()
    other = aioredis.Redis.from_url(redis_url)
    try:
        store = RedisResponseStore(state, ttl=60)
        running = {"id": "resp_1", "object": "response", "status": "in_progress", "output": []}
        await store.put("o", ResponseRecord(running, [], []))
        cancelled = ResponseRecord({**running, "status": "cancelled"}, [], [])
        execute = aioredis.client.Pipeline.execute
        writes: list[bool] = []

        async def after_another(pipe, raise_on_error=True):
            if not writes:  # another instance cancels it after the look, before the write
                await other.set(state.key("responses", "o", "r", "resp_1"), cancelled.dumps())
            try:
                return await execute(pipe, raise_on_error)
            except WatchError:
                writes.append(False)
                raise

        monkeypatch.setattr(aioredis.client.Pipeline, "execute", after_another)
        completed = ResponseRecord({**running, "status": "completed"}, [], [])
        assert not await store.replace("o", completed, ("in_progress",))
        assert writes == [False]  # the one write tried failed; the second look saw the cancel
        assert (await store.get("o", "resp_1")).status == "cancelled"
    finally:
        await other.aclose()
        await state.close()


async def test_responses_store_off_refuses_state_clearly(make_gateway, sdk):
    gw = await make_gateway(
        {
            "backends": {"e": {"kind": "echo"}},
            "models": {"echo": {"backend": "e"}},
            "responses": {"store": "off"},
        }
    )
    api = sdk(gw)
    answer = await api.responses.create(model="echo", input="hi")
    assert answer.store is False
    for kwargs, param in (
        ({"previous_response_id": "resp_123"}, "previous_response_id"),
        ({"background": True}, "background"),
    ):
        with pytest.raises(openai.BadRequestError) as caught:
            await api.responses.create(model="echo", input="hi", **kwargs)
        assert caught.value.body["param"] == param
        assert 'store = "off"' in caught.value.body["message"]
    with pytest.raises(openai.BadRequestError) as ref:
        await api.responses.create(model="echo", input=[{"type": "item_reference", "id": "x"}])
    assert "item references" in ref.value.body["message"]
    with pytest.raises(openai.NotFoundError):
        await api.responses.retrieve("resp_123")


# --- tools the Chat Completions format lacks ------------------------------------------------------


async def test_custom_and_namespace_tools_are_translated(make_gateway, upstream, sdk):
    gw = await make_gateway(upstream_config(upstream))
    api = sdk(gw)
    tools = [
        {
            "type": "custom",
            "name": "apply_patch",
            "description": "Apply a patch.",
            "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"},
        },
        {
            "type": "namespace",
            "name": "collab",
            "description": "Working with other agents.",
            "tools": [
                {
                    "type": "function",
                    "name": "spawn_agent",
                    "parameters": {"type": "object", "properties": {"task": {"type": "string"}}},
                }
            ],
        },
    ]
    script = 'CALL apply_patch {"input": "*** Begin Patch"}; collab__spawn_agent {"task": "t"}'
    for stream in (False, True):
        raw = await api.responses.with_raw_response.create(
            model="gpt-test", input=script, tools=tools, stream=stream
        )
        if stream:
            frames = [
                orjson.loads(line[6:])
                for line in (await raw.http_response.aread()).decode().splitlines()
                if line.startswith("data: ")
            ]
            for frame in frames:
                validate(frame, "ResponseStreamEvent")
            output = frames[-1]["response"]["output"]
            assert "response.custom_tool_call_input.done" in [f["type"] for f in frames]
        else:
            output = orjson.loads(raw.content)["output"]
        calls = [i for i in output if i["type"] != "message"]
        assert calls[0]["type"] == "custom_tool_call" and calls[0]["name"] == "apply_patch"
        assert calls[0]["input"] == "*** Begin Patch"
        assert calls[1]["type"] == "function_call" and calls[1]["name"] == "spawn_agent"
        assert calls[1]["namespace"] == "collab" and orjson.loads(calls[1]["arguments"]) == {
            "task": "t"
        }
    sent = recorded(upstream)[-1]
    names = [t["function"]["name"] for t in sent["tools"]]
    assert names == ["apply_patch", "collab__spawn_agent"]
    assert sent["tools"][0]["function"]["parameters"]["required"] == ["input"]
    assert "start: /.+/" in str(sent["tools"][0]["function"]["parameters"])

    # the calls and their outputs go back to the model as function calls and results
    await api.responses.create(
        model="gpt-test",
        tools=tools,
        input=[
            {"role": "user", "content": script},
            {"type": "custom_tool_call", "call_id": "c1", "name": "apply_patch", "input": "P"},
            {
                "type": "function_call",
                "call_id": "c2",
                "name": "spawn_agent",
                "namespace": "collab",
                "arguments": "{}",
            },
            {"type": "custom_tool_call_output", "call_id": "c1", "output": "patched"},
            {"type": "function_call_output", "call_id": "c2", "output": "spawned"},
        ],
    )
    messages = recorded(upstream)[-1]["messages"]
    assert [
        (c["function"]["name"], c["function"]["arguments"]) for c in messages[1]["tool_calls"]
    ] == [("apply_patch", '{"input":"P"}'), ("collab__spawn_agent", "{}")]
    assert [m["content"] for m in messages[2:]] == ["patched", "spawned"]


async def test_input_file_is_refused_naming_the_part(make_gateway, upstream, sdk):
    gw = await make_gateway(upstream_config(upstream))
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk(gw).responses.create(
            model="gpt-test",
            input=[
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "summarise"},
                        {"type": "input_file", "filename": "a.pdf", "file_data": "data:..."},
                    ],
                }
            ],
        )
    assert caught.value.body["param"] == "input"
    assert caught.value.body["code"] == "input_file_not_supported"
    assert "input_file" in caught.value.body["message"]


# --- two gateway processes on one Redis ----------------------------------------------------------

CONFIG = """
[redis]
url = "{redis_url}"
prefix = "{prefix}"

[responses]
store = "redis"
cancel_poll = "100ms"

[auth]
keys = [{{ name = "alice", key = "sk-alice" }}]

[backends.up]
kind = "openai"
base_url = "{upstream}"

[models.gpt-test]
backend = "up"
upstream_model = "up-model"
"""


async def test_any_instance_answers(tmp_path: Path, redis_url, redis_prefix, upstream_process):
    config = tmp_path / "hookgate.toml"
    config.write_text(
        CONFIG.format(redis_url=redis_url, prefix=redis_prefix, upstream=upstream_process)
    )
    with ExitStack() as stack:
        procs = [
            stack.enter_context(gateway_process("serve", "--config", str(config))) for _ in range(2)
        ]
        one, two = (
            openai.AsyncOpenAI(base_url=f"{p.url}/v1", api_key="sk-alice", max_retries=0)
            for p in procs
        )
        try:
            first = await one.responses.create(model="gpt-test", input="hello")
            assert (await two.responses.retrieve(first.id)).output_text == first.output_text
            second = await two.responses.create(
                model="gpt-test", input="again", previous_response_id=first.id
            )
            items = await one.responses.input_items.list(second.id)
            assert [i.content[0].text for i in items.data] == ["again"]

            slow = await one.responses.create(model="gpt-test", input="SLOW:30", background=True)

            async def running():
                return (await two.responses.retrieve(slow.id)).status == "in_progress"

            await until(running, what="the background response runs on the first instance")
            assert (await two.responses.cancel(slow.id)).status == "cancelled"
            # the run on the first instance sees the mark and stops, leaving it as it is
            await asyncio.to_thread(procs[0].wait_log, "cancelled elsewhere")
            assert (await one.responses.retrieve(slow.id)).status == "cancelled"
            await two.responses.delete(first.id)
            with pytest.raises(openai.NotFoundError):
                await one.responses.retrieve(first.id)

            # an instance that stops leaves its background responses failed, for every other
            lost = await one.responses.create(model="gpt-test", input="SLOW:30", background=True)

            async def started():
                return (await two.responses.retrieve(lost.id)).status == "in_progress"

            await until(started, what="the second background response runs")
            assert await asyncio.to_thread(procs[0].stop) == 0
            ended = await two.responses.retrieve(lost.id)
            assert ended.status == "failed" and "stopped" in ended.error.message
        finally:
            await one.close()
            await two.close()
    for proc in procs:
        assert proc.returncode == 0, proc.output


async def test_several_workers_without_redis_store_nothing(make_gateway, sdk, caplog):
    gw = await make_gateway(
        {
            "server": {"workers": 2},
            "backends": {"e": {"kind": "echo"}},
            "models": {"echo": {"backend": "e"}},
        }
    )
    assert "stored responses are off: 2 workers need [redis] url" in caplog.text
    api = sdk(gw)
    assert (await api.responses.create(model="echo", input="hi")).store is False
    with pytest.raises(openai.BadRequestError) as caught:
        await api.responses.create(model="echo", input="hi", previous_response_id="resp_1")
    assert 'store = "off"' in caught.value.body["message"]
