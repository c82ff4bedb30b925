"""A run's event log on the instance that produces it, and what a run store is."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable

import attrs

Batch = tuple[int, list[bytes]]
"""Consecutive events of a run: the number of the first, and the events' JSON."""

RunKey = tuple[str, str]
"""A run's name: the owner's principal id and the client's run id."""

#: What keeping one event costs besides its JSON (a bytes object and its place in the list).
EVENT_OVERHEAD = 48
_TERMINAL = (b'{"type":"RUN_FINISHED"', b'{"type":"RUN_ERROR"')


def is_terminal(data: bytes) -> bool:
    """Whether an event's JSON is the run's last event (RUN_FINISHED or RUN_ERROR)."""
    return data.startswith(_TERMINAL)


class Run:
    """One run's log on the instance that produces it."""

    __slots__ = (
        "_changed",
        "cancel_requested",
        "done",
        "events",
        "owner",
        "run_id",
        "size",
        "task",
        "thread_id",
    )

    def __init__(self, run_id: str, thread_id: str, owner: str) -> None:
        self.run_id = run_id
        self.thread_id = thread_id
        #: The principal id that started the run; only it may attach or cancel.
        self.owner = owner
        self.events: list[bytes] = []
        #: The bytes the log holds (its events' JSON and what keeping each costs).
        self.size = 0
        self.done = False
        self.cancel_requested = False
        self.task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    @property
    def key(self) -> RunKey:
        return self.owner, self.run_id

    def append(self, data: bytes) -> None:
        # Kept in a bytes object of its own length: orjson hands its output back in a buffer
        # of at least 4 KB whatever the length, which a kept log would hold per event.
        data = bytes(memoryview(data))
        self.events.append(data)
        self.size += len(data) + EVENT_OVERHEAD
        self._changed.set()
        self._changed.clear()  # the waiters already woke; the next append wakes them again

    def close(self) -> None:
        self.done = True
        self._changed.set()

    async def changed(self, within: float | None = None) -> None:
        """Wait for the next event or the end (at most ``within`` seconds)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await self._changed.wait()

    async def batches(self, after: int = 0) -> AsyncGenerator[Batch, None]:
        """The events numbered above ``after``, in batches as they come, until the last one."""
        pos = max(0, after)
        while True:
            if pos < len(self.events):
                batch = self.events[pos:]
                yield pos + 1, batch
                pos += len(batch)
            elif self.done:
                return
            else:
                await self._changed.wait()


@attrs.frozen
class RunInfo:
    """What any instance can learn about a run from the store."""

    run_id: str
    owner: str
    done: bool


class RunStore:
    """Where run logs live. Subclasses: :class:`~gateway.runs.MemoryRunStore` and
    :class:`~gateway.runs.redis.RedisRunStore`."""

    #: Called with ``(owner, run_id)`` when another instance asks to stop a run produced here.
    on_cancel: Callable[[str, str], object] | None = None

    async def start(self) -> None:
        """Open connections (application startup)."""

    async def close(self) -> None:
        """Release them (application shutdown), after every run has ended."""

    async def reserve(self, run: Run) -> bool:
        """Claim the run's name; ``False`` when that owner has a run with that id (or had one
        recently enough to replay it)."""
        raise NotImplementedError

    async def release(self, run: Run) -> None:
        """Forget a run that failed before it started."""
        raise NotImplementedError

    def record(self, run: Run) -> None:
        """Start keeping the run's events as it appends them."""

    async def finish(self, run: Run) -> None:
        """The run ended: once its whole log is kept, keep it for the store's TTL."""
        raise NotImplementedError

    async def lookup(self, owner: str, run_id: str) -> RunInfo | None:
        raise NotImplementedError

    def follow(self, owner: str, run_id: str, after: int) -> AsyncGenerator[Batch, None]:
        """Replay the run's events after number ``after``, then follow it to its end."""
        raise NotImplementedError

    async def request_cancel(self, owner: str, run_id: str) -> None:
        """Ask the instance that produces the run to cancel it."""
