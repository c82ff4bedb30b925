"""What an upstream request carries, over plain HTTP (the lean client) and over TLS (aiohttp's
client, what hosted APIs are reached through): one header of each name, a plugin's replacing the
backend's, the request id and trace context the gateway's own; an https:// upstream checked
against the certificate authorities of ``ca_file``."""

from __future__ import annotations

import io
import ssl
from typing import Any

import anthropic
import openai
import pytest
from fakes import anthropic_upstream, openai_upstream
from fakes.outcomes import filters_plugin
from support import pki as certificates
from support.configs import claude_config, upstream_config

from gateway import ChatRequest, Exchange, Filter, create_app
from gateway.errors import ConfigError
from gateway.exchange import traceparent

MESSAGES = [{"role": "user", "content": "hello"}]
TRACE_ID, SPAN_ID = 0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331


class Tenant(Filter):
    """Sends each request with the caller's own upstream key (a plugin's upstream headers),
    and names a few headers that are the gateway's to set."""

    def __init__(self, traced: bool) -> None:
        self.traced = traced

    async def on_request(self, request: ChatRequest, exchange: Exchange) -> None:
        exchange.upstream_headers = {
            "Authorization": "Bearer tenant-key",  # the backend sends its api_key as this
            "X-Tenant": "t1",
            "X-Request-Id": "forged",
            "Content-Length": "1",
            "TraceParent": traceparent(1, 2, 1),
        }
        if self.traced:  # what a tracer does
            exchange.trace_context = (TRACE_ID, SPAN_ID, 1, "k=v")


async def _upstream(aiohttp_server: Any, app: Any, tls: ssl.SSLContext | None) -> str:
    server = await aiohttp_server(app, ssl=tls)
    return str(server.make_url("")).rstrip("/")


@pytest.mark.parametrize("over", ["http", "https"])
@pytest.mark.parametrize("traced", [False, True])
@pytest.mark.parametrize("stream", [False, True])
async def test_a_plugins_headers_replace_the_backends(
    make_gateway, aiohttp_server, sdk, pki, over, traced, stream
):
    app = openai_upstream.make_app()
    base = await _upstream(
        aiohttp_server, app, certificates.serving(pki) if over == "https" else None
    )
    assert base.startswith(over + "://")
    extra = {"ca_file": str(pki["ca"])} if over == "https" else {}
    config = upstream_config(base + "/v1", headers={"x-team": "blue"}, **extra)
    client = await make_gateway(config, plugins=[filters_plugin(tenant=Tenant(traced))])
    api = sdk(client)
    answered_id = None
    if stream:
        chunks = await api.chat.completions.create(model="gpt-test", messages=MESSAGES, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])
    else:
        answer = await api.chat.completions.with_raw_response.create(
            model="gpt-test", messages=MESSAGES
        )
        text = answer.parse().choices[0].message.content
        answered_id = answer.headers["x-request-id"]
    assert text == "upstream says: hello"

    (seen,) = app[openai_upstream.HEADERS]
    assert seen.getall("authorization") == ["Bearer tenant-key"]
    assert seen.getall("x-tenant") == ["t1"]
    assert seen.getall("x-team") == ["blue"]  # the backend's other headers stay
    (request_id,) = seen.getall("x-request-id")
    assert request_id != "forged"
    if answered_id is not None:
        assert request_id == answered_id
    if traced:
        assert seen.getall("traceparent") == [traceparent(TRACE_ID, SPAN_ID, 1)]
        assert seen.getall("tracestate") == ["k=v"]
    else:  # without a trace context of its own, the gateway sends the plugin's
        assert seen.getall("traceparent") == [traceparent(1, 2, 1)]
    assert "1" not in seen.getall("content-length", [])


async def test_a_clients_beta_is_sent_once_beside_the_backends(
    make_gateway, claude_upstream, claude_sdk
):
    config = claude_config(claude_upstream, headers={"anthropic-beta": "configured-2025-01-01"})
    client = await make_gateway(config)
    answer = await claude_sdk(client).messages.create(
        model="claude-test",
        max_tokens=50,
        messages=MESSAGES,
        extra_headers={"anthropic-beta": "client-2025-02-02"},
    )
    assert answer.content[0].text
    (seen,) = claude_upstream.app[anthropic_upstream.HEADERS]
    assert seen.getall("anthropic-beta") == ["configured-2025-01-01,client-2025-02-02"]
    assert seen.getall("x-api-key") == ["claude-secret"]


async def test_an_https_upstream_answers_both_sdks_through_its_ca(
    make_gateway, aiohttp_server, sdk, claude_sdk, pki
):
    tls = certificates.serving(pki)
    openai_base = await _upstream(aiohttp_server, openai_upstream.make_app(), tls)
    claude_app = anthropic_upstream.make_app()
    claude_base = await _upstream(aiohttp_server, claude_app, tls)
    config = upstream_config(openai_base + "/v1", ca_file=str(pki["ca"]))
    config["backends"].update(claude_config(claude_base, ca_file=str(pki["ca"]))["backends"])
    config["models"].update(claude_config(claude_base)["models"])
    client = await make_gateway(config)

    api = sdk(client)
    out = await api.chat.completions.create(model="gpt-test", messages=MESSAGES)
    assert out.choices[0].message.content == "upstream says: hello"
    vectors = await api.embeddings.create(model="gpt-test", input=["a", "b"])
    assert len(vectors.data) == 2 and vectors.data[0].embedding
    # The endpoints relayed as they come (aiohttp's client of their own).
    audio = io.BytesIO(b"\x00\x01" * 5_000)
    audio.name = "hello.wav"
    heard = await api.audio.transcriptions.create(model="gpt-test", file=audio)
    assert heard.text == "heard 10000 bytes with up-model"
    # Translated both ways, streamed, over TLS.
    async with claude_sdk(client).messages.stream(
        model="gpt-test", max_tokens=50, messages=MESSAGES
    ) as events:
        message = await events.get_final_message()
    assert message.content[0].text == "upstream says: hello"
    chunks = await sdk(client).chat.completions.create(
        model="claude-test", messages=MESSAGES, stream=True
    )
    parts = [c.choices[0].delta.content or "" async for c in chunks if c.choices]
    assert "".join(parts)
    assert claude_app[anthropic_upstream.HEADERS][-1].getall("x-api-key") == ["claude-secret"]


async def test_an_untrusted_certificate_is_a_failure_that_names_no_secret(
    make_gateway, aiohttp_server, sdk, claude_sdk, pki
):
    base = await _upstream(aiohttp_server, openai_upstream.make_app(), certificates.serving(pki))
    client = await make_gateway(upstream_config(base + "/v1"))  # the system's CAs only
    for stream in (False, True):
        with pytest.raises(openai.APIStatusError) as info:
            out = await sdk(client).chat.completions.create(
                model="gpt-test", messages=MESSAGES, stream=stream
            )
            if stream:
                async for _ in out:
                    pass
        assert info.value.status_code == 502
        assert "upstream-secret" not in str(info.value.body)
    with pytest.raises(anthropic.APIStatusError) as failed:
        await claude_sdk(client).messages.create(model="gpt-test", max_tokens=9, messages=MESSAGES)
    assert failed.value.status_code == 502
    assert failed.value.body["type"] == "error"


def test_a_ca_file_that_cannot_be_used_is_a_configuration_error(tmp_path, pki):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    cases = {
        "https://127.0.0.1:1/v1": tmp_path / "missing.pem",
        "https://127.0.0.1:2/v1": junk,
        "http://127.0.0.1:3/v1": pki["ca"],
    }
    for base, ca_file in cases.items():
        with pytest.raises(ConfigError) as info:
            create_app(upstream_config(base, ca_file=str(ca_file)), env={})
        (line,) = info.value.errors
        assert line.startswith("backends.up: ")
        assert "ca_file" in line
