"""A third-party HTTP backend written on :class:`HTTPBackend` with a few methods: a "reverse
words" upstream that streams its own SSE, called through the official OpenAI and Anthropic
SDKs."""

from __future__ import annotations

import asyncio
from typing import Any

import attrs
import openai
import orjson
import pytest
from aiohttp import web

from gateway import Attempts, Finish, Start, TextDelta, Usage, UsageEvent, hookimpl
from gateway.backends.http import HTTPBackend, HTTPBackendConfig
from gateway.errors import GatewayError, UpstreamError

SECRET = "words-secret"
SEEN = web.AppKey("seen", list)


# --- the upstream: its own API and its own SSE ---------------------------------------------


async def reverse(request: web.Request) -> web.StreamResponse:
    """``POST /api/reverse {"text": ...}``: the words of ``text`` in reverse order, one SSE
    event each, then ``done``. Trouble on request: FAIL (an error event mid-stream), CUT (the
    stream stops early), DENY (a 429 before any byte)."""
    request.app[SEEN].append((dict(request.headers), await request.json()))
    if request.headers.get("x-words-key") != SECRET:
        return web.json_response({"message": "bad key"}, status=401)
    text: str = (await request.json())["text"]
    if text == "DENY":
        return web.json_response({"message": "slow down"}, status=429, headers={"retry-after": "7"})
    resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await resp.prepare(request)
    await resp.write(b"\xef\xbb\xbf: reversing\r\n\r\n")  # a BOM and a comment first
    words = text.split()[::-1]
    for i, word in enumerate(words):
        frame = b"event: word\r\ndata: " + orjson.dumps({"word": word}) + b"\r\n\r\n"
        await resp.write(frame[:9])  # frames arrive in pieces
        await asyncio.sleep(0)
        await resp.write(frame[9:])
        if i == 0 and "FAIL" in words:
            await resp.write(b'event: failure\ndata: {"failure": "out of words"}\n\n')
            return resp
        if i == 0 and "CUT" in words:
            return resp
    await resp.write(b"event: done\ndata: " + orjson.dumps({"words": len(words)}) + b"\n\n")
    return resp


def words_upstream() -> web.Application:
    app = web.Application()
    app[SEEN] = []
    app.router.add_post("/api/reverse", reverse)
    return app


# --- the plugin: a config class, a parser and a backend of a few methods -----------------------


@attrs.frozen
class WordsConfig(HTTPBackendConfig):
    separator: str = " "


class WordsParser:
    def __init__(self, separator: str) -> None:
        self.separator = separator
        self.finished = False
        self.words = 0

    def feed(self, obj: dict[str, Any]) -> list[Any]:
        if "word" in obj:
            self.words += 1
            if self.words == 1:
                return [Start(model="reverser"), TextDelta(obj["word"])]
            return [TextDelta(self.separator + obj["word"])]
        if "words" in obj:
            self.finished = True
            return [UsageEvent(Usage(input_tokens=1, output_tokens=obj["words"])), Finish("stop")]
        return []


class WordsBackend(HTTPBackend):
    chat_path = "/reverse"
    config: WordsConfig

    def auth_headers(self) -> dict[str, str]:
        return {"x-words-key": self.config.api_key or ""}

    def encode_request(self, request):
        return orjson.dumps({"text": request.last_user_text()})

    def stream_parser(self, request):
        return WordsParser(self.config.separator)

    def error(self, obj: dict[str, Any]) -> GatewayError | None:
        return UpstreamError(f"upstream error: {obj['failure']}") if "failure" in obj else None


class WordsPlugin:
    @hookimpl
    def gateway_register_backends(self, register):
        register("words", WordsBackend, WordsConfig)


@pytest.fixture
async def words(aiohttp_server, make_gateway):
    server = await aiohttp_server(words_upstream())
    config = {
        "backends": {
            "rev": {
                "kind": "words",
                "base_url": str(server.make_url("/api")),
                "api_key": SECRET,
                "separator": "_",
            }
        },
        "models": {"reverser": {"backend": "rev"}},
    }
    client = await make_gateway(config, plugins=[("words", WordsPlugin())])
    return server, client


async def test_a_backend_of_a_few_methods_streams_its_upstreams_sse(words, sdk):
    server, client = words
    api = sdk(client)
    stream = await api.chat.completions.create(
        model="reverser",
        messages=[{"role": "user", "content": "one two three"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "three_two_one"
    )
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.completion_tokens == 3
    headers, body = server.app[SEEN][0]
    assert body == {"text": "one two three"} and headers["x-words-key"] == SECRET
    assert headers["Content-Type"] == "application/json"


async def test_non_streamed_requests_fold_the_stream(words, sdk):
    _, client = words
    answer = await sdk(client).chat.completions.create(
        model="reverser", messages=[{"role": "user", "content": "a b"}]
    )
    assert answer.choices[0].message.content == "b_a"
    assert answer.choices[0].finish_reason == "stop" and answer.usage.completion_tokens == 2


async def test_other_protocols_get_it_translated(words, claude_sdk):
    _, client = words
    async with claude_sdk(client).messages.stream(
        model="reverser", max_tokens=10, messages=[{"role": "user", "content": "x y"}]
    ) as stream:
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert text == "y_x" and final.stop_reason == "end_turn"


async def test_failures_reach_the_client_as_failures(words, sdk):
    _, client = words
    api = sdk(client)

    async def ask(text: str) -> str:
        stream = await api.chat.completions.create(
            model="reverser", messages=[{"role": "user", "content": text}], stream=True
        )
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    with pytest.raises(openai.APIError, match="out of words"):
        await ask("FAIL now")  # the protocol's error frame, recognised by error()
    with pytest.raises(openai.APIError, match="closed the stream before finishing"):
        await ask("CUT here")
    with pytest.raises(openai.RateLimitError, match="status 429") as info:
        await ask("DENY")  # an error status before the stream: a plain error response
    assert info.value.response.headers["retry-after"] == "7"
    with pytest.raises(openai.APIError, match="out of words"):
        await api.chat.completions.create(
            model="reverser", messages=[{"role": "user", "content": "FAIL"}]
        )


async def test_json_answers_raise_the_protocols_error():
    backend = WordsBackend(
        "rev", WordsConfig(kind="words", base_url="http://127.0.0.1:9/api"), gateway=None
    )
    assert backend.json(b'{"word": "x"}') == {"word": "x"}
    with pytest.raises(UpstreamError, match="upstream error: gone"):
        backend.json(b'{"failure": "gone"}')
    with pytest.raises(UpstreamError, match="invalid JSON"):
        backend.json(b"{nope")


class ShoutingBackend(WordsBackend):
    """A subclass whose own stream() changes the events its base's gives."""

    async def stream(self, request, exchange):
        async for ev in super().stream(request, exchange):
            if type(ev) is TextDelta:
                ev.text = ev.text.upper()
            yield ev


class ShoutingPlugin:
    @hookimpl
    def gateway_register_backends(self, register):
        register("shouting", ShoutingBackend, WordsConfig)


async def test_a_subclass_stream_is_the_one_that_answers(aiohttp_server, make_gateway, sdk):
    # The pipeline reads an HTTP backend's events a read at a time only when its stream() is
    # the base's: an override is what the client gets.
    server = await aiohttp_server(words_upstream())
    config = {
        "backends": {
            "loud": {
                "kind": "shouting",
                "base_url": str(server.make_url("/api")),
                "api_key": SECRET,
            }
        },
        "models": {"shouter": {"backend": "loud"}},
    }
    client = await make_gateway(config, plugins=[("shouting", ShoutingPlugin())])
    stream = await sdk(client).chat.completions.create(
        model="shouter", messages=[{"role": "user", "content": "one two"}], stream=True
    )
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == text.upper() and "TWO" in text and "ONE" in text


class ShoutingAttempts(Attempts):
    """Attempts observed one event at a time (stream() overridden, reads() not)."""

    def __init__(self) -> None:
        self.streams = 0

    async def stream(self, backend, request, ex):
        self.streams += 1
        async for ev in backend.stream(request, ex):
            if type(ev) is TextDelta:
                ev.text = ev.text.upper()
            yield ev


class ShoutingAttemptsPlugin:
    def __init__(self) -> None:
        self.attempts = ShoutingAttempts()

    @hookimpl
    def gateway_configure_app(self, app, gateway):
        gateway.pipeline.attempts = self.attempts


async def test_attempts_that_observe_stream_are_not_passed_by(aiohttp_server, make_gateway, sdk):
    # Attempts.reads() gives a backend's reads only to a subclass that does not override
    # stream() (or overrides reads() too): this one's stream() sees every attempt.
    server = await aiohttp_server(words_upstream())
    config = {
        "backends": {
            "words": {"kind": "words", "base_url": str(server.make_url("/api")), "api_key": SECRET}
        },
        "models": {"speaker": {"backend": "words"}},
    }
    plugin = ShoutingAttemptsPlugin()
    client = await make_gateway(
        config, plugins=[("words", WordsPlugin()), ("shouting-attempts", plugin)]
    )
    stream = await sdk(client).chat.completions.create(
        model="speaker", messages=[{"role": "user", "content": "one two"}], stream=True
    )
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "ONE" in text and "TWO" in text and text == text.upper()
    assert plugin.attempts.streams == 1
