"""The memory run store: run logs in this process, for a gateway that runs alone."""

from __future__ import annotations

import collections
import time
from collections.abc import AsyncGenerator

from gateway.errors import NotFound
from gateway.runs.log import Batch, Run, RunInfo, RunKey, RunStore


class MemoryRunStore(RunStore):
    """Finished runs stay replayable for ``ttl`` seconds, and at most ``max_kept`` of them (the
    oldest go first). The store holds the runs themselves: their logs are already in memory."""

    def __init__(self, ttl: float, max_kept: int = 10_000) -> None:
        self.ttl = ttl
        self.max_kept = max_kept
        self.runs: dict[RunKey, Run] = {}
        self._expiry: collections.deque[tuple[float, RunKey]] = collections.deque()

    def _purge(self) -> None:
        now = time.monotonic()
        expiry = self._expiry
        while expiry and (expiry[0][0] <= now or len(expiry) > self.max_kept):
            _, key = expiry.popleft()
            run = self.runs.get(key)
            if run is not None and run.done:
                del self.runs[key]

    async def reserve(self, run: Run) -> bool:
        self._purge()
        if run.key in self.runs:
            return False
        self.runs[run.key] = run
        return True

    async def release(self, run: Run) -> None:
        if self.runs.get(run.key) is run:
            del self.runs[run.key]

    async def finish(self, run: Run) -> None:
        self._expiry.append((time.monotonic() + self.ttl, run.key))
        self._purge()

    async def lookup(self, owner: str, run_id: str) -> RunInfo | None:
        self._purge()
        run = self.runs.get((owner, run_id))
        return None if run is None else RunInfo(run_id, owner, run.done)

    def follow(self, owner: str, run_id: str, after: int) -> AsyncGenerator[Batch, None]:
        run = self.runs.get((owner, run_id))
        if run is None:
            raise NotFound(f"No run '{run_id}' (finished runs are kept for {self.ttl:g}s).")
        return run.batches(after)
