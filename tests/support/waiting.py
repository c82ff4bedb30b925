"""Waiting for a condition with a deadline: the one place tests pause, briefly, between looks.

A test never sleeps to let something happen; it waits for the state it needs (an event, a log
line, a metric, a row in Redis) and fails with a description of what never came.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

#: Seconds between two looks at a condition.
PAUSE = 0.02


def wait_until(
    check: Callable[[], Any],
    within: float = 30.0,
    what: str = "",
    context: Callable[[], str] | None = None,
    pause: float = PAUSE,
) -> Any:
    """Call ``check`` until it returns something true (returned); fail at the deadline, with
    ``what`` and ``context()`` (for example a process's output) in the message. ``pause``:
    seconds between looks."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            more = f"\n{context()}" if context is not None else ""
            raise AssertionError(f"not true within {within}s: {what or check}{more}")
        time.sleep(pause)


async def until(check: Callable[[], Any], within: float = 10.0, what: str = "") -> Any:
    """Poll ``check`` (sync or async) until it returns something true; fail at the deadline."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {within}s: {what or check}")
        await asyncio.sleep(PAUSE)


async def stops_when_cancelled(task: asyncio.Task[Any], within: float = 5.0) -> bool:
    """Cancel ``task`` and wait for it (without cancelling it again) up to ``within`` seconds:
    whether it ended then. One that went on (it swallowed the cancellation) is cancelled again
    until it ends, so a failing test leaves no task behind."""
    task.cancel()
    await asyncio.wait({task}, timeout=within)
    if task.done():
        return True
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=PAUSE)
    return False
