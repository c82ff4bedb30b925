"""The plugins of docs/examples/plugins, one of each kind, as the documentation shows them: each
is loaded from its file and served, and called by the real client of its protocol."""

from __future__ import annotations

import hashlib
import hmac
import importlib.util
import logging
import sys
import time
import uuid
from collections.abc import Generator
from types import ModuleType
from typing import Any

import httpx
import openai
import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from fakes.triggers import until, until_metric
from support import ROOT
from support.configs import recorded, upstream_config

from gateway import GATEWAY, ConfigError, SSEDecoder, create_app
from gateway.triggers import ListenerManager, WebhookRouter

EXAMPLES = ROOT / "docs" / "examples" / "plugins"


def example(name: str) -> ModuleType:
    """The example plugin module ``docs/examples/plugins/<name>.py``, freshly loaded."""
    module_name = f"hookgate_docs_{name}"
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # attrs and the tool schemas resolve annotations through the module's entry here.
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def test_every_example_is_tested_here():
    tested = {"ask_protocol", "tokenstream_backend", "signed_requests", "guardrail"}
    tested |= {"dict_sessions", "acme_webhooks", "redis_list", "concierge", "maintenance"}
    assert {p.stem for p in EXAMPLES.glob("*.py")} == tested


# --- a protocol: JSON in, SSE out ------------------------------------------------------------


def frames(body: bytes) -> list[tuple[str, Any]]:
    return [(f.event or "message", orjson.loads(f.data)) for f in SSEDecoder().feed(body)]


async def test_protocol_answers_json_and_streams_sse(make_gateway):
    client = await make_gateway({}, plugins=[example("ask_protocol")])
    resp = await client.post("/ask", json={"model": "echo", "question": "one two three"})
    assert resp.status == 200
    assert await resp.json() == {"model": "echo", "answer": "one two three"}

    resp = await client.post(
        "/ask", json={"model": "echo", "question": "one two three", "stream": True}
    )
    assert resp.status == 200 and resp.content_type == "text/event-stream"
    got = frames(await resp.read())
    assert "".join(data["text"] for event, data in got if event == "message") == "one two three"
    event, done = got[-1]
    assert event == "done" and done["reason"] == "stop" and done["output_tokens"] > 0


async def test_protocol_errors_are_its_own_shape(make_gateway, upstream):
    ask = example("ask_protocol")
    client = await make_gateway(upstream_config(upstream), plugins=[ask])
    resp = await client.post("/ask", data=b"{not json")
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "invalid_request"
    resp = await client.post("/ask", json={"model": "gpt-test"})
    assert resp.status == 400
    assert await resp.json() == {
        "error": {"message": "'question' must be a string.", "code": "invalid_request"}
    }
    # A failure mid-stream is the protocol's error frame, after the text sent before it.
    resp = await client.post(
        "/ask", json={"model": "gpt-test", "question": "ERRFRAME", "stream": True}
    )
    got = frames(await resp.read())
    assert got[0] == ("message", {"text": "upstream "})
    assert got[-1][0] == "error" and "server_error" in got[-1][1]["error"]["message"]
    assert "done" not in [event for event, _ in got]

    keyed = await make_gateway({"auth": {"keys": ["sk-ask"]}}, plugins=[ask])
    resp = await keyed.post("/ask", json={"model": "echo", "question": "hi"})
    assert resp.status == 401 and set(await resp.json()) == {"error"}
    resp = await keyed.post(
        "/ask",
        json={"model": "echo", "question": "hi"},
        headers={"authorization": "Bearer sk-ask"},
    )
    assert await resp.json() == {"model": "echo", "answer": "hi"}


# --- a backend on HTTPBackend, for an upstream with its own SSE ------------------------------

TOKENSTREAM_KEY = "ts-secret"
SEEN = web.AppKey("seen", list)


async def generate(request: web.Request) -> web.StreamResponse:
    """The made-up upstream: the words of the prompt's last line, one frame each."""
    if request.headers.get("x-api-key") != TOKENSTREAM_KEY:
        return web.json_response({"error": {"message": "bad key"}}, status=401)
    body = await request.json()
    request.app[SEEN].append(body)
    words = body["prompt"].splitlines()[-1].removeprefix("user: ").split()
    resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await resp.prepare(request)
    for i, word in enumerate(words[: body["max_tokens"]]):
        await resp.write(b"data: " + orjson.dumps({"text": word if i == 0 else " " + word}))
        await resp.write(b"\n\n")
        if word == "FAIL":
            await resp.write(b'data: {"error": {"message": "out of capacity"}}\n\n')
            return resp
        if word == "CUT":
            return resp
    reason = "max_tokens" if len(words) > body["max_tokens"] else "end"
    used = min(len(words), body["max_tokens"])
    end = {"reason": reason, "tokens_in": len(words), "tokens_out": used}
    await resp.write(b"data: " + orjson.dumps(end) + b"\n\n")
    return resp


@pytest.fixture
async def tokenstream(aiohttp_server, make_gateway):
    app = web.Application()
    app[SEEN] = []
    app.router.add_post("/api/generate", generate)
    server = await aiohttp_server(app)

    async def make(api_key: str = TOKENSTREAM_KEY) -> Any:
        config = {
            "backends": {
                "tokens": {
                    "kind": "tokenstream",
                    "base_url": str(server.make_url("/api")),
                    "api_key": api_key,
                    "max_tokens": 64,
                }
            },
            "models": {"small": {"backend": "tokens", "upstream_model": "ts-small"}},
        }
        return await make_gateway(config, plugins=[example("tokenstream_backend")])

    return server, make


async def test_backend_streams_its_upstreams_sse(tokenstream, sdk):
    server, make = tokenstream
    api = sdk(await make())
    stream = await api.chat.completions.create(
        model="small",
        messages=[{"role": "user", "content": "one two three"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "one two three"
    )
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.completion_tokens == 3
    assert server.app[SEEN] == [
        {"model": "ts-small", "prompt": "user: one two three", "max_tokens": 64}
    ]

    whole = await api.chat.completions.create(
        model="small", messages=[{"role": "user", "content": "one two three"}], max_tokens=2
    )
    assert whole.choices[0].message.content == "one two"
    assert whole.choices[0].finish_reason == "length"
    assert whole.usage.prompt_tokens == 3 and whole.usage.completion_tokens == 2


async def test_backend_reports_upstream_failures(tokenstream, sdk):
    _, make = tokenstream
    api = sdk(await make())
    for prompt, message in [
        ("one FAIL", "tokenstream: out of capacity"),
        ("one CUT", "closed the stream before finishing"),
    ]:
        stream = await api.chat.completions.create(
            model="small", messages=[{"role": "user", "content": prompt}], stream=True
        )
        text = []
        with pytest.raises(openai.APIError) as info:
            async for chunk in stream:
                text.append(chunk.choices[0].delta.content or "" if chunk.choices else "")
        assert "".join(text).startswith("one") and message in info.value.message
    # The upstream refuses the gateway's key: the client is not told its own key is wrong.
    wrong = sdk(await make(api_key="wrong"))
    with pytest.raises(openai.APIStatusError) as refused:
        await wrong.chat.completions.create(
            model="small", messages=[{"role": "user", "content": "hi"}]
        )
    assert refused.value.status_code == 502


# --- an authenticator: signed requests, no API key -------------------------------------------

BOT_SECRET = "bot-secret-0123456789"


class Sign(httpx.Auth):
    """Signs each request as the signed_requests example expects, computed here on its own."""

    requires_request_body = True

    def __init__(self, name: str, secret: str, skew: float = 0.0) -> None:
        self.name, self.secret, self.skew = name, secret.encode(), skew

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        stamp = str(int(time.time() + self.skew))
        signed = b"\n".join(
            [stamp.encode(), request.method.encode(), request.url.raw_path, request.content]
        )
        request.headers["x-client"] = self.name
        request.headers["x-timestamp"] = stamp
        request.headers["x-signature"] = hmac.new(self.secret, signed, hashlib.sha256).hexdigest()
        yield request


@pytest.fixture
async def signing():
    made: list[httpx.AsyncClient] = []

    def make(client: Any, api_key: str = "unused", **sign: Any) -> openai.AsyncOpenAI:
        http = httpx.AsyncClient(auth=Sign(**sign))
        made.append(http)
        return openai.AsyncOpenAI(
            base_url=str(client.make_url("/v1")), api_key=api_key, max_retries=0, http_client=http
        )

    yield make
    for http in made:
        await http.aclose()


async def test_signed_requests_authenticate_without_a_key(make_gateway, sdk, signing):
    config = {"signed_requests": {"clients": {"build-bot": BOT_SECRET}}}
    client = await make_gateway(config, plugins=[example("signed_requests")])
    assert client.server.app[GATEWAY].auth_enabled
    messages = [{"role": "user", "content": "signed hello"}]

    bot = signing(client, name="build-bot", secret=BOT_SECRET)
    out = await bot.chat.completions.create(model="echo", messages=messages)
    assert out.choices[0].message.content == "signed hello"

    with pytest.raises(openai.AuthenticationError):  # unsigned, and no authenticator knows it
        await sdk(client).chat.completions.create(model="echo", messages=messages)
    for sign, code in [
        ({"name": "build-bot", "secret": "not-the-secret"}, "bad_signature"),
        ({"name": "intruder", "secret": BOT_SECRET}, "bad_signature"),
        ({"name": "build-bot", "secret": BOT_SECRET, "skew": -600}, "stale_signature"),
    ]:
        with pytest.raises(openai.AuthenticationError) as info:
            await signing(client, **sign).chat.completions.create(model="echo", messages=messages)
        assert info.value.code == code

    # A body changed after signing is refused.
    headers = {"x-client": "build-bot", "x-timestamp": str(int(time.time()))}
    body = orjson.dumps({"model": "echo", "messages": messages})
    signed = b"\n".join([headers["x-timestamp"].encode(), b"POST", b"/v1/chat/completions", body])
    headers["x-signature"] = hmac.new(BOT_SECRET.encode(), signed, hashlib.sha256).hexdigest()
    good = await client.post("/v1/chat/completions", data=body, headers=headers)
    assert good.status == 200
    tampered = await client.post(
        "/v1/chat/completions", data=body.replace(b"signed", b"forged"), headers=headers
    )
    assert tampered.status == 401


async def test_signed_requests_beside_api_keys(make_gateway, sdk, signing):
    config = {
        "auth": {"keys": ["sk-plain"]},
        "signed_requests": {"clients": {"build-bot": BOT_SECRET}},
    }
    client = await make_gateway(config, plugins=[example("signed_requests")])
    messages = [{"role": "user", "content": "hi"}]
    by_key = await sdk(client, api_key="sk-plain").chat.completions.create(
        model="echo", messages=messages
    )
    assert by_key.choices[0].message.content == "hi"
    signed = await signing(
        client, api_key="not-a-key", name="build-bot", secret=BOT_SECRET
    ).chat.completions.create(model="echo", messages=messages)
    assert signed.choices[0].message.content == "hi"
    # No clients configured: the authenticator is off, and the gateway open as before.
    open_gateway = await make_gateway({}, plugins=[example("signed_requests")])
    assert not open_gateway.server.app[GATEWAY].auth_enabled


# --- a filter: an async guardrail that accounts in on_end ------------------------------------


def guardrail_of(client: Any) -> Any:
    [guard] = [f for f in client.server.app[GATEWAY].filters if f.name == "guardrail"]
    return guard


async def test_guardrail_cuts_off_a_blocked_answer(make_gateway, sdk):
    config = {"guardrail": {"blocked": ["two three"]}}
    client = await make_gateway(config, plugins=[example("guardrail")])
    guard = guardrail_of(client)
    api = sdk(client)

    ok = await api.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "one two four"}]
    )
    assert ok.choices[0].message.content == "one two four"
    assert guard.tokens == {"anonymous": 3}

    # The phrase is split across two events of the stream: caught all the same.
    stream = await api.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "one two three four"}], stream=True
    )
    sent = []
    with pytest.raises(openai.APIError) as info:
        async for chunk in stream:
            sent.append(chunk.choices[0].delta.content or "" if chunk.choices else "")
    assert "content policy" in info.value.message
    assert "".join(sent) == "one two "  # nothing from the blocked event on
    counted = guard.tokens["anonymous"]
    assert counted > 3  # on_end counted what was sent (an estimate: the stream had no usage)

    with pytest.raises(openai.UnprocessableEntityError) as refused:
        await api.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "one two three"}]
        )
    assert refused.value.code == "blocked"
    assert guard.tokens == {"anonymous": counted}  # nothing was sent


async def test_guardrail_accounts_for_a_client_that_left(make_gateway, upstream, sdk, caplog):
    config = {**upstream_config(upstream), "guardrail": {"blocked": ["forbidden"]}}
    client = await make_gateway(config, plugins=[example("guardrail")])
    guard = guardrail_of(client)
    caplog.set_level(logging.INFO, logger="hookgate_docs_guardrail")
    stream = await sdk(client).chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "DRIP"}], stream=True
    )
    received = 0
    async for chunk in stream:
        received += bool(chunk.choices and chunk.choices[0].delta.content)
        if received == 3:
            break
    await stream.close()
    await until(lambda: "client_gone" in caplog.text)
    assert guard.tokens["anonymous"] >= 3  # "drip " three times, at least, estimated


async def test_guardrail_off_without_words(make_gateway):
    client = await make_gateway({}, plugins=[example("guardrail")])
    assert not [f for f in client.server.app[GATEWAY].filters if f.name == "guardrail"]


# --- a session store -------------------------------------------------------------------------


async def test_dict_session_store_keeps_and_trims_conversations(make_gateway, upstream, sdk):
    config = {**upstream_config(upstream), "sessions": {"store": "dict", "max_messages": 4}}
    client = await make_gateway(config, plugins=[example("dict_sessions")])
    api = sdk(client, default_headers={"x-session-id": "trip-42"})

    async def ask(*messages: dict[str, str]) -> str | None:
        out = await api.chat.completions.create(model="gpt-test", messages=list(messages))
        return out.choices[0].message.content

    assert await ask({"role": "system", "content": "Be brief."}, {"role": "user", "content": "a"})
    assert await ask({"role": "user", "content": "b"}) == "upstream says: b"
    assert [(m["role"], m["content"]) for m in recorded(upstream)[-1]["messages"]] == [
        ("system", "Be brief."),
        ("user", "a"),
        ("assistant", "upstream says: a"),
        ("user", "b"),
    ]
    listed = await (await client.get("/v1/sessions")).json()
    assert [(s["id"], s["message_count"]) for s in listed["data"]] == [("trip-42", 4)]

    await ask({"role": "user", "content": "c"})  # the oldest turn is trimmed off
    session = await (await client.get("/v1/sessions/trip-42")).json()
    assert [m["content"] for m in session["messages"]] == [
        "Be brief.",
        "b",
        "upstream says: b",
        "c",
        "upstream says: c",
    ]
    deleted = await client.delete("/v1/sessions/trip-42")
    assert (await deleted.json())["deleted"] is True
    assert (await client.get("/v1/sessions/trip-42")).status == 404


def test_dict_session_store_is_refused_with_workers():
    with pytest.raises(ConfigError, match=r"sessions\.store"):
        create_app(
            {"server": {"workers": 2}, "sessions": {"store": "dict"}},
            plugins=[example("dict_sessions")],
        )


# --- a webhook verifier ----------------------------------------------------------------------

ACME_SECRET = "acme-webhook-secret"


def acme_headers(
    body: bytes, secret: str = ACME_SECRET, at: float | None = None, delivery: str | None = None
) -> dict[str, str]:
    stamp = str(int(time.time() if at is None else at))
    digest = hmac.new(secret.encode(), stamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    return {
        "X-Acme-Timestamp": stamp,
        "X-Acme-Signature": f"sha256={digest}",
        "X-Acme-Event": "order.paid",
        "X-Acme-Delivery": delivery or uuid.uuid4().hex,
        "Content-Type": "application/json",
    }


async def test_webhook_verifier_checks_signatures_and_routes_events(make_gateway):
    hooks = WebhookRouter()
    calls: list[Any] = []

    @hooks.on("acme.order.paid")
    async def paid(payload: Any) -> None:
        calls.append(payload)

    config = {"webhooks": {"acme": {"verifier": "acme", "secret": ["old-secret", ACME_SECRET]}}}
    client = await make_gateway(config, plugins=[example("acme_webhooks"), hooks])
    body = orjson.dumps({"order": {"id": "o-7"}})
    headers = acme_headers(body)
    first = await client.post("/webhooks/acme", data=body, headers=headers)
    assert first.status == 202
    again = await client.post("/webhooks/acme", data=body, headers=headers)
    assert again.status == 200 and (await again.json())["status"] == "duplicate"
    # a captured delivery re-sent under a new delivery id: the same signed content, a replay
    replay = {**headers, "X-Acme-Delivery": "forged"}
    resp = await client.post("/webhooks/acme", data=body, headers=replay)
    assert resp.status == 200 and (await resp.json())["runs"] == []
    rotated = await client.post(
        "/webhooks/acme", data=body, headers=acme_headers(body, "old-secret", time.time() + 1)
    )
    assert rotated.status == 202  # either secret of a rotation is accepted
    await until(lambda: len(calls) == 2)
    assert calls == [{"order": {"id": "o-7"}}] * 2

    unsigned = {k: v for k, v in acme_headers(body).items() if k != "X-Acme-Signature"}
    for data, sent, code in [
        (body.replace(b"o-7", b"o-8"), acme_headers(body), "bad_signature"),
        (body, acme_headers(body, secret="guessed"), "bad_signature"),
        (body, acme_headers(body, at=time.time() - 3600), "stale"),
        (body, unsigned, "missing_signature"),
        (body, {**acme_headers(body), "X-Acme-Signature": "md5=00"}, "malformed_signature"),
    ]:
        resp = await client.post("/webhooks/acme", data=data, headers=sent)
        assert resp.status == 401, code
        assert (await resp.json())["error"]["code"] == code
    assert len(calls) == 2


# --- a listener kind -------------------------------------------------------------------------


async def test_listener_kind_takes_jobs_from_a_redis_list(make_gateway, redis_url, redis_prefix):
    key = f"{redis_prefix}jobs"
    listeners = ListenerManager()
    got: list[tuple[Any, str]] = []

    @listeners.listen("redis-list", key=key, url=redis_url)
    async def job(payload: Any, event: Any) -> None:
        got.append((payload, event.type))

    redis = aioredis.Redis.from_url(redis_url)
    try:
        # Pushed before the gateway starts: a list keeps them until they are taken.
        await redis.rpush(key, orjson.dumps({"id": 1}), b"plain words")
        await make_gateway({}, plugins=[example("redis_list"), listeners])
        await until(lambda: len(got) == 2)
        assert got == [({"id": 1}, key), ({"text": "plain words"}, key)]
        assert await redis.llen(key) == 0
    finally:
        await redis.aclose()


async def test_listener_kind_from_the_configuration_runs_an_agent(
    make_gateway, redis_url, redis_prefix
):
    key = f"{redis_prefix}work"
    config = {
        "listeners": {
            "work": {
                "kind": "redis-list",
                "key": key,
                "url": redis_url,
                "agent": "echo",
                "prompt": "Do job {id}",
            }
        }
    }
    client = await make_gateway(config, plugins=[example("redis_list")])
    redis = aioredis.Redis.from_url(redis_url)
    try:
        await redis.rpush(key, orjson.dumps({"id": 7}))
        await until_metric(
            client, "hookgate_trigger_jobs_total", 1, trigger="listener:work", outcome="ok"
        )
    finally:
        await redis.aclose()
    del config["listeners"]["work"]["key"]
    with pytest.raises(ConfigError, match=r"listeners\.work.*key"):
        create_app(config, plugins=[example("redis_list")])


# --- a tool and an agent ---------------------------------------------------------------------


async def test_tool_and_agent_answer_through_the_openai_api(make_gateway, upstream, sdk):
    config = upstream_config(upstream)
    config["models"]["gpt-4o-mini"] = {"backend": "up"}
    client = await make_gateway(config, plugins=[example("concierge")])
    api = sdk(client)
    out = await api.chat.completions.create(
        model="concierge",
        messages=[{"role": "user", "content": 'CALL shipping_quote {"weight_kg": 2.5}'}],
    )
    assert out.choices[0].message.content == (
        'Calling tools.\n\nresults: {"price_eur":7.0,"speed":"standard","quoted_for":"anonymous"}'
    )
    first = recorded(upstream)[0]
    assert first["messages"][0]["content"].startswith("You answer questions about orders.")
    [offered] = first["tools"]
    assert offered["function"]["name"] == "shipping_quote"
    assert offered["function"]["description"] == "The price of shipping a parcel."
    parameters = offered["function"]["parameters"]
    assert parameters["required"] == ["weight_kg"]
    assert parameters["properties"]["speed"]["enum"] == ["standard", "express"]
    assert "context" not in parameters["properties"]
    assert "concierge" in [m.id async for m in api.models.list()]


# --- a configuration section -----------------------------------------------------------------


async def test_config_section_switches_models_off(make_gateway, sdk):
    messages = [{"role": "user", "content": "hi"}]
    client = await make_gateway({}, plugins=[example("maintenance")])
    out = await sdk(client).chat.completions.create(model="echo", messages=messages)
    assert out.choices[0].message.content == "hi"  # the section's defaults: off

    config = {"maintenance": {"enabled": True, "message": "Back at 14:00.", "retry_after": "30m"}}
    client = await make_gateway(config, plugins=[example("maintenance")])
    with pytest.raises(openai.APIStatusError) as info:
        await sdk(client).chat.completions.create(model="echo", messages=messages)
    assert info.value.status_code == 503 and info.value.code == "maintenance"
    assert info.value.body["message"] == "Back at 14:00."
    assert info.value.response.headers["retry-after"] == "1800"

    config["maintenance"]["models"] = ["other"]
    client = await make_gateway(config, plugins=[example("maintenance")])
    out = await sdk(client).chat.completions.create(model="echo", messages=messages)
    assert out.choices[0].message.content == "hi"


@pytest.mark.parametrize(
    ("section", "error"),
    [
        ({"retry_after": "soon"}, "maintenance.retry_after"),
        ({"enabled": "yes"}, "maintenance.enabled"),
        ({"enable": True}, "maintenance: unknown key 'enable'"),
    ],
)
def test_config_section_errors_name_their_path(section, error):
    with pytest.raises(ConfigError) as info:
        create_app({"maintenance": section}, plugins=[example("maintenance")])
    assert any(e.startswith(error) for e in info.value.errors), info.value.errors
