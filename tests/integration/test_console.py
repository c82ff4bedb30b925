"""The console's server side: where it is served and when, its headers, and what /ui/api tells
the page. What the page does with it is tested in a browser (test_console_browser.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile

import openai
import pytest
from support import ROOT
from support.configs import upstream_config

from gateway.console.plugin import CSP

KEYS = {
    "auth": {
        "keys": [
            {"key": "sk-all", "name": "everything"},
            {"key": "sk-narrow", "name": "narrow", "models": ["gpt-test"]},
        ]
    }
}
ALL = {"Authorization": "Bearer sk-all"}
NARROW = {"Authorization": "Bearer sk-narrow"}


def agents_config(upstream, **extra):
    cfg = upstream_config(upstream)
    cfg["agents"] = {
        "helper": {"model": "gpt-test", "tools": ["fakes.tools:get_weather"]},
        "other": {"model": "gpt-test", "description": "Another one."},
    }
    return {**cfg, **extra}


@pytest.mark.parametrize(
    ("host", "enabled", "served"),
    [
        ("127.0.0.1", None, True),
        ("localhost", None, True),
        ("::1", None, True),
        ("0.0.0.0", None, False),
        ("192.0.2.7", None, False),
        ("0.0.0.0", True, True),
        ("127.0.0.1", False, False),
    ],
)
async def test_served_by_default_only_on_loopback(make_gateway, host, enabled, served):
    cfg: dict = {"server": {"host": host}}
    if enabled is not None:
        cfg["console"] = {"enabled": enabled}
    client = await make_gateway(cfg)
    page = await client.get("/ui/")
    root = await client.get("/", allow_redirects=False)
    if served:
        assert page.status == 200 and "<title>hookgate console</title>" in await page.text()
        assert root.status == 302 and root.headers["location"] == "/ui/"
    else:
        assert page.status == 404 and (await page.json())["error"]["type"]
        assert root.status == 404


async def test_the_page_and_its_assets_carry_a_strict_policy(make_gateway):
    client = await make_gateway(KEYS)  # the page itself needs no key
    assert (await client.get("/ui", allow_redirects=False)).headers["location"] == "/ui/"
    for path, kind in [
        ("/ui/", "text/html"),
        ("/ui/main.js", "text/javascript"),
        ("/ui/console.css", "text/css"),
        ("/ui/favicon.svg", "image/svg+xml"),
    ]:
        resp = await client.get(path)
        assert resp.status == 200, path
        assert resp.content_type == kind
        assert resp.headers["content-security-policy"] == CSP
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert resp.headers["x-frame-options"] == "DENY"
        again = await client.get(path, headers={"if-none-match": resp.headers["etag"]})
        assert again.status == 304 and await again.read() == b""
    assert "'unsafe-inline'" not in CSP and "'unsafe-eval'" not in CSP and "http" not in CSP
    html = await (await client.get("/ui/")).text()
    assert "<script>" not in html and "style=" not in html and "http" not in html
    assert (await client.get("/ui/secret.py")).status == 404
    assert (await client.get("/ui/../plugin.py")).status == 404


async def test_the_gateway_says_whether_it_wants_a_key(make_gateway):
    keyed = await make_gateway(KEYS)
    assert await (await keyed.get("/ui/api/gateway")).json() == {"auth": True, "version": "0.2.0"}
    open_ = await make_gateway()
    assert (await (await open_.get("/ui/api/gateway")).json())["auth"] is False


async def test_whoami_needs_a_key_and_lists_what_the_key_may_run(make_gateway, upstream):
    client = await make_gateway(agents_config(upstream, **KEYS))
    assert (await client.get("/ui/api/whoami")).status == 401
    assert (
        await client.get("/ui/api/whoami", headers={"Authorization": "Bearer no"})
    ).status == 401
    me = await (await client.get("/ui/api/whoami", headers=ALL)).json()
    assert me["name"] == "everything" and me["auth"] is True and me["playground"] is True
    assert me["admin"] is False and me["capabilities"] == {}
    helper = next(a for a in me["agents"] if a["name"] == "helper")
    assert helper["tools"][0]["name"] == "get_weather"
    assert helper["tools"][0]["description"].startswith("The current weather in a city.")
    assert [a["name"] for a in me["agents"]] == ["helper", "other"]
    narrow = await (await client.get("/ui/api/whoami", headers=NARROW)).json()
    assert narrow["agents"] == []


async def test_admin_endpoints_refuse_ordinary_keys(make_gateway, upstream):
    client = await make_gateway(agents_config(upstream, **KEYS))
    for path in ("/ui/api/routes", "/ui/api/plugins", "/ui/api/requests"):
        assert (await client.get(path)).status == 401
        resp = await client.get(path, headers=ALL)
        assert resp.status == 403, path
        assert (await resp.json())["error"]["code"] == "admin_only"


async def test_an_open_gateway_shows_routes_and_plugins(make_gateway, upstream):
    client = await make_gateway(agents_config(upstream))
    me = await (await client.get("/ui/api/whoami")).json()
    assert me["admin"] is True and me["name"] == "anonymous"
    assert me["capabilities"] == {"keys": False, "spend": False, "requests": True}
    routes = (await (await client.get("/ui/api/routes")).json())["models"]
    assert {
        "model": "gpt-test",
        "backend": "up",
        "kind": "openai",
        "upstream_model": "up-model",
        "description": None,
        "targets": [{"backend": "up", "kind": "openai", "upstream_model": "up-model"}],
        "strategy": "fallback",
    } in routes
    assert {
        "model": "helper",
        "backend": "agent:helper",
        "kind": "agent",
        "upstream_model": None,
    } in routes
    plugins = (await (await client.get("/ui/api/plugins")).json())["plugins"]
    console = next(p for p in plugins if p["name"] == "console")
    assert console == {
        "name": "console",
        "version": "0.2.0",
        "distribution": "hookgate",
        "hooks": ["gateway_config_sections", "gateway_configure_app", "gateway_register_filters"],
        "enabled": True,
    }


async def test_recent_requests_say_how_each_ended(make_gateway, upstream, sdk):
    client = await make_gateway(
        upstream_config(upstream, **{}) | {"console": {"recent_requests": 2}}
    )
    api = sdk(client)
    await api.chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "hi"}]
    )
    with pytest.raises(openai.InternalServerError):
        await api.chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": "STATUS:500"}]
        )
    stream = await api.chat.completions.create(
        model="gpt-test",
        messages=[{"role": "user", "content": "one"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    async for _ in stream:
        pass
    data = (await (await client.get("/ui/api/requests")).json())["data"]
    assert len(data) == 2  # the latest two, newest first
    streamed, failed = data
    assert streamed["status"] == "success" and streamed["stream"] is True
    assert streamed["model"] == "gpt-test" and streamed["backend"] == "openai:up"
    assert streamed["key"] == "anonymous" and streamed["input_tokens"] > 0
    assert streamed["latency_ms"] > 0 and streamed["route"] == "chat_completions"
    assert failed["status"] == "error" and failed["error"]["status"] == 502
    assert failed["request_id"] and failed["time"] <= streamed["time"]


async def test_no_recent_requests_when_told(make_gateway):
    client = await make_gateway({"console": {"recent_requests": 0}})
    me = await (await client.get("/ui/api/whoami")).json()
    assert me["capabilities"]["requests"] is False
    assert (await (await client.get("/ui/api/requests")).json())["data"] == []


async def test_admin_keys_see_the_admin_views_and_no_playground(make_gateway, upstream, tmp_path):
    database = {"data_dir": str(tmp_path)}
    cfg = agents_config(upstream, **KEYS, admin={"keys": ["sk-admin"]}, database=database)
    client = await make_gateway(cfg)
    admin = {"Authorization": "Bearer sk-admin"}
    me = await (await client.get("/ui/api/whoami", headers=admin)).json()
    assert me["admin"] is True and me["playground"] is False and me["agents"] == []
    assert me["name"] == "admin"
    assert me["capabilities"] == {"keys": True, "spend": True, "requests": True}
    for path in ("/ui/api/routes", "/ui/api/plugins", "/ui/api/requests"):
        assert (await client.get(path, headers=admin)).status == 200, path
        assert (await client.get(path, headers=ALL)).status == 403, path
    # An admin key calls no model; a model key is no admin.
    resp = await client.post(
        "/v1/chat/completions",
        json={"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]},
        headers=admin,
    )
    assert resp.status == 401
    assert (await (await client.get("/ui/api/whoami", headers=ALL)).json())["admin"] is False
    # An open gateway with admin keys: everyone may chat, only the admin key administers.
    open_ = await make_gateway({"admin": {"keys": ["sk-admin"], "virtual_keys": False}})
    assert (await (await open_.get("/ui/api/gateway")).json())["auth"] is True
    assert (await open_.get("/ui/api/routes")).status == 401
    anyone = await (await open_.get("/ui/api/whoami")).json()
    assert anyone["playground"] is True and anyone["admin"] is False


PIP_WHEEL = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]


def test_the_wheel_ships_the_page(tmp_path):
    """The package data is declared: a wheel built from the sources holds every file of the
    page (built from a copy, so the checkout gets no build/ folder)."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "gateway", src / "gateway", ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run(
        [*PIP_WHEEL, "-w", str(tmp_path / "dist"), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = (tmp_path / "dist").glob("hookgate-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    static = ROOT / "gateway" / "console" / "static"
    expected = {f"gateway/console/static/{p.name}" for p in static.iterdir()}
    assert "gateway/console/static/index.html" in expected
    assert expected <= names, expected - names
