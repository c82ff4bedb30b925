"""AG-UI runs over SSE: every stream validated with ag_ui.core and the ordering rules."""

from __future__ import annotations

import orjson
from support.agui_check import checked, sse_frames, text_of, types_of
from support.configs import recorded, upstream_config

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


async def test_tool_errors_go_back_to_the_model_marked(make_gateway, upstream):
    cfg = agent_config(
        upstream, tools=[*TOOLS, "fakes.tools:slow", "fakes.tools:blocking"], tool_timeout="300ms"
    )
    client = await make_gateway(cfg)
    script = (
        'CALL explode {"reason": "boom"}; get_weather {"town": "Paris"}; get_weather {"city": "Oslo", "unit": "K"}; '
        'slow {"seconds": 5}; blocking {"seconds": 1}; nosuchtool {}'
    )
    events = checked(await (await post_run(client, run_input(script))).read())
    results = {e["toolCallId"]: e for e in events if e["type"] == "TOOL_CALL_RESULT"}
    assert len(results) == 6 and all(r["metadata"] == {"isError": True} for r in results.values())
    contents = [results[f"call_{n}"]["content"] for n in range(1, 7)]
    assert contents[0] == "Error: ValueError: boom"
    assert (
        "unknown argument(s) town" in contents[1]
        and "missing required argument(s) city" in contents[1]
    )
    assert contents[2].startswith("Error: invalid arguments for get_weather")
    assert contents[3] == "Error: slow did not finish within 0.2 seconds"  # the tool's own limit
    assert contents[4] == "Error: blocking did not finish within 0.3 seconds"  # the agent's
    assert contents[5].startswith("Error: there is no tool named 'nosuchtool'")
    assert events[-1]["type"] == "RUN_FINISHED"
    tool_messages = [m for m in recorded(upstream)[-1]["messages"] if m["role"] == "tool"]
    assert [m["content"] for m in tool_messages] == contents


async def test_proposed_tools_run_concurrently(make_gateway, upstream):
    client = await make_gateway(agent_config(upstream, tools=["fakes.tools:meet"]))
    script = 'CALL meet {"me": "a", "other": "b"}; meet {"me": "b", "other": "a"}'
    events = checked(await (await post_run(client, run_input(script))).read())
    results = [e["content"] for e in events if e["type"] == "TOOL_CALL_RESULT"]
    assert sorted(results) == ["a met b", "b met a"]


async def test_max_steps_ends_in_a_clear_error(make_gateway, upstream):
    client = await make_gateway(agent_config(upstream, max_steps=3))
    events = checked(
        await (await post_run(client, run_input('LOOP get_time {"tz": "UTC"}'))).read()
    )
    assert events[-1]["type"] == "RUN_ERROR" and events[-1]["code"] == "max_steps_exceeded"
    assert "max_steps (3 model calls)" in events[-1]["message"]
    assert types_of(events).count("TOOL_CALL_RESULT") == 2  # the third step's call is not run
    assert len(recorded(upstream)) == 3


async def test_client_tools_are_handed_back(make_gateway, upstream):
    client = await make_gateway(agent_config(upstream))
    confirm = {"name": "confirm", "description": "Ask the user", "parameters": {"type": "object"}}
    body = run_input('CALL confirm {"q": "ok?"}; get_time {"tz": "UTC"}', tools=[confirm])
    events = checked(await (await post_run(client, body)).read())
    assert events[-1]["type"] == "RUN_FINISHED"
    assert events[-1]["outcome"] == {"type": "success", "pendingToolCallIds": ["call_1"]}
    results = [e["toolCallId"] for e in events if e["type"] == "TOOL_CALL_RESULT"]
    assert results == ["call_2"]  # the agent's own tool ran; the client's is the client's
    sent = recorded(upstream)[-1]
    assert [t["function"]["name"] for t in sent["tools"]][-1] == "confirm"
    assert len(recorded(upstream)) == 1


async def test_forwarded_props_name_the_agent_and_bad_input_is_400(make_gateway, upstream):
    client = await make_gateway(agent_config(upstream))
    resp = await client.post("/agui/runs", json=run_input("hi", forwardedProps={"agent": "helper"}))
    assert text_of(checked(await resp.read())) == "upstream says: hi"
    resp = await client.post("/agui/runs", json=run_input("hi"))
    assert resp.status == 400
    assert (await resp.json())["error"]["param"] == "forwardedProps.agent"
    for body, param in (
        ({"runId": "r", "messages": []}, "threadId"),
        (
            {"threadId": "t", "runId": "r", "messages": [{"role": "wizard", "content": "x"}]},
            "messages[0].role",
        ),
        (
            {
                "threadId": "t",
                "runId": "r",
                "messages": [{"id": "1", "role": "tool", "content": "x"}],
            },
            "messages[0].toolCallId",
        ),
    ):
        resp = await post_run(client, body)
        assert resp.status == 400 and (await resp.json())["error"]["param"] == param
    resp = await post_run(client, run_input("hi"), agent="nobody")
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "model_not_found"
    resp = await post_run(client, run_input("hi", run_id="dup"))
    assert resp.status == 200
    await resp.read()
    resp = await post_run(client, run_input("hi", run_id="dup"))
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "run_exists"


async def test_upstream_failure_before_the_run_is_an_http_error(make_gateway, upstream):
    client = await make_gateway(agent_config(upstream))
    resp = await post_run(client, run_input("STATUS:503", run_id="failed"))
    assert resp.status == 503
    resp = await post_run(client, run_input("hello", run_id="failed"))  # the id was released
    assert resp.status == 200
    await resp.read()


async def test_failure_mid_run_is_run_error(make_gateway, upstream):
    client = await make_gateway(agent_config(upstream))
    for trigger in ("BREAK", "ERRFRAME", "NOFINISH"):
        events = checked(await (await post_run(client, run_input(trigger, run_id=trigger))).read())
        assert events[-1]["type"] == "RUN_ERROR", trigger
        assert "TEXT_MESSAGE_CONTENT" in types_of(events)


async def test_compact_format(make_gateway, upstream):
    client = await make_gateway(agent_config(upstream))
    script = 'CALL get_time {"tz": "CET"}'
    body = await (await post_run(client, run_input(script), format="compact")).read()
    frames = sse_frames(body)
    names = [f["event"] for f in frames]
    assert names[0] == "run_started" and names[-1] == "run_completed"
    assert set(names) == {"run_started", "text_delta", "tool_call", "tool_result", "run_completed"}
    data = {f["event"]: orjson.loads(f["data"]) for f in frames}
    assert data["tool_call"] == {"id": "call_1", "name": "get_time", "arguments": {"tz": "CET"}}
    assert data["tool_result"] == {
        "id": "call_1",
        "name": "get_time",
        "content": "12:00 CET",
        "is_error": False,
    }
    assert data["run_completed"]["status"] == "completed"
    assert (
        "".join(orjson.loads(f["data"])["delta"] for f in frames if f["event"] == "text_delta")
        == "Calling tools.\n\nresults: 12:00 CET"
    )
    ids = [int(f["id"]) for f in frames]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    # resuming the compact form after a tool call's start still names the whole call
    resumed = await client.get(
        "/agui/ws",
        params={"run_id": "run-1", "format": "compact"},
        headers={"Last-Event-ID": str(ids[1])},
    )
    again = sse_frames(await resumed.read())
    assert [f["event"] for f in again] == names[2:]
    resp = await post_run(client, run_input("x", run_id="r2"), format="xml")
    assert resp.status == 400


async def test_any_model_is_an_agui_agent_reasoning_and_client_tools(make_gateway):
    from gateway import (
        Finish,
        ReasoningDelta,
        Start,
        TextDelta,
        ToolCallDelta,
        ToolCallEnd,
        ToolCallStart,
        hookimpl,
    )
    from gateway.backends.base import Backend

    class Thinker(Backend):
        async def stream(self, request, exchange):
            assert [t.name for t in request.tools] == ["pick"]
            assert request.messages[0].role == "system"  # the AG-UI context
            assert "favourite: blue" in request.messages[0].text()
            yield Start("m-1", "thinker")
            yield ReasoningDelta("Hmm, ")
            yield ReasoningDelta("let me think.")
            yield TextDelta("I will ask.")
            yield ToolCallStart(0, "c-1", "pick")
            yield ToolCallDelta(0, '{"options": ')
            yield ToolCallDelta(0, '["a", "b"]}')
            yield ToolCallEnd(0)
            yield TextDelta(" Over to you.")
            yield Finish("tool_calls")

    class Plugin:
        @hookimpl
        def gateway_register_backends(self, register):
            register("thinker", Thinker)

    cfg = {"backends": {"t": {"kind": "thinker"}}, "models": {"thinker": {"backend": "t"}}}
    client = await make_gateway(cfg, plugins=[("thinker", Plugin())])
    pick = {"name": "pick", "description": "Let the user pick", "parameters": {"type": "object"}}
    body = run_input(
        "choose", tools=[pick], context=[{"description": "favourite", "value": "blue"}]
    )
    events = checked(await (await post_run(client, body, agent="thinker")).read())
    assert types_of(events) == [
        "RUN_STARTED",
        "REASONING_START",
        "REASONING_MESSAGE_START",
        "REASONING_MESSAGE_CONTENT",
        "REASONING_MESSAGE_CONTENT",
        "REASONING_MESSAGE_END",
        "REASONING_END",
        "TEXT_MESSAGE_START",
        "TEXT_MESSAGE_CONTENT",
        "TOOL_CALL_START",
        "TOOL_CALL_ARGS",
        "TOOL_CALL_ARGS",
        "TOOL_CALL_END",
        "TEXT_MESSAGE_CONTENT",
        "TEXT_MESSAGE_END",
        "RUN_FINISHED",
    ]
    assert events[7]["messageId"] == "m-1" and events[9]["parentMessageId"] == "m-1"
    assert events[-1]["outcome"] == {"type": "success", "pendingToolCallIds": ["c-1"]}
    assert text_of(events) == "I will ask. Over to you."


async def test_the_whole_agui_history_reaches_the_model(make_gateway, upstream):
    cfg = upstream_config(upstream)
    cfg["agents"] = {"plain": {"model": "gpt-test"}}
    client = await make_gateway(cfg)
    messages = [
        {"id": "1", "role": "developer", "content": "Be exact."},
        {
            "id": "2",
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in"},
                {"type": "image", "source": {"type": "url", "value": "https://img.example/a.png"}},
            ],
        },
        {
            "id": "3",
            "role": "assistant",
            "content": "Looking.",
            "toolCalls": [
                {"id": "c1", "type": "function", "function": {"name": "zoom", "arguments": "{}"}}
            ],
        },
        {"id": "4", "role": "tool", "toolCallId": "c1", "content": "", "error": "zoom failed"},
        {"id": "5", "role": "activity", "activityType": "progress", "content": {"pct": 50}},
        {"id": "6", "role": "user", "content": "this picture?"},
    ]
    body = {"threadId": "t", "runId": "history", "messages": messages}
    events = checked(await (await post_run(client, body, agent="plain")).read())
    assert text_of(events) == "upstream says: this picture?"
    sent = recorded(upstream)[-1]["messages"]
    assert sent == [
        {"role": "developer", "content": "Be exact."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in"},
                {"type": "image_url", "image_url": {"url": "https://img.example/a.png"}},
            ],
        },
        {
            "role": "assistant",
            "content": "Looking.",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "zoom", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "zoom failed"},
        {"role": "user", "content": "this picture?"},
    ]
