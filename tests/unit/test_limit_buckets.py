"""The memory token buckets: they refill at the limit's pace, carry token debt, and say what is
left."""

from __future__ import annotations

import pytest

from gateway.limits.buckets import MemoryBuckets


async def test_memory_buckets_refill_at_the_limit_pace():
    now = [1000.0]
    buckets = MemoryBuckets(clock=lambda: now[0])
    first = [(await buckets.acquire("k", 2, 0))[:2] for _ in range(3)]
    assert first[:2] == [(0.0, None)] * 2
    wait, limit, left, _ = await buckets.acquire("k", 2, 0)
    assert limit == "requests" and wait == pytest.approx(30.0) and left == pytest.approx(0.0)
    now[0] += 30.0
    assert (await buckets.acquire("k", 2, 0))[:3] == (0.0, None, pytest.approx(0.0))
    await buckets.spend("k", 60, 120)  # 60 tokens of debt
    wait, limit, _, tokens = await buckets.acquire("k", 0, 60)
    assert limit == "tokens" and wait == pytest.approx(61.0) and tokens == pytest.approx(-60.0)
    assert await buckets.acquire("other", 2, 60) == (0.0, None, 1.0, 60.0)
