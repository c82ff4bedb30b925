"""Sessions: history prepended and appended, scoped per key, bounded, expiring, with its API.

Every behaviour is checked against both stores (memory, and Redis on a real server); the
official openai SDK is the caller and the scripted upstream records what it was sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import time

import openai
import pytest
from fakes.openai_upstream import CANCELLED
from fakes.plain_protocol import PLUGIN as PLAIN
from support.configs import recorded, upstream_config

from gateway import hookimpl
from gateway.canonical import (
    Message,
    TextPart,
)
from gateway.errors import Unavailable
from gateway.sessions.base import Entry, SessionStore
from gateway.sessions.history import SESSION_STORE
from gateway.sessions.memory import MemorySessionStore

KEYS = [{"name": "alice", "key": "sk-alice"}, {"name": "bob", "key": "sk-bob"}]


@pytest.fixture
async def gateway(make_gateway, upstream, store_config):
    """``await gateway(**sessions)``: a gateway with keys, the upstream and sessions on."""

    async def make(plugins=(), **sessions):
        return await make_gateway(
            {
                **upstream_config(upstream),
                **store_config("sessions", **sessions),
                "auth": {"keys": KEYS},
            },
            plugins=plugins,
        )

    return make


def _user(text):
    return {"role": "user", "content": text}


def _sent(upstream):
    """The messages the upstream received last."""
    return recorded(upstream)[-1]["messages"]


async def _ask(api, text, session="s1", **kwargs):
    out = await api.chat.completions.create(
        model="gpt-test",
        messages=kwargs.pop("messages", [_user(text)]),
        extra_headers={"X-Session-Id": session} if session else None,
        **kwargs,
    )
    return out.choices[0].message


async def test_history_is_prepended_and_the_turn_appended(gateway, upstream, sdk):
    client = await gateway()
    api = sdk(client, api_key="sk-alice")
    await _ask(api, "my name is Ada")
    assert _sent(upstream) == [_user("my name is Ada")]
    reply = await _ask(api, "what is my name?")
    assert reply.content == "upstream says: what is my name?"
    assert _sent(upstream) == [
        _user("my name is Ada"),
        {"role": "assistant", "content": "upstream says: my name is Ada"},
        _user("what is my name?"),
    ]
    await _ask(api, "unrelated", session=None)  # no session: nothing prepended
    assert _sent(upstream) == [_user("unrelated")]
    assert len(_sent(upstream)) == 1


async def test_metadata_session_id_is_consumed_not_forwarded(gateway, upstream, sdk):
    client = await gateway()
    api = sdk(client, api_key="sk-alice")
    for text in ("first", "second"):
        await api.chat.completions.create(
            model="gpt-test",
            messages=[_user(text)],
            metadata={"session_id": "meta", "team": "x"},
        )
    body = recorded(upstream)[-1]
    assert body["metadata"] == {"team": "x"}
    assert [m["content"] for m in body["messages"]] == ["first", "upstream says: first", "second"]
    # The header and the metadata may both name it, but not two different sessions.
    await _ask(api, "third", session="meta", metadata={"session_id": "meta"})
    with pytest.raises(openai.BadRequestError) as info:
        await _ask(api, "x", session="other", metadata={"session_id": "meta"})
    assert "different sessions" in info.value.message
    with pytest.raises(openai.BadRequestError) as info:
        await _ask(api, "x", session="has space")
    assert info.value.body["param"] == "session_id"


async def test_streamed_tool_calls_are_kept_and_replayed(gateway, upstream, sdk):
    client = await gateway()
    api = sdk(client, api_key="sk-alice")
    stream = await api.chat.completions.create(
        model="gpt-test",
        messages=[_user("TOOLS")],
        stream=True,
        extra_headers={"X-Session-Id": "t"},
    )
    assert [c async for c in stream]
    results = [
        {"role": "tool", "tool_call_id": "call_weather_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_time_2", "content": "noon"},
    ]
    await _ask(api, None, session="t", messages=results)
    assert _sent(upstream) == [
        _user("TOOLS"),
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_weather_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "call_time_2",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": '{"tz": "CET"}'},
                },
            ],
        },
        *results,
    ]
    page = await (
        await client.get("/v1/sessions/t", headers={"authorization": "Bearer sk-alice"})
    ).json()
    assert page["message_count"] == 5
    assert [m["role"] for m in page["messages"]] == [
        "user",
        "assistant",
        "tool",
        "tool",
        "assistant",
    ]


async def test_failed_and_cancelled_requests_append_nothing(gateway, upstream, sdk):
    client = await gateway()
    api = sdk(client, api_key="sk-alice")
    await _ask(api, "hello")
    with pytest.raises(openai.InternalServerError):
        await _ask(api, "STATUS:500")
    stream = await api.chat.completions.create(
        model="gpt-test",
        messages=[_user("BREAK")],
        stream=True,
        extra_headers={"X-Session-Id": "s1"},
    )
    with pytest.raises(openai.APIError):
        async for _ in stream:
            pass
    stream = await api.chat.completions.create(
        model="gpt-test",
        messages=[_user("DRIP")],
        stream=True,
        extra_headers={"X-Session-Id": "s1"},
    )
    async for _ in stream:
        break
    await stream.close()
    deadline = time.monotonic() + 10
    while "DRIP" not in upstream.app[CANCELLED]:
        assert time.monotonic() < deadline, "the upstream stream was not cancelled"
        await asyncio.sleep(0.02)
    await _ask(api, "after")
    assert [m["content"] for m in _sent(upstream)] == ["hello", "upstream says: hello", "after"]


async def test_sessions_belong_to_the_key_that_made_them(gateway, upstream, sdk):
    client = await gateway()
    alice, bob = sdk(client, api_key="sk-alice"), sdk(client, api_key="sk-bob")
    await _ask(alice, "alice's secret", session="shared")
    await _ask(bob, "bob here", session="shared")
    assert _sent(upstream) == [_user("bob here")]  # bob does not get alice's history
    await _ask(alice, "again", session="shared")
    assert _sent(upstream)[0] == _user("alice's secret")
    assert "bob here" not in str(_sent(upstream))

    def auth(key):
        return {"authorization": f"Bearer {key}"}

    await _ask(alice, "only alice", session="mine")
    resp = await client.get("/v1/sessions/mine", headers=auth("sk-bob"))
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "session_not_found"
    resp = await client.delete("/v1/sessions/mine", headers=auth("sk-bob"))
    assert resp.status == 404
    listed = await (await client.get("/v1/sessions", headers=auth("sk-bob"))).json()
    assert [s["id"] for s in listed["data"]] == ["shared"]
    assert (await client.get("/v1/sessions")).status == 401


async def test_system_prompt_is_kept_replaced_and_never_trimmed(gateway, upstream, sdk):
    client = await gateway(max_messages=2)
    api = sdk(client, api_key="sk-alice")
    system = {"role": "system", "content": "be brief"}
    await _ask(api, None, messages=[system, _user("one")])
    await _ask(api, "two")
    assert _sent(upstream)[0] == system and _sent(upstream)[-1] == _user("two")
    await _ask(api, "three")
    # max_messages = 2: turn one is gone, the system prompt stays first.
    assert [m["content"] for m in _sent(upstream)] == [
        "be brief",
        "two",
        "upstream says: two",
        "three",
    ]
    verbose = {"role": "developer", "content": "be verbose"}
    await _ask(api, None, messages=[verbose, _user("four")])
    assert _sent(upstream)[0] == verbose and system not in _sent(upstream)
    await _ask(api, "five")
    assert _sent(upstream)[0] == verbose and _sent(upstream).count(verbose) == 1


async def test_token_budget_trims_whole_turns(gateway, upstream, sdk):
    client = await gateway(max_tokens=60)
    api = sdk(client, api_key="sk-alice")
    for word in ("alpha", "beta", "gamma", "delta"):
        await _ask(api, word * 10)
    # Each turn is about (4 + 13) + (4 + 17) = 38 tokens: only the last one fits the budget.
    assert [m["content"] for m in _sent(upstream)] == [
        "gamma" * 10,
        "upstream says: " + "gamma" * 10,
        "delta" * 10,
    ]


async def test_concurrent_requests_on_one_session_lose_no_turn(gateway, upstream, sdk):
    client = await gateway()
    api = sdk(client, api_key="sk-alice")
    # Each answer takes 0.2 s, so every request loads the history before any appends.
    await asyncio.gather(*(_ask(api, "SLOW:0.2") for _ in range(8)))
    page = await (
        await client.get("/v1/sessions/s1", headers={"authorization": "Bearer sk-alice"})
    ).json()
    assert page["message_count"] == 16
    assert [m["role"] for m in page["messages"]] == ["user", "assistant"] * 8


async def test_session_api_lists_reads_and_deletes(gateway, sdk):
    client = await gateway()
    api = sdk(client, api_key="sk-alice")
    headers = {"authorization": "Bearer sk-alice"}
    for name in ("a", "b", "c"):
        await _ask(api, f"hi {name}", session=name)
    listed = await (await client.get("/v1/sessions", headers=headers)).json()
    assert listed["object"] == "list" and listed["has_more"] is False
    assert [s["id"] for s in listed["data"]] == ["c", "b", "a"]  # most recently used first
    first = listed["data"][0]
    assert first["object"] == "session" and first["message_count"] == 2
    assert first["created_at"] <= first["updated_at"] < first["expires_at"]
    page = await (await client.get("/v1/sessions?limit=2", headers=headers)).json()
    assert len(page["data"]) == 2 and page["has_more"] is True
    resp = await client.get("/v1/sessions?limit=0", headers=headers)
    assert resp.status == 400 and (await resp.json())["error"]["param"] == "limit"

    one = await (await client.get("/v1/sessions/b", headers=headers)).json()
    assert one["id"] == "b" and one["messages"] == [
        {"role": "user", "content": "hi b"},
        {"role": "assistant", "content": "upstream says: hi b"},
    ]
    resp = await client.delete("/v1/sessions/b", headers=headers)
    assert await resp.json() == {"id": "b", "object": "session.deleted", "deleted": True}
    assert (await client.get("/v1/sessions/b", headers=headers)).status == 404
    assert (await client.delete("/v1/sessions/b", headers=headers)).status == 404
    listed = await (await client.get("/v1/sessions", headers=headers)).json()
    assert [s["id"] for s in listed["data"]] == ["c", "a"]


async def test_sessions_expire_after_their_ttl_and_use_refreshes_it(gateway, sdk):
    client = await gateway(ttl="1s")
    store = client.server.app[SESSION_STORE]
    api = sdk(client, api_key="sk-alice")
    await _ask(api, "short-lived")
    owner = "key-" + hashlib.sha256(b"sk-alice").hexdigest()[:16]  # alice's principal id
    before = (await store.load(owner, "s1", touch=False)).info.expires
    deadline = time.monotonic() + 5
    while (await store.load(owner, "s1")).info.expires <= before:  # a use moves expiry on
        assert time.monotonic() < deadline
        await asyncio.sleep(0.005)
    deadline = time.monotonic() + 10
    while await store.load(owner, "s1", touch=False) is not None:
        assert time.monotonic() < deadline, "the session did not expire"
        await asyncio.sleep(0.05)
    headers = {"authorization": "Bearer sk-alice"}
    assert (await (await client.get("/v1/sessions", headers=headers)).json())["data"] == []


def _entry(*roles: str) -> Entry:
    return Entry.of([Message(r, [TextPart(f"{r} text")]) for r in roles])  # type: ignore[arg-type]


async def test_trimming_never_orphans_a_tool_result(gateway):
    client = await gateway(max_messages=3)
    store: SessionStore = client.server.app[SESSION_STORE]
    await store.append("owner", "x", _entry("user", "assistant"))
    await store.append("owner", "x", _entry("tool", "assistant"))
    await store.append("owner", "x", _entry("tool", "assistant"))
    # 6 messages > 3, but the only entry starting with a user message is the first: no cut
    # may fall before a tool result, so the turn stays whole.
    assert (await store.load("owner", "x")).info.messages == 6
    await store.append("owner", "x", _entry("user", "assistant"))
    found = await store.load("owner", "x")
    assert [m.role for m in found.messages] == ["user", "assistant"]
    assert found.info.messages == 2


async def test_memory_store_is_bounded_lru(make_gateway):
    client = await make_gateway({"sessions": {"store": "memory", "max_sessions": 2}})
    store = client.server.app[SESSION_STORE]
    for name in ("a", "b"):
        await store.append("o", name, _entry("user", "assistant"))
    await store.load("o", "a")  # a is now more recent than b
    await store.append("o", "c", _entry("user", "assistant"))
    assert await store.load("o", "b") is None
    assert await store.load("o", "a") is not None and await store.load("o", "c") is not None


async def test_memory_sessions_by_default_and_a_clear_refusal_when_none_can_serve(
    make_gateway, upstream, sdk
):
    client = await make_gateway(upstream_config(upstream))
    assert isinstance(client.server.app[SESSION_STORE], MemorySessionStore)
    api = sdk(client)
    for text in ("one", "two"):
        await _ask(api, text)
    assert _sent(upstream) == [
        _user("one"),
        {"role": "assistant", "content": "upstream says: one"},
        _user("two"),
    ]
    assert (await client.get("/v1/sessions")).status == 200

    for config, reason in (
        ({"sessions": {"store": "off"}}, "Sessions are off"),
        ({"server": {"workers": 2}}, "several worker processes and no Redis"),
    ):
        client = await make_gateway({**upstream_config(upstream), **config})
        api = sdk(client)
        with pytest.raises(openai.BadRequestError) as info:
            await _ask(api, "lost?")
        assert info.value.code == "sessions_unavailable" and reason in info.value.message
        out = await api.chat.completions.create(model="gpt-test", messages=[_user("no session")])
        assert out.choices[0].message.content == "upstream says: no session"
        assert (await client.get("/v1/sessions")).status == 404


async def test_any_protocol_names_a_session_with_the_header(gateway, upstream):
    client = await gateway(plugins=[PLAIN])
    headers = {"authorization": "Bearer sk-alice", "x-session-id": "plain"}
    for text in ("first words", "second words"):
        resp = await client.post("/plain/gpt-test", data=text, headers=headers)
        assert (resp.status, await resp.text()) == (200, f"upstream says: {text}")
    assert _sent(upstream) == [
        _user("first words"),
        {"role": "assistant", "content": "upstream says: first words"},
        _user("second words"),
    ]
    resp = await client.post(
        "/plain/gpt-test", data="x", headers={**headers, "x-session-id": "bad id"}
    )
    assert resp.status == 400 and "session id" in (await resp.json())["oops"]


async def test_a_turn_that_cannot_be_stored_is_reported(make_gateway, upstream, sdk):
    class Failing(MemorySessionStore):
        async def append(self, owner, session, entry, system=None):
            raise Unavailable("The session store is down.", code="state_store_unavailable")

    class Plugin:
        @hookimpl
        def gateway_register_session_stores(self, register):
            register("failing", lambda gw: Failing(gw.config.section("sessions")))

    client = await make_gateway(
        {**upstream_config(upstream), "sessions": {"store": "failing"}},
        plugins=[("failing", Plugin())],
    )
    api = sdk(client)
    with pytest.raises(openai.InternalServerError) as info:
        await _ask(api, "hello")
    assert info.value.status_code == 503 and info.value.body["code"] == "state_store_unavailable"
    stream = await api.chat.completions.create(
        model="gpt-test",
        messages=[_user("hello")],
        stream=True,
        extra_headers={"X-Session-Id": "s"},
    )
    texts = []
    with pytest.raises(openai.APIError) as info:
        async for chunk in stream:
            texts.append(chunk.choices[0].delta.content or "")
    assert "".join(texts) == "upstream says: hello"  # the answer came, then the failure was said
    assert "session store is down" in info.value.message
