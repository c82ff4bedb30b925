"""Writing records off the request path: a bounded queue and one task that writes batches.

A request puts its record with :meth:`BatchWriter.add` and goes on; a task per process takes
what the queue holds, up to ``batch`` records at a time (waiting ``linger`` seconds, when it
has fewer, for more to come), and hands them to ``write``. When the
destination is slow or down the queue fills, and records that find it full are dropped and
counted, never held in memory without bound. What is queued when the app stops is written
then, for at most :data:`FLUSH_TIMEOUT` seconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Generic, TypeVar

import attrs

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Seconds the records still queued when the app stops may take to be written.
FLUSH_TIMEOUT = 10.0


@attrs.define
class BatchStats:
    """Records written, dropped (the queue was full) and failed (``write`` raised)."""

    written: int = 0
    dropped: int = 0
    failed: int = 0


class BatchWriter(Generic[T]):
    """``add`` records; ``run`` (an aiohttp ``cleanup_ctx``) writes them in batches."""

    def __init__(
        self,
        what: str,
        write: Callable[[list[T]], Awaitable[None]],
        size: int,
        batch: int,
        linger: float = 0.0,
    ) -> None:
        self.what = what
        #: Seconds the writer waits, once it has a record, for more to join its batch (fewer
        #: and larger writes: a transaction per record costs the database more than the row).
        self.linger = linger
        self.write = write
        #: Records waiting, at most ``size`` (a deque: adding one is an append, no queue's
        #: bookkeeping on every request's path).
        self.records: deque[T] = deque()
        self.size = size
        self.batch = batch
        self.stats = BatchStats()
        #: What the idle writer waits on; set by the first record that arrives.
        self._wakeup: asyncio.Future[None] | None = None

    def waiting(self) -> int:
        """Records queued and not yet taken by the writer."""
        return len(self.records)

    def add(self, record: T) -> None:
        """Queue one record; dropped and counted when the queue is full."""
        records = self.records
        if len(records) >= self.size:
            self.stats.dropped += 1
            return
        records.append(record)
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            if not wakeup.done():
                wakeup.set_result(None)

    async def run(self, app: web.Application) -> AsyncIterator[None]:
        """The writer, for the app's lifetime; what is queued at the end is written then."""
        task = asyncio.create_task(self._write_forever())
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            try:
                async with asyncio.timeout(FLUSH_TIMEOUT):
                    while self.records:
                        await self._write(self._take())
            except TimeoutError:
                left = len(self.records)
                self.records.clear()
                self.stats.dropped += left
                log.error("%s: %d records not written at shutdown (too slow)", self.what, left)

    def _take(self) -> list[T]:
        records = self.records
        if len(records) <= self.batch:
            taken = list(records)
            records.clear()
            return taken
        popleft = records.popleft
        return [popleft() for _ in range(self.batch)]

    async def _write_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self.records:
                self._wakeup = loop.create_future()
                await self._wakeup
            if self.linger and len(self.records) < self.batch:
                await asyncio.sleep(self.linger)
            await self._write(self._take())

    async def _write(self, records: list[T]) -> None:
        try:
            await self.write(records)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.stats.failed += len(records)
            log.error("%s: %d records not written: %s", self.what, len(records), exc)
        else:
            self.stats.written += len(records)
