"""Streams through a running gateway: the writer's keep-alive pings, relayed frames observed
by hooks and filters, and the events of one read leaving in one write."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from support.configs import upstream_config

from gateway import Backend, Filter, Finish, TextDelta, hookimpl
from gateway.protocols.base import SSEResponse
from gateway.protocols.openai.adapter import OpenAIProtocol
from gateway.streaming.sse import SSEDecoder, SSEFrame


def streamed(frames: list[SSEFrame]) -> str:
    """The text of a Chat Completions stream's frames."""
    chunks = [json.loads(f.data) for f in frames if f.data != "[DONE]"]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def decode(chunks: list[bytes]) -> list[SSEFrame]:
    decoder = SSEDecoder()
    frames = [f for chunk in chunks for f in decoder.feed(chunk)]
    return frames + decoder.end()


async def test_idle_streams_get_keep_alive_comments(make_gateway, monkeypatch):
    monkeypatch.setattr(OpenAIProtocol, "ping_interval", 0.05)
    client = await make_gateway(
        {
            "backends": {"slow": {"kind": "echo", "delay": "200ms"}},
            "models": {"slow": {"backend": "slow"}},
        }
    )
    resp = await client.post(
        "/v1/chat/completions",
        json={"model": "slow", "stream": True, "messages": [{"role": "user", "content": "a b c"}]},
    )
    assert resp.status == 200 and resp.headers["content-type"] == "text/event-stream"
    assert resp.headers["cache-control"] == "no-cache"
    text = await resp.text()
    assert ": ping\n\n" in text
    frames = decode([text.encode()])
    assert frames[-1].data == "[DONE]"
    assert streamed(frames) == "a b c"


# --- the relay: parsed in full only when something observes the answer -----------------------


class Observer(Filter):
    def __init__(self) -> None:
        self.answers: list[Any] = []

    async def on_success(self, request, response, exchange):
        self.answers.append(response)


def filter_plugin(flt: Filter) -> tuple[str, Any]:
    """A plugin registering ``flt`` as a filter."""

    class P:
        @hookimpl
        def gateway_register_filters(self, register):
            register("observer", lambda gw: flt)

    return ("observer", P())


async def _stream_text(api: Any, content: str) -> str:
    stream = await api.chat.completions.create(
        model="gpt-test",
        messages=[{"role": "user", "content": content}],
        stream=True,
        stream_options={"include_usage": True},
    )
    return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])


async def test_relay_observed_by_a_success_hook_hands_it_the_whole_answer(
    make_gateway, upstream, sdk
):
    observer = Observer()
    client = await make_gateway(upstream_config(upstream), plugins=[filter_plugin(observer)])
    text = await _stream_text(sdk(client), "hi")
    assert text == "upstream says: hi"
    (answer,) = observer.answers
    assert answer.message.text() == text and answer.finish_reason == "stop"
    assert answer.usage.input_tokens == 11 and answer.usage.output_tokens == 7


async def test_unobserved_relay_still_counts_usage_and_catches_failures(
    make_gateway, upstream, sdk
):
    client = await make_gateway(upstream_config(upstream))
    api = sdk(client)
    assert await _stream_text(api, "hi") == "upstream says: hi"
    metrics = await (await client.get("/metrics")).text()
    assert 'hookgate_tokens_total{direction="output",model="gpt-test"} 7.0' in metrics
    for trouble in ("ERRFRAME", "NOFINISH", "BREAK"):
        with pytest.raises(openai.APIError):
            await _stream_text(api, trouble)


async def test_a_filter_that_does_not_read_relays_lets_them_skip_content(
    make_gateway, upstream, sdk
):
    class UsageOnly(Observer):
        reads_relayed = False

    observer = UsageOnly()
    client = await make_gateway(upstream_config(upstream), plugins=[filter_plugin(observer)])
    assert await _stream_text(sdk(client), "hi") == "upstream says: hi"
    (answer,) = observer.answers
    assert answer.usage.output_tokens == 7 and answer.finish_reason == "stop"
    assert answer.message.text() == ""  # the content frames were relayed, not parsed


async def test_events_of_one_read_leave_in_one_write(make_gateway, monkeypatch):
    class Burst(Backend):
        async def stream(self, request, exchange):
            for word in ("a", "b", "c"):
                yield TextDelta(word, more=True)  # the same upstream read brought them all
            yield Finish("stop")

    class P:
        @hookimpl
        def gateway_register_backends(self, register):
            register("burst", Burst)

    writes: list[bytes] = []
    original = SSEResponse.write

    async def counting(self, data):
        writes.append(bytes(data))
        await original(self, data)

    monkeypatch.setattr(SSEResponse, "write", counting)
    client = await make_gateway(
        {"backends": {"b": {"kind": "burst"}}, "models": {"m": {"backend": "b"}}},
        plugins=[("burst", P())],
    )
    resp = await client.post(
        "/v1/chat/completions",
        json={"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]},
    )
    frames = decode([await resp.read()])
    assert streamed(frames) == "abc" and frames[-1].data == "[DONE]"
    # one write: the role chunk, three deltas and the finish ([DONE] goes with the end)
    assert len(writes) == 1 and writes[0].count(b"data: ") == 5
