"""The memory run store: finished runs kept for their TTL and within their bytes, the oldest
forgotten first; and the slots that bound what is in progress."""

from __future__ import annotations

import tracemalloc

import orjson
import pytest

from gateway import RateLimited, Unavailable
from gateway.limits.concurrency import Slots
from gateway.runs import MemoryRunStore, Run, RunInfo
from gateway.runs.log import EVENT_OVERHEAD


async def test_memory_store_forgets_the_oldest_finished_runs():
    store = MemoryRunStore(ttl=60, max_kept=2)
    runs = [Run(f"r{i}", "t", "owner") for i in range(3)]
    for run in runs:
        assert await store.reserve(run)
        run.close()
        await store.finish(run)
    assert await store.lookup("owner", "r0") is None
    assert (await store.lookup("owner", "r2")) == RunInfo("r2", "owner", True)
    assert not await store.reserve(Run("r1", "t", "owner"))  # ids stay taken while kept
    assert await store.reserve(Run("r1", "t", "another key"))  # ids are per key
    expired = MemoryRunStore(ttl=0)
    assert await expired.reserve(runs[0])
    await expired.finish(runs[0])
    assert await expired.lookup("owner", "r0") is None


async def _kept(store: MemoryRunStore, owner: str, run_id: str, size: int) -> Run:
    run = Run(run_id, "t", owner)
    assert await store.reserve(run)
    run.append(b"x" * (size - EVENT_OVERHEAD))
    run.close()
    await store.finish(run)
    return run


async def test_memory_store_bounds_the_bytes_it_keeps_in_all_and_per_key():
    store = MemoryRunStore(ttl=60, max_bytes=3000, max_owner_bytes=1500)
    await _kept(store, "a", "a1", 1000)
    await _kept(store, "b", "b1", 1000)
    await _kept(store, "a", "a2", 1000)  # a holds 2000 > 1500: its own oldest goes
    assert await store.lookup("a", "a1") is None
    assert await store.lookup("b", "b1") is not None and await store.lookup("a", "a2")
    assert store.kept_bytes == 2000
    await _kept(store, "c", "c1", 1000)
    await _kept(store, "d", "d1", 1000)  # 4000 > 3000 in all: the oldest of anyone goes
    assert await store.lookup("b", "b1") is None
    assert store.kept_bytes == 3000


async def test_a_kept_event_costs_about_its_length():
    # orjson hands back even a short JSON in a buffer of 4 KB or more: a log of ten thousand
    # kept runs of fifty events each would hold gigabytes where it counts megabytes.
    events = [
        {"type": "TEXT_MESSAGE_CONTENT", "messageId": "m1", "delta": f"w{i}"} for i in range(200)
    ]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        run = Run("r", "t", "owner")
        for event in events:
            run.append(orjson.dumps(event))
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(run.events) == 200
    assert held < 2 * run.size, (held, run.size)


async def test_memory_store_purges_an_owner_over_its_share_from_its_oldest_run():
    store = MemoryRunStore(ttl=60, max_owner_bytes=2500)
    await _kept(store, "b", "b1", 1000)
    for i in range(50):
        await _kept(store, "a", f"a{i}", 1000)
    kept = [key for _, key in store._expiry]
    assert kept == [("b", "b1"), ("a", "a48"), ("a", "a49")]
    assert store.kept_bytes == 3000 and store._owner_bytes == {"a": 2000, "b": 1000}


def test_slots_bound_per_key_and_in_all():
    slots = Slots("streams", per_key=2, total=3)
    slots.take("a", "a")
    slots.take("a", "a")
    with pytest.raises(RateLimited) as over:
        slots.take("a", "a")
    assert over.value.retry_after == 1.0 and over.value.code == "concurrency_limit_exceeded"
    slots.take("b", "b")
    with pytest.raises(Unavailable):
        slots.take("c", "c")
    slots.give("a")
    slots.take("c", "c")
    assert slots.count == 3 and slots.by_owner == {"a": 1, "b": 1, "c": 1}
