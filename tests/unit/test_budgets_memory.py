"""The memory budget counters: a reservation is taken on every counter or none, settlements add
to what was reserved, and expired periods are forgotten when too many are kept."""

from __future__ import annotations

from gateway.spend.budgets import MemoryBudgets, counters


def _periods(day: str, resets: float | None) -> dict[str, tuple[str, float | None, int]]:
    return {"day": (day, resets, 86400), "total": ("all", None, 0)}


async def test_memory_budgets_reserve_on_all_counters_or_none():
    now = _periods("2026-12-01", 2e9)
    key = counters("key", "vk-1", {"day": 10.0}, now)
    team = counters("team", "eng", {"total": 5.0}, now)
    both = key + team
    store = MemoryBudgets()
    assert await store.reserve("eng", both, 4_000_000) is None
    assert [await store.spent("eng", c) for c in both] == [4_000_000, 4_000_000]
    # The team's counter cannot take this one: neither counter takes it.
    assert await store.reserve("eng", both, 2_000_000) == 1
    assert [await store.spent("eng", c) for c in both] == [4_000_000, 4_000_000]
    # The key's counter alone can.
    assert await store.reserve("vk-1", key, 2_000_000) is None
    assert await store.spent("vk-1", key[0]) == 6_000_000
    await store.settle("eng", both, -1_000_000)
    assert [await store.spent("eng", c) for c in both] == [5_000_000, 3_000_000]
    # A counter spent to its limit refuses even a reservation of nothing.
    await store.settle("vk-1", key, 5_000_000)
    assert await store.reserve("vk-1", key, 0) == 0


async def test_memory_budgets_settle_makes_a_missing_counter():
    (day,) = counters("key", "vk-1", {"day": 1.0}, _periods("2026-12-01", 2e9))
    store = MemoryBudgets()
    await store.settle("vk-1", [day], 0)
    assert await store.spent("vk-1", day) == 0
    await store.settle("vk-1", [day], 300)
    assert await store.spent("vk-1", day) == 300
    assert await store.reserve("vk-1", [day], 1_000_000) == 0
    assert await store.reserve("vk-1", [day], 999_700) is None
    assert await store.spent("vk-1", day) == 1_000_000


async def test_memory_budgets_forget_expired_periods_past_their_bound():
    store = MemoryBudgets()
    store.MAX_KEPT = 2
    (old,) = counters("key", "vk-1", {"day": 1.0}, _periods("2020-01-01", 1.0))
    (total,) = counters("key", "vk-1", {"total": 1.0}, _periods("2020-01-01", 1.0))
    await store.settle("vk-1", [old], 5)
    await store.settle("vk-1", [total], 5)
    (today,) = counters("key", "vk-1", {"day": 1.0}, _periods("2026-12-01", 2e9))
    assert await store.reserve("vk-1", [today], 7) is None
    assert await store.spent("vk-1", old) == 0  # its period is over: forgotten
    assert await store.spent("vk-1", total) == 5  # all time never ends
    assert await store.spent("vk-1", today) == 7
