"""Traces: a real OTLP/HTTP receiver decodes what the gateway exports: a server span per
request continuing the caller's trace, a client span per upstream attempt whose context reaches
the upstream, agent runs, steps and tool calls, named by the GenAI semantic conventions; prompt
and answer only when opted in."""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from fakes import openai_upstream
from fakes.held_upstream import HeldUpstream
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from support.configs import upstream_config
from support.processes import children_running, ended, free_port
from support.waiting import until

from gateway import sidecar

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
SCRIPT = 'CALL get_weather {"city": "Paris"}'


@pytest.fixture
async def receiver(aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """An OTLP/HTTP receiver; the gateways of the test export to it. Its spans, decoded."""
    spans: list[dict[str, Any]] = []

    async def traces(request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf"
        export = ExportTraceServiceRequest()
        export.ParseFromString(await request.read())
        for resource in export.resource_spans:
            service = {a.key: a.value.string_value for a in resource.resource.attributes}
            for scope in resource.scope_spans:
                for s in scope.spans:
                    spans.append(
                        {
                            "name": s.name,
                            "kind": s.kind,
                            "trace_id": s.trace_id.hex(),
                            "span_id": s.span_id.hex(),
                            "parent": s.parent_span_id.hex(),
                            "status": s.status.code,
                            "service": service.get("service.name"),
                            "attributes": {a.key: _value(a.value) for a in s.attributes},
                        }
                    )
        return web.Response(body=b"", content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    server = await aiohttp_server(app)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", str(server.make_url("")).rstrip("/"))
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "20")
    monkeypatch.delenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", raising=False)
    return spans


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind)


def _named(spans: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    return [s for s in spans if s["name"].startswith(prefix)]


SERVER, CLIENT, INTERNAL = 2, 3, 1  # OTLP's SpanKind numbers
# The fake upstream reports 11 prompt and 7 completion tokens for every answer.
PRICE = {"input": 2.0, "output": 10.0}
COST = (11 * 2.0 + 7 * 10.0) / 1e6


async def test_request_and_attempt_spans_follow_the_conventions(
    make_gateway, upstream, receiver, sdk
):
    cfg = upstream_config(upstream)
    cfg["models"]["gpt-test"]["price"] = PRICE
    client = await make_gateway(cfg)
    api = sdk(client, default_headers={"traceparent": f"00-{TRACE_ID}-{PARENT}-01"})
    await api.chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "secret prompt"}], max_tokens=50
    )
    await until(lambda: len(receiver) >= 2, 10, "two spans")
    (server,) = _named(receiver, "chat gpt-test")
    (attempt,) = _named(receiver, "chat up-model")
    assert server["kind"] == SERVER and server["service"] == "hookgate"
    assert server["trace_id"] == TRACE_ID and server["parent"] == PARENT
    a = server["attributes"]
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.request.model"] == "gpt-test"
    assert a["gen_ai.request.max_tokens"] == 50 and a["http.response.status_code"] == 200
    assert a["gen_ai.usage.input_tokens"] == 11 and a["gen_ai.usage.output_tokens"] == 7
    assert a["gen_ai.response.model"] == "up-model"
    assert a["hookgate.cost_usd"] == pytest.approx(COST)
    assert a["url.path"] == "/v1/chat/completions" and a["http.request.method"] == "POST"
    assert attempt["kind"] == CLIENT and attempt["parent"] == server["span_id"]
    assert attempt["attributes"]["gen_ai.provider.name"] == "openai"
    assert attempt["attributes"]["gen_ai.usage.input_tokens"] == 11
    # Content stays out unless opted in.
    assert "secret prompt" not in repr(receiver)
    # The upstream got the attempt's context.
    sent = upstream.app[openai_upstream.HEADERS][-1]["traceparent"]
    assert sent == f"00-{TRACE_ID}-{attempt['span_id']}-01"


async def test_a_span_has_the_decoded_path_without_its_query(make_gateway, upstream, receiver):
    client = await make_gateway(upstream_config(upstream))
    resp = await client.get("/v1/models/gpt%2Dtest?verbose=1")
    assert resp.status == 200 and (await resp.json())["id"] == "gpt-test"
    resp = await client.get("/v1/models?limit=5")
    assert resp.status == 200
    # An absolute-form target (as sent to a proxy).
    reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
    writer.write(b"GET http://gateway.test/v1/models HTTP/1.1\r\nHost: gateway.test\r\n\r\n")
    assert (await reader.readline()).startswith(b"HTTP/1.1 200")
    writer.close()
    await until(lambda: len(receiver) >= 3, 10, "three spans")
    paths = sorted(s["attributes"]["url.path"] for s in receiver)
    assert paths == ["/v1/models", "/v1/models", "/v1/models/gpt-test"]


@pytest.mark.parametrize("stream", [False, True])
async def test_a_refused_request_says_what_was_asked(make_gateway, upstream, receiver, stream):
    keys = [{"name": "tight", "key": "sk-tight", "rpm": 1}]
    client = await make_gateway({**upstream_config(upstream), "auth": {"keys": keys}})
    body = {
        "model": "gpt-test",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 9,
        "stream": stream,
    }
    headers = {"authorization": "Bearer sk-tight"}
    first = await client.post("/v1/chat/completions", json=body, headers=headers)
    assert first.status == 200
    await first.read()
    refused = await client.post("/v1/chat/completions", json=body, headers=headers)
    assert refused.status == 429
    await until(lambda: len(_named(receiver, "chat gpt-test")) >= 2, 10, "two request spans")
    by_status = {
        s["attributes"]["http.response.status_code"]: s["attributes"]
        for s in _named(receiver, "chat gpt-test")
    }
    for status in (200, 429):
        a = by_status[status]
        assert a["gen_ai.request.model"] == "gpt-test" and a["gen_ai.request.max_tokens"] == 9
        assert a["gen_ai.operation.name"] == "chat" and a["hookgate.principal"] == "tight"
    assert by_status[429]["error.type"] == "rate_limit"
    assert by_status[200]["gen_ai.response.model"] == "up-model"
    # Refused before it was routed: no model answered it.
    assert "gen_ai.response.model" not in by_status[429]
    assert by_status[429]["hookgate.outcome"] == "error"


async def test_failed_attempts_and_refusals_are_errors(make_gateway, upstream, receiver, sdk):
    client = await make_gateway(upstream_config(upstream))
    resp = await client.post(
        "/v1/chat/completions",
        json={"model": "gpt-test", "messages": [{"role": "user", "content": "STATUS:500"}]},
    )
    assert resp.status == 502
    await until(lambda: len(receiver) >= 2, 10, "two spans")
    (attempt,) = _named(receiver, "chat up-model")
    assert attempt["status"] == 2 and attempt["attributes"]["error.type"] == "upstream"
    (server,) = _named(receiver, "chat gpt-test")
    assert server["attributes"]["http.response.status_code"] == 502 and server["status"] == 2


@pytest.mark.parametrize("stream", [False, True])
async def test_each_routed_attempt_is_a_span_of_its_own(
    make_gateway, upstream, receiver, sdk, stream
):
    cfg = upstream_config(upstream)
    cfg["backends"]["dead"] = {"kind": "openai", "base_url": f"http://127.0.0.1:{free_port()}/v1"}
    cfg["models"]["gpt-test"] = {
        "targets": [
            {"backend": "dead", "upstream_model": "dead-model"},
            {"backend": "up", "upstream_model": "up-model"},
        ]
    }
    client = await make_gateway(cfg)
    answer = await sdk(client).chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "hi"}], stream=stream
    )
    if stream:
        assert [c async for c in answer]
    await until(lambda: len(receiver) >= 3, 10, "three spans")
    (server,) = _named(receiver, "chat gpt-test")
    (failed,) = _named(receiver, "chat dead-model")
    (answered,) = _named(receiver, "chat up-model")
    assert failed["parent"] == answered["parent"] == server["span_id"]
    assert failed["status"] == 2 and answered["status"] != 2
    assert failed["attributes"]["hookgate.backend"] == "openai:dead"


async def test_content_when_opted_in_and_streams(make_gateway, upstream, receiver, sdk):
    cfg = upstream_config(upstream)
    cfg["telemetry"] = {"capture_content": True}
    cfg["models"]["gpt-test"]["price"] = PRICE
    client = await make_gateway(cfg)
    stream = await sdk(client).chat.completions.create(
        model="gpt-test",
        messages=[{"role": "user", "content": "tell me"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    assert [c async for c in stream]
    await until(lambda: _named(receiver, "chat gpt-test"), 10, "the server span")
    (server,) = _named(receiver, "chat gpt-test")
    assert "tell me" in server["attributes"]["gen_ai.input.messages"]
    assert "upstream says" in server["attributes"]["gen_ai.output.messages"]
    # A stream's cost is known at its end, before the server span ends.
    assert server["attributes"]["hookgate.cost_usd"] == pytest.approx(COST)


async def test_a_stream_the_client_left_ends_its_attempt(
    make_gateway, aiohttp_server, receiver, sdk
):
    held = HeldUpstream(first=["one ", "two "], rest=["never sent"])
    server = await aiohttp_server(held.app())
    client = await make_gateway(upstream_config(server))
    stream = await sdk(client).chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    text = ""
    async for chunk in stream:
        text += (chunk.choices[0].delta.content or "") if chunk.choices else ""
        if text == "one two ":
            break
    await stream.close()
    await until(lambda: len(receiver) >= 2, 10, "two spans")
    held.release.set()
    (attempt,) = _named(receiver, "chat up-model")
    (request,) = _named(receiver, "chat gpt-test")
    assert attempt["parent"] == request["span_id"]
    # Cancelled while it waited on the upstream: the attempt ends unfinished, the request's
    # outcome says why.
    assert attempt["status"] == 2 and attempt["attributes"]["error.type"] == "CancelledError"
    assert request["attributes"]["hookgate.outcome"] == "client_gone"
    # The upstream got the attempt's context, as a whole answer's does.
    assert held.headers[-1]["traceparent"].split("-")[2] == attempt["span_id"]


async def test_agent_runs_steps_and_tools_are_spans(make_gateway, upstream, receiver, sdk):
    cfg = upstream_config(upstream)
    cfg["agents"] = {"helper": {"model": "gpt-test", "tools": ["fakes.tools:get_weather"]}}
    client = await make_gateway(cfg)
    await sdk(client).chat.completions.create(
        model="helper", messages=[{"role": "user", "content": SCRIPT}]
    )
    await until(lambda: len(receiver) >= 5, 10, "five spans")
    (server,) = _named(receiver, "chat helper")
    (agent,) = _named(receiver, "invoke_agent helper")
    steps = _named(receiver, "chat up-model")
    (tool,) = _named(receiver, "execute_tool get_weather")
    assert agent["parent"] == server["span_id"] and agent["kind"] == INTERNAL
    assert len(steps) == 2 and {s["parent"] for s in steps} == {agent["span_id"]}
    assert tool["parent"] == agent["span_id"]
    assert tool["attributes"]["gen_ai.operation.name"] == "execute_tool"
    assert {s["trace_id"] for s in receiver} == {server["trace_id"]}


async def test_off_without_an_endpoint(make_gateway, upstream, receiver, monkeypatch, sdk):
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
    client = await make_gateway(upstream_config(upstream))
    await sdk(client).chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "x"}]
    )
    assert "traceparent" not in upstream.app[openai_upstream.HEADERS][-1]


async def test_unsampled_requests_make_no_spans_but_pass_the_context(
    make_gateway, upstream, receiver, monkeypatch, sdk
):
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_always_off")
    client = await make_gateway(upstream_config(upstream))
    api = sdk(client, default_headers={"traceparent": f"00-{TRACE_ID}-{PARENT}-00"})
    await api.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "x"}])
    # The caller's trace, unsampled, goes on to the upstream (from the gateway's own span).
    version, trace_id, parent, flags = upstream.app[openai_upstream.HEADERS][-1][
        "traceparent"
    ].split("-")
    assert (version, trace_id, flags) == ("00", TRACE_ID, "00") and parent != PARENT
    # A sampled request afterwards is exported: nothing of the first one came before it.
    await api.chat.completions.create(
        model="gpt-test",
        messages=[{"role": "user", "content": "y"}],
        extra_headers={"traceparent": f"00-{TRACE_ID}-{PARENT}-01"},
    )
    await until(lambda: len(receiver) >= 2, 10, "the sampled request's spans")
    assert len(receiver) == 2


async def test_a_fallback_is_one_attempt_span_more(
    make_gateway, upstream, receiver, aiohttp_server, sdk
):
    async def broken(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": "down"}}, status=500)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", broken)
    primary = await aiohttp_server(app)
    cfg = upstream_config(upstream)
    cfg["backends"]["down"] = {"kind": "openai", "base_url": str(primary.make_url("/v1"))}
    cfg["models"]["fb"] = {
        "targets": [
            {"backend": "down", "upstream_model": "up-p"},
            {"backend": "up", "upstream_model": "up-f"},
        ],
        "allowed_fails": 0,
    }
    client = await make_gateway(cfg)
    done = await sdk(client).chat.completions.create(
        model="fb", messages=[{"role": "user", "content": "hi"}]
    )
    assert done.choices[0].message.content == "upstream says: hi"
    await until(lambda: len(receiver) >= 3, 10, "three spans")
    (server,) = _named(receiver, "chat fb")
    (failed,) = _named(receiver, "chat up-p")
    (served,) = _named(receiver, "chat up-f")
    assert failed["parent"] == served["parent"] == server["span_id"]
    assert failed["status"] == 2 and served["status"] != 2


def _exporter_processes() -> list[int]:
    """This process's children running the span exporter."""
    return children_running(b"exporter.py")


def _metric(text: str, name: str) -> float:
    return float(next(line for line in text.splitlines() if line.startswith(name)).split()[-1])


async def test_spans_are_exported_by_a_process_of_their_own_and_counted(
    make_gateway, upstream, receiver, sdk
):
    client = await make_gateway(upstream_config(upstream))
    await sdk(client).chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "x"}]
    )
    await until(lambda: len(receiver) >= 2, 10, "two spans")
    metrics = await (await client.get("/metrics")).text()
    assert _metric(metrics, 'hookgate_trace_spans_total{outcome="sent"}') >= 2
    (pid,) = _exporter_processes()
    # Its pipe holds a batch's frame: written in one turn, read in one wake.
    size, most = _pipe_size(pid)
    assert size == min(sidecar.PIPE_SIZE, most)
    # The process gone, requests are answered as before; their spans are dropped and counted.
    os.kill(pid, signal.SIGKILL)
    await until(lambda: not _exporter_processes() or ended(pid), 10, "the exporter's end")
    for _ in range(3):
        done = await sdk(client).chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": "y"}]
        )
        assert done.choices[0].message.content == "upstream says: y"

    async def dropped() -> bool:
        text = await (await client.get("/metrics")).text()
        return _metric(text, 'hookgate_trace_spans_total{outcome="dropped"}') >= 6

    await until(dropped, 10, "six spans dropped")


@pytest.mark.parametrize(
    ("priority", "policy"),
    [(None, os.SCHED_IDLE), ("idle", os.SCHED_IDLE), ("normal", os.SCHED_OTHER)],
)
async def test_the_exporter_runs_on_the_time_requests_leave(
    make_gateway, upstream, receiver, sdk, priority, policy
):
    config = upstream_config(upstream)
    if priority is not None:
        config["telemetry"] = {"exporter_priority": priority}
    client = await make_gateway(config)
    await sdk(client).chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "x"}]
    )
    # Started at ordinary priority, it takes the idle class once a frame came in time. On a
    # busy machine the first frame may have waited in the pipe while the process still started:
    # then another request's frame is the one that comes in time.
    await until(lambda: len(receiver) >= 2, 10, "two spans")
    (pid,) = _exporter_processes()

    async def in_class_or_another_frame() -> bool:
        if os.sched_getscheduler(pid) == policy:
            return True
        sent = len(receiver)
        await sdk(client).chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": "x"}]
        )
        await until(lambda: len(receiver) > sent, 10, "the request's spans")
        return False

    await until(in_class_or_another_frame, 30, "the exporter's class")
    if policy == os.SCHED_OTHER:
        # Sent another frame, "normal" still has the ordinary class.
        sent = len(receiver)
        await sdk(client).chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": "y"}]
        )
        await until(lambda: len(receiver) >= sent + 2, 10, "two more spans")
        assert os.sched_getscheduler(pid) == os.SCHED_OTHER


def _pipe_size(pid: int) -> tuple[int, int]:
    """The buffer size of the pipe on ``pid``'s standard input, and the most it may have."""
    most = int(Path("/proc/sys/fs/pipe-max-size").read_text())
    with open(f"/proc/{pid}/fd/0", "rb", buffering=0) as pipe:
        return fcntl.fcntl(pipe, fcntl.F_GETPIPE_SZ), most
