"""AG-UI runs over SSE: every stream validated with ag_ui.core and the ordering rules."""

from __future__ import annotations

import orjson
from agui_check import checked, text_of, types_of
from conftest import recorded, upstream_config

TOOLS = [
    "fakes.tools:get_weather",
    "fakes.tools:get_time",
    "fakes.tools:explode",
    "fakes.tools:tag",
]


def agent_config(upstream, **agent):
    cfg = upstream_config(upstream)
    cfg["agents"] = {
        "helper": {"model": "gpt-test", "system": "You help.", "tools": TOOLS, **agent}
    }
    return cfg


def run_input(text, run_id="run-1", thread_id="thread-1", **extra):
    return {
        "threadId": thread_id,
        "runId": run_id,
        "messages": [{"id": "m1", "role": "user", "content": text}],
        "tools": [],
        "context": [],
        "state": {},
        "forwardedProps": {},
        **extra,
    }


async def post_run(client, body, agent="helper", **params):
    return await client.post(
        f"/agui/agents/{agent}/runs",
        json=body,
        params=params,
        headers={"accept": "text/event-stream"},
    )


async def test_text_run_is_valid_agui(make_gateway, upstream):
    client = await make_gateway(agent_config(upstream))
    resp = await post_run(client, run_input("hello there"))
    assert resp.status == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    events = checked(await resp.read())
    assert types_of(events) == [
        "RUN_STARTED",
        "TEXT_MESSAGE_START",
        *["TEXT_MESSAGE_CONTENT"] * 3,
        "TEXT_MESSAGE_END",
        "RUN_FINISHED",
    ]
    assert events[0]["threadId"] == "thread-1" and events[0]["runId"] == "run-1"
    assert text_of(events) == "upstream says: hello there"
    assert events[-1]["usage"][0]["totalTokens"] == 18
    sent = recorded(upstream)[-1]
    assert sent["messages"][0] == {"role": "system", "content": "You help."}
    assert [t["function"]["name"] for t in sent["tools"]] == [
        "get_weather",
        "get_time",
        "explode",
        "tag",
    ]


async def test_tool_run_streams_calls_and_results(make_gateway, upstream):
    client = await make_gateway(agent_config(upstream))
    script = 'CALL get_weather {"city": "Paris"}; get_time {"tz": "CET"}'
    events = checked(await (await post_run(client, run_input(script))).read())
    kinds = types_of(events)
    assert kinds[0] == "RUN_STARTED" and kinds[-1] == "RUN_FINISHED"
    starts = [e for e in events if e["type"] == "TOOL_CALL_START"]
    assert [(e["toolCallId"], e["toolCallName"]) for e in starts] == [
        ("call_1", "get_weather"),
        ("call_2", "get_time"),
    ]
    messages = [e["messageId"] for e in events if e["type"] == "TEXT_MESSAGE_START"]
    assert len(messages) == 2 and messages[0] != messages[1]  # one text message per model step
    assert all(e["parentMessageId"] == messages[0] for e in starts)
    args = {}
    for e in events:
        if e["type"] == "TOOL_CALL_ARGS":
            args[e["toolCallId"]] = args.get(e["toolCallId"], "") + e["delta"]
    assert orjson.loads(args["call_1"]) == {"city": "Paris"}
    results = {e["toolCallId"]: e["content"] for e in events if e["type"] == "TOOL_CALL_RESULT"}
    assert orjson.loads(results["call_1"]) == {"city": "Paris", "temperature": 21, "unit": "C"}
    assert results["call_2"] == "12:00 CET"
    assert text_of(events).endswith(
        'results: {"city":"Paris","temperature":21,"unit":"C"} | 12:00 CET'
    )
    second = recorded(upstream)[-1]["messages"]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "tool", "tool"]
    assert [c["id"] for c in second[2]["tool_calls"]] == ["call_1", "call_2"]
