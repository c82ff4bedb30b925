"""Runs that outlive their connection: produced once, followed by any number of clients.

An AG-UI run is produced by one background task on the instance that started it. Its events
are numbered from 1 and appended to the run's log; every client that follows the run (the one
that started it, others that attach later, one that reconnects with ``Last-Event-ID``) reads
that log from its own position, at its own pace. No client ever holds up the run or another
client, and no client costs a copy of the events: a slow reader just lags behind in the log.

The log lives in a :class:`RunStore`. :class:`MemoryRunStore` keeps it in this process (one
instance); a shared store (Redis) lets a client attach, resume and cancel through any instance.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import orjson

from gateway.canonical import Event
from gateway.errors import GatewayError, NotFound, Unavailable
from gateway.formats.agui import EventTranslator

log = logging.getLogger(__name__)

Batch = tuple[int, list[bytes]]
"""Consecutive events of a run: the number of the first, and the events' JSON."""


class Run:
    """One run's log on the instance that produces it."""

    __slots__ = (
        "_changed",
        "cancel_requested",
        "done",
        "events",
        "owner",
        "run_id",
        "task",
        "thread_id",
    )

    def __init__(self, run_id: str, thread_id: str, owner: str) -> None:
        self.run_id = run_id
        self.thread_id = thread_id
        #: The principal id that started the run; only it may attach or cancel.
        self.owner = owner
        self.events: list[bytes] = []
        self.done = False
        self.cancel_requested = False
        self.task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    def append(self, data: bytes) -> None:
        self.events.append(data)
        self._changed.set()
        self._changed.clear()  # the waiters already woke; the next append wakes them again

    def close(self) -> None:
        self.done = True
        self._changed.set()

    async def batches(self, after: int = 0) -> AsyncIterator[Batch]:
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
    """Where run logs live. Subclasses: :class:`MemoryRunStore`, and shared stores."""

    #: Called with a run id when another instance asks for one of this instance's runs to stop.
    on_cancel: Callable[[str], None] | None = None

    async def start(self) -> None:
        """Open connections (application startup)."""

    async def close(self) -> None:
        """Release them (application shutdown), after every run has ended."""

    async def reserve(self, run: Run) -> bool:
        """Claim the run's id; ``False`` when a run with that id exists (or recently existed)."""
        raise NotImplementedError

    async def release(self, run: Run) -> None:
        """Forget a run that failed before it started."""
        raise NotImplementedError

    def record(self, run: Run) -> None:
        """Start keeping the run's events as it appends them."""

    async def finish(self, run: Run) -> None:
        """The run ended: its log is complete, and kept for the store's TTL."""
        raise NotImplementedError

    async def lookup(self, run_id: str) -> RunInfo | None:
        raise NotImplementedError

    def follow(self, run_id: str, after: int) -> AsyncIterator[Batch]:
        """Replay the run's events after number ``after``, then follow it to its end."""
        raise NotImplementedError

    async def request_cancel(self, run_id: str) -> None:
        """Ask the instance that produces ``run_id`` to cancel it."""


class MemoryRunStore(RunStore):
    """Run logs in this process: finished runs stay replayable for ``ttl`` seconds, and at most
    ``max_kept`` of them (the oldest go first)."""

    def __init__(self, ttl: float, max_kept: int = 10_000) -> None:
        self.ttl = ttl
        self.max_kept = max_kept
        self.runs: dict[str, Run] = {}
        self._expiry: collections.deque[tuple[float, str]] = collections.deque()

    def _purge(self) -> None:
        now = time.monotonic()
        while self._expiry and (self._expiry[0][0] <= now or len(self._expiry) > self.max_kept):
            _, run_id = self._expiry.popleft()
            run = self.runs.get(run_id)
            if run is not None and run.done:
                del self.runs[run_id]

    async def reserve(self, run: Run) -> bool:
        self._purge()
        if run.run_id in self.runs:
            return False
        self.runs[run.run_id] = run
        return True

    async def release(self, run: Run) -> None:
        if self.runs.get(run.run_id) is run:
            del self.runs[run.run_id]

    async def finish(self, run: Run) -> None:
        self._expiry.append((time.monotonic() + self.ttl, run.run_id))
        self._purge()

    async def lookup(self, run_id: str) -> RunInfo | None:
        self._purge()
        run = self.runs.get(run_id)
        return None if run is None else RunInfo(run_id, run.owner, run.done)

    def follow(self, run_id: str, after: int) -> AsyncIterator[Batch]:
        run = self.runs.get(run_id)
        if run is None:
            raise NotFound(f"No run '{run_id}' (finished runs are kept for {self.ttl:g}s).")
        return run.batches(after)


class Runs:
    """The runs this instance produces, and the way to every run's log."""

    def __init__(
        self, store: RunStore, *, max_events: int, streams: set[asyncio.Task[Any]]
    ) -> None:
        self.store = store
        self.max_events = max_events
        #: Runs being produced here, by id.
        self.active: dict[str, Run] = {}
        #: The gateway's set of streaming tasks: a drain that runs out of time cancels them.
        self.streams = streams
        store.on_cancel = self.cancel_local

    def launch(
        self,
        run: Run,
        translator: EventTranslator,
        first: Event,
        events: AsyncIterator[Event],
    ) -> None:
        """Produce the run in the background, starting with the already-received ``first``."""
        self.active[run.run_id] = run
        self.store.record(run)
        run.task = asyncio.create_task(self._produce(run, translator, first, events))
        self.streams.add(run.task)

    async def _produce(
        self, run: Run, translator: EventTranslator, first: Event, events: AsyncIterator[Event]
    ) -> None:
        dumps = orjson.dumps
        try:
            for out in translator.start():
                run.append(dumps(out))
            ev: Event | None = first
            while ev is not None:
                for out in translator.add(ev):
                    run.append(dumps(out))
                if translator.done:
                    break
                if len(run.events) >= self.max_events:
                    err = GatewayError(
                        f"the run produced more than {self.max_events} events",
                        code="too_many_events",
                    )
                    for out in translator.failed(err):
                        run.append(dumps(out))
                    break
                ev = await anext(events, None)  # type: ignore[call-overload]
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # the run ends normally, with its terminal event
            if run.cancel_requested:
                ending = translator.cancelled()
            else:
                ending = translator.failed(
                    Unavailable("the gateway is shutting down; the run was stopped")
                )
            for out in ending:
                run.append(dumps(out))
        except Exception:
            log.exception("run %s failed", run.run_id)
            for out in translator.failed(GatewayError("the run failed inside the gateway")):
                run.append(dumps(out))
        finally:
            try:
                await events.aclose()  # type: ignore[attr-defined]
            except Exception:
                log.exception("closing the events of run %s failed", run.run_id)
            if not translator.done:
                for out in translator.failed(GatewayError("the run ended without finishing")):
                    run.append(dumps(out))
            run.close()
            self.active.pop(run.run_id, None)
            if run.task is not None:
                self.streams.discard(run.task)
            try:
                await self.store.finish(run)
            except Exception:
                log.exception("storing the end of run %s failed", run.run_id)

    def follow(self, run_id: str, after: int) -> AsyncIterator[Batch]:
        """A run's events after number ``after``: from this instance when it produces the run,
        from the store otherwise."""
        run = self.active.get(run_id)
        if run is not None:
            return run.batches(after)
        return self.store.follow(run_id, after)

    def cancel_local(self, run_id: str) -> bool:
        """Cancel a run produced here (its upstream request is cancelled with it)."""
        run = self.active.get(run_id)
        if run is None or run.task is None or run.done:
            return False
        run.cancel_requested = True
        run.task.cancel()
        return True

    async def cancel(self, run_id: str) -> None:
        """Cancel a run wherever it is produced."""
        if not self.cancel_local(run_id):
            await self.store.request_cancel(run_id)

    async def shutdown(self) -> None:
        """Stop every run still going (application shutdown) and let each record its end."""
        tasks = [run.task for run in self.active.values() if run.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
