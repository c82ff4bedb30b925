"""Virtual keys: created, changed, rotated and revoked at run time through the admin API and
``hookgate keys``, kept hashed in the database, used by the official client beside the TOML
keys; the admin API answers only admin keys; a revocation reaches every instance within a
second."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import openai
import pytest
from support.processes import gateway_process, hookgate_env
from support.waiting import wait_until

MESSAGES = [{"role": "user", "content": "hi"}]
ADMIN = {"authorization": "Bearer adm-secret"}


def config(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "auth": {"keys": [{"name": "toml", "key": "sk-toml"}]},
        "admin": {"keys": ["adm-secret"]},
        "database": {"data_dir": str(tmp_path)},
        "backends": {"echo": {"kind": "echo"}, "other": {"kind": "echo", "prefix": "other: "}},
        "models": {"echo": {"backend": "echo"}, "other": {"backend": "other"}},
        **extra,
    }


async def admin(client: Any, method: str, path: str, body: Any = None, **headers: str) -> Any:
    resp = await client.request(method, path, json=body, headers=headers or ADMIN)
    return resp.status, await resp.json()


async def test_key_lifecycle_through_the_admin_api(make_gateway, sdk, tmp_path):
    client = await make_gateway(config(tmp_path))
    status, team = await admin(client, "POST", "/admin/teams", {"id": "eng", "name": "Eng"})
    assert status == 201 and team["id"] == "eng"
    status, made = await admin(
        client,
        "POST",
        "/admin/keys",
        {"name": "ci", "team": "eng", "models": ["echo"], "metadata": {"owner": "ada"}},
    )
    assert status == 201
    secret, key_id = made["secret"], made["key"]["id"]
    assert made["key"]["hint"] == "hg-..." + secret[-4:]

    api = sdk(client, api_key=secret)
    done = await api.chat.completions.create(model="echo", messages=MESSAGES)
    assert done.choices[0].message.content == "hi"
    with pytest.raises(openai.PermissionDeniedError):
        await api.chat.completions.create(model="other", messages=MESSAGES)
    # The TOML key works beside it.
    toml = sdk(client, api_key="sk-toml")
    assert (await toml.chat.completions.create(model="other", messages=MESSAGES)).choices

    # Listed and shown without the secret.
    status, listed = await admin(client, "GET", "/admin/keys?team=eng")
    assert status == 200 and [k["id"] for k in listed["data"]] == [key_id]
    assert secret not in json.dumps(listed)
    status, shown = await admin(client, "GET", f"/admin/keys/{key_id}")
    assert shown["metadata"] == {"owner": "ada"} and shown["team"] == "eng"

    # An update takes effect at once on this instance.
    status, updated = await admin(client, "PATCH", f"/admin/keys/{key_id}", {"models": None})
    assert status == 200 and updated["models"] is None
    assert (await api.chat.completions.create(model="other", messages=MESSAGES)).choices

    # Rotation: the old secret stops, the new one works, the id stays.
    status, rotated = await admin(client, "POST", f"/admin/keys/{key_id}/rotate")
    assert status == 200 and rotated["key"]["id"] == key_id
    with pytest.raises(openai.AuthenticationError):
        await api.chat.completions.create(model="echo", messages=MESSAGES)
    api = sdk(client, api_key=rotated["secret"])
    assert (await api.chat.completions.create(model="echo", messages=MESSAGES)).choices

    # Expiry in the past: refused, saying so (the caller holds the secret), in the key's cache
    # and as it is looked up again.
    await admin(client, "PATCH", f"/admin/keys/{key_id}", {"expires_at": "2001-01-01T00:00:00Z"})
    for _ in range(2):
        with pytest.raises(openai.AuthenticationError) as expired:
            await api.chat.completions.create(model="echo", messages=MESSAGES)
        assert expired.value.code == "expired_api_key"
        assert "expired at 2001-01-01T00:00:00Z" in expired.value.message
    await admin(client, "PATCH", f"/admin/keys/{key_id}", {"expires_at": None})

    status, revoked = await admin(client, "POST", f"/admin/keys/{key_id}/revoke")
    assert status == 200 and revoked["revoked_at"] is not None
    with pytest.raises(openai.AuthenticationError):
        await api.chat.completions.create(model="echo", messages=MESSAGES)
    status, listed = await admin(client, "GET", "/admin/keys")
    assert listed["data"] == []


async def test_admin_api_is_for_admin_keys_only(make_gateway, sdk, tmp_path):
    client = await make_gateway(config(tmp_path))
    _, made = await admin(client, "POST", "/admin/keys", {"name": "user"})
    for headers, status, code in (
        ({}, 401, "missing_api_key"),
        ({"authorization": "Bearer sk-toml"}, 403, "admin_key_required"),
        ({"authorization": f"Bearer {made['secret']}"}, 403, "admin_key_required"),
        ({"x-api-key": "wrong"}, 403, "admin_key_required"),
    ):
        resp = await client.get("/admin/keys", headers=headers)
        assert resp.status == status
        assert (await resp.json())["error"]["code"] == code
    # ... and an admin key calls no model.
    with pytest.raises(openai.AuthenticationError):
        await sdk(client, api_key="adm-secret").chat.completions.create(
            model="echo", messages=MESSAGES
        )


async def test_admin_api_reports_bad_input_in_json(make_gateway, tmp_path):
    client = await make_gateway(config(tmp_path))
    status, body = await admin(client, "POST", "/admin/keys", {"name": "x", "rpm": "many"})
    assert status == 400 and body["error"]["param"] == "rpm"
    status, body = await admin(client, "GET", "/admin/keys/key_nope")
    assert status == 404 and body["error"]["code"] == "key_not_found"
    resp = await client.post("/admin/keys", data=b"{not json", headers=ADMIN)
    assert resp.status == 400
    # A filter that is no yes or no is refused, not read as "no".
    status, body = await admin(client, "GET", "/admin/keys?revoked=maybe")
    assert status == 400 and body["error"]["param"] == "revoked"
    for value in ("true", "FALSE", "1", "0", "yes", "no"):
        status, body = await admin(client, "GET", f"/admin/keys?revoked={value}")
        assert status == 200 and body["object"] == "list"


async def test_no_admin_keys_means_no_admin_api(make_gateway, tmp_path):
    cfg = config(tmp_path)
    del cfg["admin"]
    client = await make_gateway(cfg)
    resp = await client.get("/admin/keys", headers=ADMIN)
    assert resp.status == 404


def _hookgate(config_file: Path, *args: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "gateway", *args, "--config", str(config_file)],
        capture_output=True,
        text=True,
        env=hookgate_env(),
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _chat(url: str, key: str) -> int:
    request = urllib.request.Request(
        url + "/v1/chat/completions",
        data=json.dumps({"model": "echo", "messages": MESSAGES}).encode(),
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


def test_revocation_reaches_every_instance_within_a_second(
    tmp_path, postgres_url, redis_url, redis_prefix
):
    """Two gateway processes on one PostgreSQL and one Redis; a key made with ``hookgate keys``
    works on both (each caches it), is revoked through one, and the other refuses it within a
    second."""
    toml = f"""
[admin]
keys = ["adm-secret"]
key_cache = "1h"

[database]
url = "{postgres_url}"

[redis]
url = "{redis_url}"
prefix = "{redis_prefix}"

[backends.echo]
kind = "echo"

[models.echo]
backend = "echo"
"""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with ExitStack() as stack:
        one = stack.enter_context(gateway_process(config=toml, directory=tmp_path / "a"))
        two = stack.enter_context(gateway_process(config=toml, directory=tmp_path / "b"))
        assert one.config_file is not None
        made = _hookgate(one.config_file, "keys", "create", "--name", "shared")
        secret = made["secret"]
        assert _chat(one.url, secret) == 200 and _chat(two.url, secret) == 200
        request = urllib.request.Request(
            f"{one.url}/admin/keys/{made['key']['id']}/revoke", method="POST", headers=ADMIN
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert resp.status == 200
        revoked = time.monotonic()
        assert _chat(one.url, secret) == 401
        wait_until(lambda: _chat(two.url, secret) == 401, 1.0, "the other instance refuses it")
        assert time.monotonic() - revoked < 1.0
        # The CLI sees the revocation too.
        shown = _hookgate(one.config_file, "keys", "show", made["key"]["id"])
        assert shown["revoked_at"] is not None


async def test_key_and_team_limits_apply_without_limits_section(make_gateway, sdk, tmp_path):
    client = await make_gateway(config(tmp_path))
    await admin(client, "POST", "/admin/teams", {"id": "small", "name": "Small", "rpm": 2})
    _, alone = await admin(client, "POST", "/admin/keys", {"name": "alone", "rpm": 1})
    api = sdk(client, api_key=alone["secret"])
    await api.chat.completions.create(model="echo", messages=MESSAGES)
    with pytest.raises(openai.RateLimitError) as refused:
        await api.chat.completions.create(model="echo", messages=MESSAGES)
    assert refused.value.code == "rate_limit_exceeded"
    # Two keys of one team share its two requests a minute.
    keys = [
        (await admin(client, "POST", "/admin/keys", {"name": f"m{i}", "team": "small"}))[1]
        for i in range(3)
    ]
    for made in keys[:2]:
        await sdk(client, api_key=made["secret"]).chat.completions.create(
            model="echo", messages=MESSAGES
        )
    with pytest.raises(openai.RateLimitError) as refused:
        await sdk(client, api_key=keys[2]["secret"]).chat.completions.create(
            model="echo", messages=MESSAGES
        )
    assert "team small" in refused.value.message
