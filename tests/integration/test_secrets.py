"""Nothing secret leaves the gateway: known secrets sent through every path of upstream failure
(each backend kind, relayed and translated, streamed and not, every protocol) and through query
strings never appear in a response or in the log, at DEBUG with the access log on."""

from __future__ import annotations

import aiohttp
import orjson
import pytest
from aiohttp import web
from support.processes import gateway_process

CLIENT_KEY = "sk-client-QUERYTOKEN-0123456789"
UPSTREAM_KEY = "sk-upstream-GATEWAYKEY-0123456789"
DB_URL = "postgres://dbuser:hunter2pass@db.internal:5432/prod"
#: What must appear nowhere: in any response body or header, in any log line.
SECRETS = [
    CLIENT_KEY,
    "QUERYTOKEN",
    UPSTREAM_KEY,
    "GATEWAYKEY",
    "hunter2pass",
    "dbuser",
    "db.internal",
    "s3cr3tpw",
    "internal.example",
    "Traceback",
    "site-packages",
]
LEAKY = (
    f"Incorrect API key provided: Bearer {UPSTREAM_KEY}. Also tried {DB_URL} and "
    "https://admin:s3cr3tpw@internal.example/v1 (api_key=GATEWAYKEY)"
)
#: A context-length explanation: shown to the client, with its secrets removed.
CONTEXT = (
    "This model's maximum context length is 8192 tokens, you asked for 9000 "
    f"(key {UPSTREAM_KEY}, see https://admin:s3cr3tpw@internal.example/docs)."
)
TRACE = (
    "Traceback (most recent call last):\n"
    '  File "/srv/app/site-packages/server.py", line 12, in handle\n'
    f"    connect('{DB_URL}')\nRuntimeError: cannot connect to {DB_URL}\n"
)
#: The modes of the upstream (the last user text): (status, body kind).
MODES = ["STATUS:401", "STATUS:403", "STATUS:500", "STATUS:400", "TRACE", "FRAME"]


def _openai_error(mode: str) -> tuple[int, bytes]:
    if mode == "TRACE":
        return 500, TRACE.encode()
    status = int(mode.split(":")[1])
    message = CONTEXT if status == 400 else LEAKY
    code = "context_length_exceeded" if status == 400 else UPSTREAM_KEY
    body = {"error": {"message": message, "type": "invalid_request_error", "code": code}}
    return status, orjson.dumps(body)


def _anthropic_error(mode: str) -> tuple[int, bytes]:
    if mode == "TRACE":
        return 500, TRACE.encode()
    status = int(mode.split(":")[1])
    kind = {401: "authentication_error", 403: "permission_error", 400: "invalid_request_error"}
    message = ("prompt is too long: " + CONTEXT) if status == 400 else LEAKY
    body = {"type": "error", "error": {"type": kind.get(status, "api_error"), "message": message}}
    return status, orjson.dumps(body)


def _text(body: dict) -> str:
    if "input" in body and "messages" not in body:  # embeddings
        value = body["input"]
        return value if isinstance(value, str) else str(value[0])
    content = body["messages"][-1]["content"]
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content)


async def _openai(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    mode = _text(body)
    if mode != "FRAME":
        status, data = _openai_error(mode)
        return web.Response(status=status, body=data, content_type="application/json")
    resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await resp.prepare(request)
    chunk = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": "partial "}}],
    }
    await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
    err = {"error": {"message": LEAKY, "type": "server_error", "code": None}}
    await resp.write(b"data: " + orjson.dumps(err) + b"\n\n")
    await resp.write_eof()
    return resp


async def _anthropic(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    mode = _text(body)
    if mode != "FRAME" or not body.get("stream"):
        status, data = _anthropic_error("STATUS:500" if mode == "FRAME" else mode)
        return web.Response(status=status, body=data, content_type="application/json")
    resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await resp.prepare(request)
    start = {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "m",
            "content": [],
            "stop_reason": None,
            "usage": {"input_tokens": 1, "output_tokens": 0},
        },
    }
    err = {"type": "error", "error": {"type": "api_error", "message": LEAKY}}
    await resp.write(b"event: message_start\ndata: " + orjson.dumps(start) + b"\n\n")
    await resp.write(b"event: error\ndata: " + orjson.dumps(err) + b"\n\n")
    await resp.write_eof()
    return resp


def _config(upstream: str) -> str:
    return f"""
[server]
access_log = true

[auth]
keys = ["{CLIENT_KEY}"]

[backends.oa]
kind = "openai"
base_url = "{upstream}/v1"
api_key = "{UPSTREAM_KEY}"

[backends.an]
kind = "anthropic"
base_url = "{upstream}"
api_key = "{UPSTREAM_KEY}"

[models.gpt]
backend = "oa"

[models.claude]
backend = "an"

[agents.helper]
model = "gpt"
"""


def _requests(mode: str) -> list[tuple[str, dict]]:
    """Every path an upstream failure takes to a client, for one mode."""
    user = [{"role": "user", "content": mode}]
    calls: list[tuple[str, dict]] = []
    for model in ("gpt", "claude"):  # relayed and translated for each protocol
        for stream in (False, True):
            calls += [
                ("/v1/chat/completions", {"model": model, "messages": user, "stream": stream}),
                (
                    "/v1/messages",
                    {"model": model, "max_tokens": 8, "messages": user, "stream": stream},
                ),
                ("/v1/responses", {"model": model, "input": mode, "stream": stream}),
            ]
    calls += [
        ("/v1/embeddings", {"model": "gpt", "input": mode}),
        ("/v1/messages/count_tokens", {"model": "claude", "messages": user}),
        (
            "/agui/agents/helper/runs",
            {
                "threadId": "t",
                "runId": "r",
                "messages": [{"id": "m", "role": "user", "content": mode}],
            },
        ),
        (
            "/a2a/helper",
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "SendMessage",
                "params": {
                    "message": {"messageId": "m1", "role": "ROLE_USER", "parts": [{"text": mode}]}
                },
            },
        ),
    ]
    return calls


def _assert_clean(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked in {where}: {text[:2000]}"


@pytest.mark.timeout(120)
async def test_no_secret_reaches_a_client_or_a_log(aiohttp_server, tmp_path):
    app = web.Application()
    app.router.add_post("/v1/chat/completions", _openai)
    app.router.add_post("/v1/embeddings", _openai)
    app.router.add_post("/v1/messages", _anthropic)
    app.router.add_post("/v1/messages/count_tokens", _anthropic)
    upstream = await aiohttp_server(app)
    base = str(upstream.make_url("")).rstrip("/")
    headers = {"authorization": f"Bearer {CLIENT_KEY}", "A2A-Version": "1.0"}
    shown = []
    with gateway_process(
        "serve", "--log-level", "debug", config=_config(base), directory=tmp_path
    ) as gw:
        async with aiohttp.ClientSession() as http:
            for mode in MODES:
                for path, body in _requests(mode):
                    async with http.post(gw.url + path, json=body, headers=headers) as resp:
                        data = (await resp.read()).decode()
                        where = f"{mode} {path} {body.get('model')} stream={body.get('stream')}"
                        _assert_clean(data + str(resp.headers), where)
                        assert resp.status < 500 or resp.status in (502, 503), where
                        if "credentials" in data:
                            shown.append(mode)
                        if "maximum context length is 8192 tokens" in data:
                            shown.append("context")
            # A key sent the documented way for browsers, and on routes that take none.
            for path in ("/agui/ws", "/health", "/v1/models"):
                async with http.get(f"{gw.url}{path}?token={CLIENT_KEY}&x=1") as resp:
                    await resp.read()
        gw.wait_log("GET /v1/models")  # the access log's line for the last request
    _assert_clean(gw.output, "the log")
    # The gateway's own words said what it could: refused credentials, context-length limits.
    assert {"STATUS:401", "STATUS:403", "context"} <= set(shown)
