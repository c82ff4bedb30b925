"""The gateway serving HTTPS itself (``[server] tls_cert``), with client certificates checked
(``tls_client_ca``), one worker and two, to the official SDKs; a renewed certificate served
after a reload; files that cannot be used refused at startup."""

from __future__ import annotations

import signal
import socket
import ssl
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
from cryptography.hazmat.primitives import serialization
from support import pki as certificates
from support.configs import echo_config
from support.processes import gateway_process
from support.waiting import wait_until

from gateway import load
from gateway.errors import ConfigError

MESSAGES = [{"role": "user", "content": "hello there"}]


def _trusting(*cas: Path, client: Path | None = None) -> ssl.SSLContext:
    tls = ssl.create_default_context()
    for ca in cas:
        tls.load_verify_locations(ca)
    if client is not None:
        tls.load_cert_chain(client)
    return tls


def _served_certificate(port: int, tls: ssl.SSLContext) -> bytes:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        tls.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
    ):
        served = sock.getpeercert(binary_form=True)
    assert served is not None
    return served


def _certificate(pem: Path) -> bytes:
    """The certificate of ``pem`` (a certificate with its key), as a TLS handshake sends it."""
    return ssl.PEM_cert_to_DER_cert(_certificate_pem(pem).decode())


@pytest.mark.parametrize("workers", ["1", "2"])
def test_both_sdks_speak_https_to_the_gateway(tmp_path, pki, workers):
    config = echo_config("tls: ", tls_cert=str(pki["server"]))
    tls = _trusting(pki["ca"])
    with gateway_process(
        "serve", "--workers", workers, config=config, directory=tmp_path, tls=tls
    ) as gw:
        assert gw.url.startswith("https://")
        with openai.OpenAI(
            base_url=gw.url + "/v1",
            api_key="unused",
            max_retries=0,
            http_client=openai.DefaultHttpxClient(verify=tls),
        ) as api:
            answer = api.chat.completions.create(model="echo", messages=MESSAGES)
            assert answer.choices[0].message.content == "tls: hello there"
            chunks = api.chat.completions.create(model="echo", messages=MESSAGES, stream=True)
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            assert text == "tls: hello there"
        with (
            anthropic.Anthropic(
                base_url=gw.url,
                api_key="unused",
                max_retries=0,
                http_client=anthropic.DefaultHttpxClient(verify=tls),
            ) as claude,
            claude.messages.stream(model="echo", max_tokens=50, messages=MESSAGES) as events,
        ):
            assert events.get_final_text() == "tls: hello there"
        # Plain HTTP on the HTTPS port gets no answer of the gateway's.
        with pytest.raises(httpx.HTTPError):
            httpx.get(gw.url.replace("https://", "http://") + "/health", timeout=5)
        gw.wait_log("hookgate listening on https://")


def test_client_certificates_are_checked_when_asked_for(tmp_path, pki):
    stranger = certificates.issue(tmp_path / "stranger", "another CA")  # and its client
    (tmp_path / "gw").mkdir()
    config = echo_config("", tls_cert=str(pki["server"]), tls_client_ca=str(pki["ca"]))
    with gateway_process(config=config, directory=tmp_path / "gw", tls=_trusting(pki["ca"])) as gw:
        for client in (pki["client"], None):  # a certificate of the CA's, or none
            with httpx.Client(verify=_trusting(pki["ca"], client=client)) as http:
                assert http.get(gw.url + "/health").status_code == 200
        with (
            httpx.Client(verify=_trusting(pki["ca"], client=stranger["client"])) as http,
            pytest.raises((httpx.ConnectError, httpx.RemoteProtocolError)),
        ):
            # Refused in the handshake (TLS 1.3: the client hears of it as it reads).
            http.get(gw.url + "/health")


def test_a_reload_serves_a_renewed_certificate(tmp_path, pki):
    renewed = certificates.issue(tmp_path / "renewed", "renewing CA")
    served = tmp_path / "served.pem"
    served.write_bytes(pki["server"].read_bytes())
    (tmp_path / "gw").mkdir()
    tls = _trusting(pki["ca"], renewed["ca"])
    with gateway_process(
        config=echo_config("", tls_cert=str(served)), directory=tmp_path / "gw", tls=tls
    ) as gw:
        assert _served_certificate(gw.port, tls) == _certificate(pki["server"])
        served.write_bytes(renewed["server"].read_bytes())
        gw.signal(signal.SIGHUP)
        gw.wait_log("configuration reloaded")
        wait_until(
            lambda: _served_certificate(gw.port, tls) == _certificate(renewed["server"]),
            10,
            "the renewed certificate",
        )


def test_tls_files_that_cannot_be_used_are_refused_at_startup(tmp_path, pki):
    key = certificates.ec.generate_private_key(certificates.ec.SECP256R1())
    locked = tmp_path / "locked.pem"
    locked.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    cert_only = tmp_path / "cert.pem"
    cert_only.write_bytes(_certificate_pem(pki["server"]))
    cases = {
        "tls_cert: [Errno 2]": {"tls_cert": str(tmp_path / "missing.pem")},
        "tls_cert: the private key is encrypted": {
            "tls_cert": str(cert_only),
            "tls_key": str(locked),
        },
        "tls_cert: ": {"tls_cert": str(cert_only)},  # no key
        "tls_client_ca: ": {"tls_cert": str(pki["server"]), "tls_client_ca": str(cert_only) + "x"},
        "tls_key and tls_client_ca need tls_cert": {"tls_client_ca": str(pki["ca"])},
    }
    for message, server in cases.items():
        with pytest.raises(ConfigError) as info:
            load(data={"server": server}, env={})
        (line,) = info.value.errors
        assert line.startswith("server: " + message), line


def _certificate_pem(pem: Path) -> bytes:
    return pem.read_bytes().split(b"-----BEGIN PRIVATE KEY-----")[0]
