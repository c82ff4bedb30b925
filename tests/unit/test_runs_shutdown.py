"""Runs produced in the background, at the application's shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

from gateway.canonical import Event
from gateway.errors import GatewayError
from gateway.runs import MemoryRunStore, Run
from gateway.runs.manager import Runs


class Lines:
    """A translator that writes one line per event."""

    done = False

    def start(self) -> list[Any]:
        return ["start"]

    def add(self, ev: Event) -> list[Any]:
        return [type(ev).__name__]

    def failed(self, err: GatewayError) -> list[Any]:
        self.done = True
        return ["failed"]

    def cancelled(self) -> list[Any]:
        self.done = True
        return ["cancelled"]


class SlowStore(MemoryRunStore):
    """Tells when a run's end is being recorded, and records it once let go."""

    def __init__(self) -> None:
        super().__init__(ttl=60)
        self.recording = asyncio.Event()
        self.go = asyncio.Event()
        self.recorded: list[str] = []

    async def finish(self, run: Run) -> None:
        self.recording.set()
        await self.go.wait()
        await super().finish(run)
        self.recorded.append(run.run_id)


async def _nothing() -> AsyncGenerator[Event, None]:
    return
    yield


async def test_shutdown_waits_for_a_run_still_recording_its_end():
    # A run that ended leaves the active runs before it tells the store; a shutdown then must
    # still wait for it, or it goes on using the store (a Redis client) after it is closed.
    store = SlowStore()
    runs = Runs(store, max_events=100, streams=set())
    run = Run("r1", "t", "owner")
    assert await store.reserve(run)
    runs.launch(run, Lines(), None, _nothing())
    await store.recording.wait()
    assert run.key not in runs.active
    closing = asyncio.create_task(runs.shutdown())
    await asyncio.sleep(0)  # one turn of the loop: shutdown runs up to its first wait
    assert not closing.done()
    store.go.set()
    await closing
    assert store.recorded == ["r1"]
