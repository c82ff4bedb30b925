"""The memory run store: finished runs kept for their TTL, the oldest forgotten first."""

from __future__ import annotations

from gateway.runs import MemoryRunStore, Run, RunInfo


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
