"""A2A as its specification and its official clients expect: trailing slashes on agent URLs,
one card per requested version (each valid against that version's definition), cache headers
and conditional requests on cards, and subscription errors in the form each version's clients
read."""

from __future__ import annotations

import email.utils

import httpx
import orjson
import pytest
from a2a.client import ClientConfig, create_client
from a2a.client.card_resolver import parse_agent_card
from a2a.types.a2a_pb2 import SubscribeToTaskRequest
from a2a.utils.errors import TaskNotFoundError, UnsupportedOperationError
from support.a2a_check import agent_config, answer, ask, collect, fold, rpc
from support.a2a_schema import check_card_03, check_card_1

COMPLETED = "TASK_STATE_COMPLETED"
CARD_PATHS = ["/.well-known/agent-card.json", "/a2a/helper/.well-known/agent-card.json"]


@pytest.mark.parametrize("secured", [True, False], ids=["keys", "open"])
async def test_one_card_per_version_each_valid(make_gateway, upstream, secured):
    cfg = agent_config(upstream)
    if not secured:
        del cfg["auth"]
    client = await make_gateway(cfg)
    for path in CARD_PATHS:
        plain = await (await client.get(path)).json()
        modern = await (await client.get(path, headers={"A2A-Version": "1.0"})).json()
        assert plain == modern  # 1.0 by default
        card = check_card_1(modern)
        assert [i.protocol_version for i in card.supported_interfaces] == ["1.0", "0.3"]
        assert bool(card.security_schemes) is secured
        if secured:
            assert card.security_schemes["bearer"].http_auth_security_scheme.scheme == "Bearer"
        old = await (await client.get(path, headers={"A2A-Version": "0.3"})).json()
        legacy = check_card_03(old)
        assert legacy.protocol_version == "0.3.0" and legacy.url.endswith(("/a2a", "/helper"))
        assert bool(legacy.security_schemes) is secured
        assert old == await (await client.get(path.replace("agent-card", "agent"))).json()


async def test_cards_are_cached_and_revalidated(make_gateway, upstream):
    client = await make_gateway({**agent_config(upstream), "a2a": {"card_max_age": "10m"}})
    path = CARD_PATHS[1]
    first = await client.get(path)
    body = await first.read()
    headers = first.headers
    assert headers["Cache-Control"] == "public, max-age=600"
    assert headers["Vary"] == "A2A-Version"
    etag, modified = headers["ETag"], headers["Last-Modified"]
    assert etag.startswith('"') and email.utils.parsedate_to_datetime(modified)
    # the same card, the same validators
    again = await client.get(path)
    assert await again.read() == body and again.headers["ETag"] == etag

    for conditional in (
        {"If-None-Match": etag},
        {"If-None-Match": f'"other", W/{etag}'},
        {"If-None-Match": "*"},
        {"If-Modified-Since": modified},
    ):
        fresh = await client.get(path, headers=conditional)
        assert fresh.status == 304, conditional
        assert await fresh.read() == b""
        assert fresh.headers["ETag"] == etag and fresh.headers["Cache-Control"]
    stale = await client.get(path, headers={"If-None-Match": '"other"'})
    assert stale.status == 200 and await stale.read() == body
    older = email.utils.formatdate(
        email.utils.parsedate_to_datetime(modified).timestamp() - 60, usegmt=True
    )
    assert (await client.get(path, headers={"If-Modified-Since": older})).status == 200
    # each version's card is its own representation
    v03 = await client.get(path, headers={"A2A-Version": "0.3", "If-None-Match": etag})
    assert v03.status == 200 and v03.headers["ETag"] != etag


@pytest.mark.parametrize("version", ["1.0", "0.3"])
async def test_trailing_slashes_are_tolerated(make_gateway, upstream, version):
    client = await make_gateway(agent_config(upstream))
    path = "/a2a/helper/.well-known/agent-card.json"
    card = await (await client.get(path, headers={"A2A-Version": version})).json()
    # the agent's URL as the 1.0 conformance kit's client writes it: with a trailing slash
    if version == "1.0":
        for interface in card["supportedInterfaces"]:
            interface["url"] += "/"
        card["supportedInterfaces"] = card["supportedInterfaces"][:1]
    else:
        card["url"] += "/"
    http = httpx.AsyncClient(headers={"Authorization": "Bearer sk-a"}, timeout=30)
    posted: list[str] = []

    async def record(request: httpx.Request) -> None:
        posted.append(str(request.url))

    http.event_hooks["request"].append(record)
    try:
        a2a = await create_client(
            parse_agent_card(card), client_config=ClientConfig(streaming=True, httpx_client=http)
        )
        task = fold(await collect(a2a.send_message(ask("hello"))))
        assert task["status"]["state"] == COMPLETED
        assert answer(task) == "upstream says: hello"
        assert posted and all(url.endswith("/a2a/helper/") for url in posted)
        await a2a.close()
    finally:
        await http.aclose()

    # the gateway's own endpoint too; every other path under /a2a is a JSON-RPC 404
    headers = {"x-api-key": "sk-a", "A2A-Version": "1.0"}
    found = await rpc(client, "/a2a/", "GetTask", {"id": "none"}, headers=headers)
    assert found["error"]["code"] == -32001  # TaskNotFound: the endpoint answered
    for method, where in (
        ("POST", "/a2a/helper/extra"),
        ("GET", "/a2a/helper"),
        ("GET", "/a2a/helper/"),
        ("POST", "/a2a/nobody/"),
        ("PUT", "/a2a"),
    ):
        resp = await client.request(method, where, headers=headers)
        assert resp.status == 404, (method, where)
        body = await resp.json()
        assert body["jsonrpc"] == "2.0" and body["error"]["code"] == -32602, body


async def test_subscription_errors_in_each_version_form(make_gateway, upstream, official):
    client = await make_gateway(agent_config(upstream))
    url = str(client.make_url("/a2a/helper"))
    a2a = await official(url, "sk-a", streaming=False)
    done = (await collect(a2a.send_message(ask("hello"))))[0]["task"]
    for legacy in (False, True):
        sdk = await official(url, "sk-a", legacy=legacy)
        with pytest.raises(TaskNotFoundError):
            await collect(sdk.subscribe(SubscribeToTaskRequest(id="no-such-task")))
        with pytest.raises(UnsupportedOperationError):
            await collect(sdk.subscribe(SubscribeToTaskRequest(id=done["id"])))

    # 0.3 clients read tasks/resubscribe (and message/stream) as an event stream, errors too
    for task_id, code in (("no-such-task", -32001), (done["id"], -32004)):
        resp = await client.post(
            "/a2a/helper",
            json={
                "jsonrpc": "2.0",
                "id": 3,
                "method": "tasks/resubscribe",
                "params": {"id": task_id},
            },
            headers={"x-api-key": "sk-a"},
        )
        assert resp.status == 200 and resp.content_type == "text/event-stream"
        frames = [f for f in (await resp.text()).split("\n\n") if f]
        assert len(frames) == 1 and frames[0].startswith("data: ")
        error = orjson.loads(frames[0][6:])
        assert error["id"] == 3 and error["error"]["code"] == code
    bad = await client.post(
        "/a2a/helper",
        json={"jsonrpc": "2.0", "id": 4, "method": "message/stream", "params": {}},
        headers={"x-api-key": "sk-a"},
    )
    assert bad.content_type == "text/event-stream"
    assert orjson.loads((await bad.text())[6:])["error"]["code"] == -32602
    # 1.0 clients read a plain JSON-RPC error
    modern = await rpc(
        client,
        "/a2a/helper",
        "SubscribeToTask",
        {"id": "no-such-task"},
        headers={"x-api-key": "sk-a", "A2A-Version": "1.0"},
    )
    assert modern["error"]["code"] == -32001
