"""A session turn is stored exactly when the client was told it succeeded: with a real Redis
frozen (SIGSTOP) at the end of a streamed turn, the client gets an error frame, and the append
that was waiting in Redis's socket is not applied when Redis resumes."""

from __future__ import annotations

import os
import signal

import openai
import pytest
import redis
from support.waiting import until


def _evalsha_runs(client: redis.Redis) -> int:
    stats = client.info("commandstats").get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0)) + int(stats.get("failed_calls", 0))


async def _history(gateway, session: str) -> list[str]:
    resp = await gateway.get(f"/v1/sessions/{session}")
    assert resp.status == 200, await resp.text()
    return [m["content"] for m in (await resp.json())["messages"]]


async def test_a_turn_reported_failed_is_never_stored_later(make_gateway, sdk, own_redis):
    gateway = await make_gateway(
        {
            "backends": {"echo": {"kind": "echo", "delay": "100ms"}},
            "models": {"echo": {"backend": "echo"}},
            "redis": {"url": own_redis.url, "timeout": "0.5s", "connect_timeout": "0.5s"},
            "sessions": {"store": "redis"},
        }
    )
    api = sdk(gateway)
    watcher = redis.Redis.from_url(own_redis.url)
    assert own_redis.proc is not None
    pid = own_redis.proc.pid
    headers = {"X-Session-Id": "s"}
    first = await api.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "one"}], extra_headers=headers
    )
    assert first.choices[0].message.content == "one"

    for attempt in range(3):
        stream = await api.chat.completions.create(
            model="echo",
            messages=[{"role": "user", "content": "two words"}],
            stream=True,
            extra_headers=headers,
        )
        texts: list[str] = []
        with pytest.raises(openai.APIError) as info:
            async for chunk in stream:
                if not texts:  # the session was read; the append comes at the end
                    before = _evalsha_runs(watcher)
                    os.kill(pid, signal.SIGSTOP)
                texts.append(chunk.choices[0].delta.content or "" if chunk.choices else "")
        assert "".join(texts) == "two words"
        assert "state store" in info.value.message
        os.kill(pid, signal.SIGCONT)
        # Redis reads the append that waited in its socket, and runs it: too late, it writes
        # nothing
        await until(lambda b=before: _evalsha_runs(watcher) > b, 10, "the late append")
        assert await _history(gateway, "s") == ["one", "one"], attempt

    # the client retries with Redis answering: the turn is stored once
    stream = await api.chat.completions.create(
        model="echo",
        messages=[{"role": "user", "content": "two words"}],
        stream=True,
        extra_headers=headers,
    )
    assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]) == (
        "two words"
    )
    assert await _history(gateway, "s") == ["one", "one", "two words", "two words"]
    watcher.close()
