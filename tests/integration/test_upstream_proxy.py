"""Upstreams reached through the proxy the environment names (``HTTPS_PROXY``, ``HTTP_PROXY``,
``NO_PROXY``), as behind a corporate proxy: a real gateway process, a forward proxy with
credentials (``support/proxy.py``) and the fault upstream over TLS and plain HTTP, called with
the official OpenAI SDK, streamed and not."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from support import pki as certificates
from support.faults import ANSWER, FaultUpstream
from support.processes import gateway_process
from support.proxy import ForwardProxy

from gateway import create_app
from gateway.errors import ConfigError

PASSWORD = "proxy-pw-31337"
MESSAGES = [{"role": "user", "content": "Say the sentence."}]


@pytest.fixture(scope="module")
def tls_up(pki: dict[str, Path]) -> Iterator[FaultUpstream]:
    with FaultUpstream(certificates.serving(pki), pki["ca"]).running() as server:
        yield server


@pytest.fixture(scope="module")
def plain_up() -> Iterator[FaultUpstream]:
    with FaultUpstream().running() as server:
        yield server


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    with ForwardProxy("ada", PASSWORD).running() as server:
        yield server


def _config(up: FaultUpstream, name: str) -> str:
    return f"""
[server]
log_level = "info"
[backends.up]
kind = "openai"
base_url = "{up.openai_url(name)}"
api_key = "upstream-key"
first_byte_timeout = "5s"
{up.trust}
[models.m]
backend = "up"
"""


def _ask(url: str, stream: bool) -> str:
    with openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=30) as api:
        if not stream:
            return (
                api.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content
                or ""
            )
        chunks = api.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


@pytest.mark.parametrize("over", ["https", "http"])
def test_an_upstream_is_reached_through_the_environments_proxy(
    tls_up, plain_up, proxy, tmp_path, over
):
    up = tls_up if over == "https" else plain_up
    env = {f"{over.upper()}_PROXY": proxy.url(f"ada:{PASSWORD}"), "NO_PROXY": "example.invalid"}
    with gateway_process(config=_config(up, "proxied"), directory=tmp_path, env=env) as gw:
        assert _ask(gw.url, stream=False) == ANSWER
        assert _ask(gw.url, stream=True) == ANSWER
    if over == "https":  # a tunnel, the TLS inside it the gateway's with the upstream
        assert set(proxy.asked) == {f"CONNECT 127.0.0.1:{up.port}"}
    else:
        assert proxy.asked[0] == f"POST {up.openai_url('proxied')}/chat/completions"
    assert proxy.refused == 0
    assert len(up.seen("proxied")) == 2
    assert f"reaches {up.openai_url('proxied')} through the proxy {proxy.url()}" in gw.output
    assert PASSWORD not in gw.output


def test_no_proxy_exempts_an_upstream(tls_up, plain_up, proxy, tmp_path):
    for up in (tls_up, plain_up):
        env = {
            "HTTPS_PROXY": proxy.url(f"ada:{PASSWORD}"),
            "HTTP_PROXY": proxy.url(f"ada:{PASSWORD}"),
            "NO_PROXY": "localhost,127.0.0.1",
        }
        with gateway_process(config=_config(up, "direct"), directory=tmp_path, env=env) as gw:
            assert _ask(gw.url, stream=True) == ANSWER
    assert proxy.asked == []


@pytest.mark.parametrize("stream", [False, True])
def test_a_proxy_that_refuses_is_a_502_that_names_no_secret(tls_up, proxy, tmp_path, stream):
    env = {"HTTPS_PROXY": proxy.url("ada:wrong-password")}
    with gateway_process(config=_config(tls_up, "refused"), directory=tmp_path, env=env) as gw:
        with pytest.raises(openai.APIStatusError) as info:
            _ask(gw.url, stream=stream)
        assert info.value.status_code == 502
        assert "wrong-password" not in str(info.value.body)
    assert proxy.refused == 1 and tls_up.seen("refused") == []
    assert "wrong-password" not in gw.output


def test_a_proxy_the_client_cannot_speak_to_is_a_configuration_error(tls_up, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "socks5://ada:secret@127.0.0.1:1080")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    config = {
        "backends": {"up": {"kind": "openai", "base_url": tls_up.openai_url("x")}},
        "models": {"m": {"backend": "up"}},
    }
    with pytest.raises(ConfigError) as info:
        create_app(config, env={})
    (line,) = info.value.errors
    assert line.startswith("backends.up: ") and "socks5://127.0.0.1:1080" in line
    assert "secret" not in line
