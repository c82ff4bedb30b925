"""Authentication: API keys (both header styles, per-key models, constant-time digests, an open
gateway's warning), and plugin authenticators that decide by a cookie or a client certificate."""

from __future__ import annotations

import logging
import ssl

import openai
import pytest

from gateway import GATEWAY, Authenticator, Principal, create_app, hookimpl
from gateway.errors import Forbidden

KEYS = {
    "auth": {"keys": ["sk-plain", {"name": "ci", "key": "sk-ci", "models": ["echo"]}]},
    "backends": {"echo": {"kind": "echo"}, "other": {"kind": "echo", "prefix": "other: "}},
    "models": {"echo": {"backend": "echo"}, "other": {"backend": "other"}},
}
MESSAGES = [{"role": "user", "content": "hi"}]


async def test_missing_and_wrong_keys_are_401(make_gateway, sdk):
    client = await make_gateway(KEYS)
    resp = await client.post("/v1/chat/completions", json={"model": "echo", "messages": MESSAGES})
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "missing_api_key"
    with pytest.raises(openai.AuthenticationError) as info:
        await sdk(client, api_key="sk-wrong").chat.completions.create(
            model="echo", messages=MESSAGES
        )
    assert info.value.code == "invalid_api_key"
    assert "sk-wrong" not in info.value.message


async def test_bearer_and_x_api_key_both_work(make_gateway, sdk):
    client = await make_gateway(KEYS)
    done = await sdk(client, api_key="sk-plain").chat.completions.create(
        model="other", messages=MESSAGES
    )
    assert done.choices[0].message.content == "other: hi"
    resp = await client.post(
        "/v1/chat/completions",
        json={"model": "echo", "messages": MESSAGES},
        headers={"x-api-key": "sk-plain"},
    )
    assert resp.status == 200


async def test_key_limited_to_models(make_gateway, sdk):
    client = await make_gateway(KEYS)
    api = sdk(client, api_key="sk-ci")
    assert [m.id async for m in api.models.list()] == ["echo"]
    assert (await api.chat.completions.create(model="echo", messages=MESSAGES)).choices[
        0
    ].message.content == "hi"
    with pytest.raises(openai.PermissionDeniedError) as info:
        await api.chat.completions.create(model="other", messages=MESSAGES)
    assert info.value.code == "model_not_allowed"
    full = sdk(client, api_key="sk-plain")
    assert sorted([m.id async for m in full.models.list()]) == ["echo", "other"]


async def test_health_needs_no_key_and_metrics_is_configurable(make_gateway):
    client = await make_gateway(KEYS)
    assert (await client.get("/health")).status == 200
    assert (await client.get("/metrics")).status == 200
    locked = await make_gateway({**KEYS, "metrics": {"require_key": True}})
    assert (await locked.get("/metrics")).status == 401
    assert (
        await locked.get("/metrics", headers={"authorization": "Bearer sk-plain"})
    ).status == 200


async def test_keys_never_logged(make_gateway, sdk, caplog):
    caplog.set_level(logging.DEBUG)
    client = await make_gateway(KEYS)
    await sdk(client, api_key="sk-plain").chat.completions.create(model="echo", messages=MESSAGES)
    with pytest.raises(openai.AuthenticationError):
        await sdk(client, api_key="sk-guess").chat.completions.create(
            model="echo", messages=MESSAGES
        )
    assert (
        "sk-plain" not in caplog.text
        and "sk-ci" not in caplog.text
        and "sk-guess" not in caplog.text
    )


async def test_open_gateway_warns_loudly(make_gateway, caplog):
    await make_gateway()
    assert any("OPEN" in r.message and r.levelno == logging.WARNING for r in caplog.records)


async def test_api_key_from_environment(make_gateway, sdk):
    client = await make_gateway({}, env={"HOOKGATE_API_KEY": "sk-env"})
    with pytest.raises(openai.AuthenticationError):
        await sdk(client, api_key="nope").chat.completions.create(model="echo", messages=MESSAGES)
    out = await sdk(client, api_key="sk-env").chat.completions.create(
        model="echo", messages=MESSAGES
    )
    assert out.choices[0].message.content == "hi"


# --- authenticators decide: plugins may recognise callers by anything in the request ---------


class CookieAuth(Authenticator):
    """Recognises a browser session cookie; a revoked session is refused outright."""

    name = "cookie"

    def __init__(self, sessions: dict[str, str]) -> None:
        self.sessions = sessions
        self.asked: list[str | None] = []

    async def authenticate(self, request, credential):
        self.asked.append(credential)
        session = request.cookies.get("hg_session")
        if session is None:
            return None
        if session == "revoked":
            raise Forbidden("This session was revoked.", code="session_revoked")
        user = self.sessions.get(session)
        if user is None:
            return None
        return Principal(id=f"user-{user}", name=user, models=frozenset({"echo"}))


def auth_plugin(authenticator: Authenticator) -> tuple[str, object]:
    class Plugin:
        @hookimpl
        def gateway_register_auth(self, register):
            register(authenticator.name, lambda gateway: authenticator)

    return (f"auth.{authenticator.name}", Plugin())


async def test_a_plugin_authenticator_alone_enables_auth(make_gateway, sdk):
    cookie = CookieAuth({"s-1": "ada"})
    client = await make_gateway(
        {k: v for k, v in KEYS.items() if k != "auth"}, plugins=[auth_plugin(cookie)]
    )
    assert client.server.app[GATEWAY].auth_enabled
    resp = await client.post("/v1/chat/completions", json={"model": "echo", "messages": MESSAGES})
    assert resp.status == 401 and (await resp.json())["error"]["code"] == "missing_api_key"
    assert cookie.asked == [None]  # asked, with no credential, before the 401

    browser = sdk(client, default_headers={"cookie": "hg_session=s-1"})
    out = await browser.chat.completions.create(model="echo", messages=MESSAGES)
    assert out.choices[0].message.content == "hi"
    assert [m.id async for m in browser.models.list()] == ["echo"]  # ada's principal
    with pytest.raises(openai.PermissionDeniedError) as info:
        await browser.chat.completions.create(model="other", messages=MESSAGES)
    assert info.value.code == "model_not_allowed"

    with pytest.raises(openai.AuthenticationError) as info:
        await sdk(client, default_headers={"cookie": "hg_session=unknown"}).models.list()
    assert info.value.code == "invalid_api_key"  # the SDK presented its (unknown) key
    with pytest.raises(openai.PermissionDeniedError) as info:
        await sdk(client, default_headers={"cookie": "hg_session=revoked"}).models.list()
    assert info.value.code == "session_revoked"


async def test_keys_and_a_plugin_authenticator_side_by_side(make_gateway, sdk):
    cookie = CookieAuth({"s-1": "ada"})
    client = await make_gateway(KEYS, plugins=[auth_plugin(cookie)])
    by_key = await sdk(client, api_key="sk-plain").chat.completions.create(
        model="other", messages=MESSAGES
    )
    assert by_key.choices[0].message.content == "other: hi"
    assert cookie.asked == []  # the keys (registered first) answered first
    by_cookie = sdk(client, api_key="sk-unknown", default_headers={"cookie": "hg_session=s-1"})
    assert (await by_cookie.chat.completions.create(model="echo", messages=MESSAGES)).choices[
        0
    ].message.content == "hi"
    assert cookie.asked == ["sk-unknown"]  # the keys declined it, then the cookie decided
    # A valid key wins before the cookie is even looked at.
    both = sdk(client, api_key="sk-plain", default_headers={"cookie": "hg_session=revoked"})
    assert [m.id async for m in both.models.list()] == ["echo", "other"]

    resp = await client.get("/v1/models")
    assert resp.status == 401 and (await resp.json())["error"]["code"] == "missing_api_key"
    resp = await client.get("/v1/models", headers={"x-api-key": "sk-wrong"})
    assert resp.status == 401 and (await resp.json())["error"] == {
        "message": "Invalid API key.",
        "type": "authentication_error",
        "param": None,
        "code": "invalid_api_key",
    }


# --- mutual TLS: the caller is the client certificate the TLS layer verified ------------------


class ClientCertAuth(Authenticator):
    """The caller is the common name of a verified client certificate; no certificate, no say."""

    name = "mtls"

    def __init__(self) -> None:
        self.asked: list[tuple[str | None, str]] = []

    async def authenticate(self, request, credential):
        transport = request.transport
        cert = transport.get_extra_info("peercert") if transport is not None else None
        if not cert:
            return None
        subject = dict(rdn[0] for rdn in cert["subject"])
        name = subject["commonName"]
        self.asked.append((credential, name))
        return Principal(id=f"cert-{name}", name=name, models=frozenset({"other"}))


async def test_client_certificate_authentication_over_real_tls(aiohttp_server, pki):
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=pki["ca"])
    server_tls.load_cert_chain(pki["server"])
    server_tls.verify_mode = ssl.CERT_OPTIONAL  # a client without one reaches the authenticators
    mtls = ClientCertAuth()
    app = create_app(KEYS, plugins=[auth_plugin(mtls)], env={})
    server = await aiohttp_server(app, ssl=server_tls)
    base = str(server.make_url("/v1"))
    assert base.startswith("https://127.0.0.1:")

    def sdk(api_key: str, certificate: bool) -> openai.AsyncOpenAI:
        tls = ssl.create_default_context(cafile=pki["ca"])
        if certificate:
            tls.load_cert_chain(pki["client"])
        return openai.AsyncOpenAI(
            base_url=base,
            api_key=api_key,
            max_retries=0,
            http_client=openai.DefaultAsyncHttpxClient(verify=tls),
        )

    # The SDK sends no API key at all: the certificate is the credential.
    no_key = {"extra_headers": {"Authorization": openai.omit}}
    async with sdk("unused", certificate=True) as ada:
        out = await ada.chat.completions.create(model="other", messages=MESSAGES, **no_key)
        assert out.choices[0].message.content == "other: hi"
        assert [m.id async for m in ada.models.list(**no_key)] == ["other"]  # ada's principal
        stream = await ada.chat.completions.create(
            model="other", messages=MESSAGES, stream=True, **no_key
        )
        assert "".join([c.choices[0].delta.content or "" async for c in stream]) == "other: hi"
    assert set(mtls.asked) == {(None, "ada")}  # no credential was presented, the certificate was

    async with sdk("unused", certificate=False) as anonymous:
        with pytest.raises(openai.AuthenticationError) as info:
            await anonymous.chat.completions.create(model="other", messages=MESSAGES, **no_key)
        assert info.value.code == "missing_api_key"
    async with sdk("sk-plain", certificate=False) as keyed:  # a key works over TLS too
        assert sorted([m.id async for m in keyed.models.list()]) == ["echo", "other"]
