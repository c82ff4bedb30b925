"""The memory run store: run logs in this process, for a gateway that runs alone."""

from __future__ import annotations

import collections
import time
from collections.abc import AsyncGenerator

from gateway.errors import NotFound
from gateway.runs.log import Batch, Run, RunInfo, RunKey, RunStore


class MemoryRunStore(RunStore):
    """Finished runs stay replayable for ``ttl`` seconds, and at most ``max_kept`` of them, of
    at most ``max_bytes`` together and ``max_owner_bytes`` for one owner (0: no bound; the
    oldest go first). The store holds the runs themselves: their logs are already in memory."""

    def __init__(
        self, ttl: float, max_kept: int = 10_000, max_bytes: int = 0, max_owner_bytes: int = 0
    ) -> None:
        self.ttl = ttl
        self.max_kept = max_kept
        self.max_bytes = max_bytes
        self.max_owner_bytes = max_owner_bytes
        self.runs: dict[RunKey, Run] = {}
        self._expiry: collections.deque[tuple[float, RunKey]] = collections.deque()
        #: Bytes of the finished runs kept, in all and per owner.
        self.kept_bytes = 0
        self._owner_bytes: dict[str, int] = {}

    def _purge(self) -> None:
        now = time.monotonic()
        expiry = self._expiry
        while expiry and (
            expiry[0][0] <= now
            or len(expiry) > self.max_kept
            or (self.max_bytes and self.kept_bytes > self.max_bytes)
        ):
            _, key = expiry.popleft()
            self._forget(key)
        cap = self.max_owner_bytes
        if not cap:
            return
        owners = self._owner_bytes
        over = {owner for owner, size in owners.items() if size > cap}
        if not over:
            return
        # An owner over its share loses its own oldest runs, not anyone else's. The scan stops
        # once no owner is over (an owner that keeps starting runs finds its oldest in front).
        kept: list[tuple[float, RunKey]] = []
        while expiry and over:
            item = expiry.popleft()
            owner = item[1][0]
            if owner in over:
                self._forget(item[1])
                if owners.get(owner, 0) <= cap:
                    over.discard(owner)
            else:
                kept.append(item)
        expiry.extendleft(reversed(kept))

    def _forget(self, key: RunKey) -> None:
        run = self.runs.get(key)
        if run is not None and run.done:
            del self.runs[key]
            self.kept_bytes -= run.size
            left = self._owner_bytes.get(run.owner, 0) - run.size
            if left > 0:
                self._owner_bytes[run.owner] = left
            else:
                self._owner_bytes.pop(run.owner, None)

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
        if self.runs.get(run.key) is run:
            self.kept_bytes += run.size
            self._owner_bytes[run.owner] = self._owner_bytes.get(run.owner, 0) + run.size
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
