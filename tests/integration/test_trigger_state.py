"""The trigger state (delivery ids, leases, poller ticks) in memory and in Redis."""

from __future__ import annotations

import asyncio

import pytest

from gateway.state import RedisConfig, RedisUrl
from gateway.state.redis import RedisState
from gateway.triggers.state import MemoryTriggerState, RedisTriggerState


@pytest.fixture(params=["memory", "redis"])
async def trigger_state(request):
    if request.param == "memory":
        yield MemoryTriggerState()
        return
    redis = RedisState(
        RedisConfig(
            url=RedisUrl(request.getfixturevalue("redis_url")),
            prefix=request.getfixturevalue("redis_prefix"),
        )
    )
    await redis.open()
    yield RedisTriggerState(redis)
    await redis.close()


async def test_trigger_state_ids_leases_and_ticks(trigger_state):
    state = trigger_state
    assert await state.first_seen("w", "a", 10) and not await state.first_seen("w", "a", 10)
    await state.forget("w", "a")
    assert await state.first_seen("w", "a", 10)
    assert await state.first_seen("w", "short", 0.05)
    await asyncio.sleep(0.1)
    assert await state.first_seen("w", "short", 10)  # expired
    assert await state.acquire("l", "t1", 10) and not await state.acquire("l", "t2", 10)
    assert not await state.extend("l", "t2", 10) and await state.extend("l", "t1", 10)
    await state.release("l", "t2")
    assert not await state.acquire("l", "t2", 10)
    await state.release("l", "t1")
    assert await state.acquire("l", "t2", 10)
    assert await state.claim_tick("p", 5, "a", 10) == "ok"
    assert await state.claim_tick("p", 5, "b", 10) == "done"
    assert await state.claim_tick("p", 6, "b", 10) == "busy"
    assert await state.end_tick("p", 5, "a", False, max_skip=10) == 1
    assert await state.claim_tick("p", 7, "c", 10) == "ok"
    assert await state.end_tick("p", 7, "c", False, max_skip=10) == 2
    assert await state.claim_tick("p", 8, "d", 10) == "backoff"  # 2 failures: skip one tick
    assert await state.claim_tick("p", 9, "d", 10) == "ok"
    await state.end_tick("p", 9, "d", True, max_skip=10)
    assert await state.claim_tick("p", 10, "e", 10) == "ok"
    assert await state.get("cursor") is None
    await state.put("cursor", "42", 10)
    assert await state.get("cursor") == "42"
