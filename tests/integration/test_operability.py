"""What an operator reads: one warning per failed upstream call, the access log (text and
JSON), malformed HTTP logged once a minute per peer, ``/metrics`` added up across workers, and
a clean exit when the reader of ``hookgate plugins`` goes away."""

from __future__ import annotations

import json
import logging
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import openai
import pytest
from aiohttp import web
from support.configs import echo_config, upstream_config
from support.processes import chat, free_port, gateway_process, hookgate_env
from support.waiting import wait_until

UPSTREAM_KEY = "sk-upstream-" + "k" * 24


async def test_one_warning_per_failed_upstream_call_without_secrets(
    make_gateway, aiohttp_server, sdk, caplog
):
    async def refuse(request: web.Request) -> web.Response:
        # what OpenAI answers a wrong key: the key itself quoted back
        message = f"Incorrect API key provided: {request.headers['authorization']}."
        body = {"error": {"message": message, "code": "invalid_api_key"}}
        return web.json_response(body, status=401)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", refuse)
    rejecting = await aiohttp_server(app)
    config = upstream_config(rejecting, api_key=UPSTREAM_KEY)
    config["backends"]["gone"] = {
        "kind": "openai",
        "base_url": f"http://127.0.0.1:{free_port()}/v1",
        "api_key": UPSTREAM_KEY,
    }
    config["models"]["gone-model"] = {"backend": "gone"}
    client = await make_gateway(config)
    api = sdk(client)
    caplog.set_level(logging.DEBUG)
    ids = []
    for model, stream in [("gpt-test", False), ("gpt-test", True), ("gone-model", False)]:
        with pytest.raises(openai.APIStatusError) as info:
            answer = await api.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "hi"}], stream=stream
            )
            if stream:
                async for _ in answer:
                    pass
        ids.append(info.value.response.headers["x-request-id"])
    warnings = [r.getMessage() for r in caplog.records if r.name == "gateway.backends.upstream"]
    assert len(warnings) == 3, warnings
    for line, request_id in zip(warnings, ids, strict=True):
        assert f"request {request_id}" in line
    assert "backend up: HTTP 401: the upstream refused the gateway's credentials" in warnings[0]
    assert "backend gone:" in warnings[2] and "unreachable" in warnings[2]
    assert not [r for r in caplog.records if UPSTREAM_KEY in r.getMessage()]


def _keys_config(prefix: str, **server: object) -> str:
    return echo_config(prefix, access_log=True, **server) + (
        '[auth]\nkeys = [{ name = "ci", key = "sk-ci-secret" }]\n'
    )


def _post(url: str, key: str | None, query: str = "") -> int:
    body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    req = urllib.request.Request(
        url + "/v1/chat/completions" + query, data=json.dumps(body).encode(), headers=headers
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


def test_access_log_text_then_json_after_a_reload(tmp_path: Path):
    with gateway_process(config=_keys_config("a: "), directory=tmp_path) as gw:
        assert _post(gw.url, "sk-ci-secret", "?token=sk-ci-secret") == 200
        assert _post(gw.url, "sk-wrong") == 401
        gw.wait_log('"POST /v1/chat/completions" 401')
        [ok] = [line for line in gw.log if '"POST /v1/chat/completions" 200' in line]
        assert re.search(
            r'127\.0\.0\.1 "POST /v1/chat/completions" 200 \d+B [\d.]+ms id=\w+ key=ci '
            r"model=echo backend=echo:echo$",
            ok,
        ), ok
        [refused] = [line for line in gw.log if '"POST /v1/chat/completions" 401' in line]
        assert refused.endswith("key=- model=- backend=-"), refused

        gw.config_file.write_text(_keys_config("b: ", access_log_format="json"))
        gw.signal(signal.SIGHUP)
        gw.wait_log("configuration reloaded")
        assert _post(gw.url, "sk-ci-secret") == 200
        gw.wait_log('"status":200')
        [line] = [line for line in gw.log if '"status":200' in line]
        entry = json.loads(line[line.index("{") :])
        assert entry["key"] == "ci" and entry["model"] == "echo" and entry["status"] == 200
        assert entry["path"] == "/v1/chat/completions" and entry["bytes"] > 0
        assert set(entry) == {
            "peer", "method", "path", "status", "bytes", "ms", "id", "key", "model", "backend"
        }  # fmt: skip
        assert not [line for line in gw.log if "sk-ci-secret" in line]
        assert gw.stop() == 0


def test_malformed_requests_are_one_line_a_minute_per_peer(tmp_path: Path):
    with gateway_process(config=echo_config("a: "), directory=tmp_path) as gw:
        for _ in range(5):
            with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as conn:
                conn.sendall(
                    b"GET /health?token=sk-leak HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n"
                )
                assert b" 400 Bad Request" in conn.recv(100).split(b"\r\n")[0]
        assert chat(gw.url, "hi") == "a: hi"  # after the five answers, and served
        assert gw.stop() == 0
    lines = [line for line in gw.log if "malformed HTTP request" in line]
    assert len(lines) == 1, lines
    assert "WARNING" in lines[0] and "from 127.0.0.1" in lines[0]
    assert not [line for line in gw.log if "Traceback" in line or "sk-leak" in line]


def _requests_total(text: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("hookgate_requests_total{") and 'route="chat_completions"' in line
    )


def test_metrics_add_up_every_worker(tmp_path: Path):
    with gateway_process(
        "serve", "--workers", "2", config=echo_config("a: "), directory=tmp_path
    ) as gw:

        def scrape() -> str:
            with urllib.request.urlopen(gw.url + "/metrics", timeout=10) as resp:
                return resp.read().decode()

        # /health answers once one worker listens; the other may still be starting.
        wait_until(
            lambda: "hookgate_metrics_workers 2.0" in scrape(), what="both workers in /metrics"
        )
        for i in range(40):  # each on a connection of its own: the kernel spreads them
            assert chat(gw.url, f"r{i}") == f"a: r{i}"
        for _ in range(6):
            text = scrape()
            assert "hookgate_metrics_workers 2.0" in text
            assert _requests_total(text) == 40
        assert gw.stop() == 0


def test_plugins_to_a_reader_that_goes_away_exits_cleanly():
    with subprocess.Popen(
        [sys.executable, "-m", "gateway", "plugins"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=hookgate_env(),
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # as `| head` does once it has its lines
        err = proc.stderr.read().decode()
        assert proc.wait(30) == 0
    assert err == ""


async def test_an_upstream_cut_mid_stream_is_one_warning(make_gateway, upstream, sdk, caplog):
    client = await make_gateway(upstream_config(upstream))
    api = sdk(client)
    caplog.set_level(logging.WARNING)
    stream = await api.chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "BREAK"}], stream=True
    )
    request_id = stream.response.headers["x-request-id"]
    with pytest.raises(openai.APIError):
        async for _ in stream:
            pass
    [line] = [r.getMessage() for r in caplog.records if r.name == "gateway.backends.upstream"]
    assert line.startswith(f"upstream call failed: request {request_id}, backend up: ")
    assert "closed the connection before the answer was complete" in line
