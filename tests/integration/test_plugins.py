"""Plugins at work in a running gateway: no pluggy call per request, filters, inline backends
and protocols, routes added by a plugin."""

from __future__ import annotations

import attrs
import pluggy
import pytest
from fakes.plain_protocol import PLUGIN as PLAIN
from support.configs import recorded, upstream_config

from gateway import (
    GATEWAY,
    Backend,
    ChatResponse,
    Filter,
    Finish,
    Message,
    TextDelta,
    TextPart,
    hookimpl,
)
from gateway.canonical import ToolCallPart
from gateway.errors import Forbidden

MESSAGES = [{"role": "user", "content": "hello"}]


async def test_no_pluggy_call_per_request(make_gateway, upstream, monkeypatch, sdk):
    client = await make_gateway(upstream_config(upstream))

    class NoHooks:
        def __getattr__(self, name):
            raise AssertionError(f"pluggy hook {name} called on the request path")

    pm = client.server.app[GATEWAY].pm
    assert isinstance(pm, pluggy.PluginManager)
    monkeypatch.setattr(pm, "hook", NoHooks())
    api = sdk(client)
    assert (
        (await api.chat.completions.create(model="gpt-test", messages=MESSAGES))
        .choices[0]
        .message.content
    )
    stream = await api.chat.completions.create(model="gpt-test", messages=MESSAGES, stream=True)
    assert [c async for c in stream]


class Recorder(Filter):
    """Changes the request, replaces non-streamed answers, counts events and successes."""

    name = "recorder"
    order = 10

    def __init__(self):
        self.seen: list[str] = []
        self.successes: list[ChatResponse] = []

    async def on_request(self, request, exchange):
        self.seen.append("request")
        if request.last_user_text() == "forbidden":
            raise Forbidden("no")
        if request.last_user_text() != "hello":
            return None
        request.messages[0].parts.append(TextPart(" (filtered)"))
        return request

    async def on_event(self, event, exchange):
        self.seen.append(type(event).__name__)
        return event

    async def on_response(self, request, response, exchange):
        response.message.parts = [TextPart("replaced")]
        return response

    async def on_success(self, request, response, exchange):
        self.successes.append(response)


class Early(Filter):
    order = -5

    def __init__(self, log):
        self.log = log

    async def on_request(self, request, exchange):
        self.log.append("early")


@pytest.fixture
def recorder_plugin():
    rec = Recorder()

    class P:
        @hookimpl
        def gateway_register_filters(self, register):
            register("recorder", lambda gw: rec)
            register("early", lambda gw: Early(rec.seen))

    return rec, ("recorder", P())


async def test_filters_see_change_and_replace(make_gateway, upstream, recorder_plugin, sdk):
    rec, plugin = recorder_plugin
    client = await make_gateway(upstream_config(upstream), plugins=[plugin])
    api = sdk(client)
    out = await api.chat.completions.create(model="gpt-test", messages=MESSAGES)
    assert out.choices[0].message.content == "replaced"
    assert recorded(upstream)[-1]["messages"][0]["content"] == [
        {"type": "text", "text": "hello"},
        {"type": "text", "text": " (filtered)"},
    ]
    assert rec.seen[:2] == ["early", "request"]
    assert rec.successes[-1].message.text() == "replaced"

    stream = await api.chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "TOOLS"}], stream=True
    )
    chunks = [c async for c in stream]
    assert chunks
    assert "ToolCallStart" in rec.seen and "Finish" in rec.seen
    final = rec.successes[-1]
    assert [p.name for p in final.message.parts if isinstance(p, ToolCallPart)] == [
        "get_weather",
        "get_time",
    ]
    assert final.finish_reason == "tool_calls"

    count = len(rec.successes)
    stream = await api.chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "BREAK"}], stream=True
    )
    with pytest.raises(Exception):  # noqa: B017 - the SDK raises its APIError on the error frame
        async for _ in stream:
            pass
    assert len(rec.successes) == count  # a failed stream is not a success

    resp = await client.post(
        "/v1/chat/completions",
        json={"model": "gpt-test", "messages": [{"role": "user", "content": "forbidden"}]},
    )
    assert resp.status == 403


async def test_backend_plugin_inline(make_gateway, sdk):
    class Constant(Backend):
        async def stream(self, request, exchange):
            yield TextDelta("constant")
            yield Finish("stop")

    class P:
        @hookimpl
        def gateway_register_backends(self, register):
            register("constant", Constant)

    client = await make_gateway(
        {"backends": {"c": {"kind": "constant"}}, "models": {"c": {"backend": "c"}}},
        plugins=[("constant", P())],
    )
    api = sdk(client)
    assert (await api.chat.completions.create(model="c", messages=MESSAGES)).choices[
        0
    ].message.content == "constant"
    stream = await api.chat.completions.create(model="c", messages=MESSAGES, stream=True)
    assert "".join([c.choices[0].delta.content or "" async for c in stream]) == "constant"


async def test_backend_that_stops_without_finishing_is_a_failure(make_gateway, sdk):
    class Quits(Backend):
        async def stream(self, request, exchange):
            yield TextDelta("half an answer")

    class P:
        @hookimpl
        def gateway_register_backends(self, register):
            register("quits", Quits)

    client = await make_gateway(
        {"backends": {"q": {"kind": "quits"}}, "models": {"q": {"backend": "q"}}},
        plugins=[("quits", P())],
    )
    resp = await client.post("/v1/chat/completions", json={"model": "q", "messages": MESSAGES})
    assert resp.status == 502
    stream = await sdk(client).chat.completions.create(model="q", messages=MESSAGES, stream=True)
    with pytest.raises(Exception, match="without finishing"):
        async for _ in stream:
            pass


async def test_configure_app_hook_adds_routes_with_error_mapping(make_gateway):
    async def hello(request):
        raise Forbidden("plugins map errors too")

    class P:
        @hookimpl
        def gateway_configure_app(self, app, gateway):
            gateway.add_route("GET", "/hello", hello, name="hello", auth=False)

    client = await make_gateway(plugins=[("hello", P())])
    resp = await client.get("/hello")
    assert resp.status == 403
    assert (await resp.json())["error"]["message"] == "plugins map errors too"


async def test_protocol_plugin_with_its_own_error_shape(make_gateway):
    # A toy protocol registered with gateway_register_protocols (tests/fakes/plain_protocol.py):
    # the body is the prompt, the answer is text, errors are {"oops": ...}.
    client = await make_gateway(
        {"backends": {"e": {"kind": "echo"}}, "models": {"e": {"backend": "e"}}},
        plugins=[PLAIN],
    )
    resp = await client.post("/plain/e", data="plain words")
    assert (resp.status, await resp.text()) == (200, "plain words")
    resp = await client.post("/plain/unknown", data="x")
    assert resp.status == 404
    assert "does not exist" in (await resp.json())["oops"]


async def test_a_filter_may_return_a_new_request(make_gateway, upstream, sdk):
    class Rewrite(Filter):
        async def on_request(self, request, exchange):
            return attrs.evolve(request, messages=[*request.messages[:-1], _user("rewritten")])

    class P:
        @hookimpl
        def gateway_register_filters(self, register):
            register("rewrite", lambda gw: Rewrite())

    client = await make_gateway(upstream_config(upstream), plugins=[("rewrite", P())])
    api = sdk(client)
    out = await api.chat.completions.create(model="gpt-test", messages=MESSAGES)
    assert out.choices[0].message.content == "upstream says: rewritten"
    stream = await api.chat.completions.create(model="gpt-test", messages=MESSAGES, stream=True)
    assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]) == (
        "upstream says: rewritten"
    )
    assert recorded(upstream)[-1]["messages"] == [{"role": "user", "content": "rewritten"}]


def _user(text):
    return Message("user", [TextPart(text)])
