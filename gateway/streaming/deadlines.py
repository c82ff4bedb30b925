"""Many deadlines on one event-loop timer.

An open stream waits on two deadlines at once: its upstream's silence (the read timeout) and
its client's next keep-alive ping or send timeout. An event-loop timer costs about 500 bytes
while it is pending, which ten thousand idle streams feel, and arming and cancelling one for
every upstream read is work on the hot path. :class:`Deadlines` keeps deadlines in buckets of
:data:`GRAIN` seconds under a single timer instead: adding or dropping one is a set operation,
and a deadline is met at most :data:`GRAIN` late, or a sixteenth of the time to it when that is
longer (never early): far deadlines share coarser buckets, so that a busy gateway whose reads
keep setting deadlines a minute ahead keeps a few hundred buckets, not one per 20 ms.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import weakref
from typing import Protocol

log = logging.getLogger(__name__)

#: Seconds per bucket: how late a near deadline may be met.
GRAIN = 0.02
#: Past this many seconds ahead, a deadline's bucket is a power of two of grains, at most a
#: sixteenth of the time to it.
_FINE = 16 * GRAIN


class Expiring(Protocol):
    """What waits on a deadline: called once when it passes (unless dropped before)."""

    def expired(self) -> None: ...


class Deadlines:
    """The deadlines of one event loop (see :func:`deadlines`)."""

    __slots__ = ("__weakref__", "_armed", "_buckets", "_due", "_loop", "_timer")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        #: Bucket number (its time over GRAIN, rounded up) -> what expires then.
        self._buckets: dict[int, set[Expiring]] = {}
        #: The buckets' numbers, soonest first (a heap).
        self._due: list[int] = []
        self._timer: asyncio.TimerHandle | None = None
        self._armed = 0

    def add(self, when: float, item: Expiring) -> int:
        """Call ``item.expired()`` once the loop's time reaches ``when``; returns the bucket to
        give :meth:`discard`."""
        n = math.ceil(when / GRAIN)
        ahead = when - self._loop.time()
        if ahead > _FINE:
            step = 1 << (int(ahead / _FINE).bit_length() - 1)
            n = -(-n // step) * step
        bucket = self._buckets.get(n)
        if bucket is None:
            bucket = self._buckets[n] = set()
            heapq.heappush(self._due, n)
            if self._timer is None or n < self._armed:
                self._arm(n)
        bucket.add(item)
        return n

    def discard(self, n: int, item: Expiring) -> None:
        """Drop ``item``'s deadline in bucket ``n`` (nothing if it passed already)."""
        bucket = self._buckets.get(n)
        if bucket is not None:
            bucket.discard(item)

    def __len__(self) -> int:
        """Deadlines pending."""
        return sum(len(b) for b in self._buckets.values())

    def _arm(self, n: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed = n
        self._timer = self._loop.call_at(n * GRAIN, self._fire)

    def _fire(self) -> None:
        self._timer = None
        # An event loop may run a timer up to its clock resolution early.
        now = self._loop.time() + 0.001
        due, buckets = self._due, self._buckets
        while due and due[0] * GRAIN <= now:
            bucket = buckets.pop(heapq.heappop(due), None)
            for item in bucket or ():
                try:
                    item.expired()
                except Exception:
                    log.exception("a deadline's callback failed")
        if due:
            self._arm(due[0])


_LOOPS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Deadlines] = (
    weakref.WeakKeyDictionary()
)


#: The deadlines last asked for (a process runs one loop: found without the weak map).
_last: Deadlines | None = None


def deadlines(loop: asyncio.AbstractEventLoop | None = None) -> Deadlines:
    """The deadlines of ``loop`` (the running loop by default)."""
    global _last
    if loop is None:
        loop = asyncio.get_running_loop()
    last = _last
    if last is not None and last._loop is loop:
        return last
    found = _LOOPS.get(loop)
    if found is None:
        found = _LOOPS[loop] = Deadlines(loop)
    _last = found
    return found
