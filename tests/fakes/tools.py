"""Tools the test agents use (imported by dotted path from configurations)."""

from __future__ import annotations

import asyncio
import time
from typing import Literal

from gateway.agents import ToolContext, tool

#: Calls seen by ``record``, for tests to inspect.
CALLS: list[tuple[str, str]] = []


async def get_weather(city: str, unit: Literal["C", "F"] = "C") -> dict[str, object]:
    """The current weather in a city.

    Args:
        city: The city's name.
        unit: Celsius or Fahrenheit.
    """
    await asyncio.sleep(0)
    return {"city": city, "temperature": 21 if unit == "C" else 70, "unit": unit}


def get_time(tz: str) -> str:
    """The time in a time zone (a sync tool: it runs in a worker thread).

    Args:
        tz: The time zone's name.
    """
    return f"12:00 {tz}"


def explode(reason: str) -> str:
    """A tool that always fails.

    Args:
        reason: What the error says.
    """
    raise ValueError(reason)


@tool(timeout=0.2)
async def slow(seconds: float) -> str:
    """Sleeps, with a 0.2 s timeout of its own.

    Args:
        seconds: How long to sleep.
    """
    await asyncio.sleep(seconds)
    return "slept"


def blocking(seconds: float) -> str:
    """A sync tool that blocks its thread.

    Args:
        seconds: How long to block.
    """
    time.sleep(seconds)
    return f"blocked {seconds}"


def tag(tag: str, context: ToolContext) -> str:
    """Echo a tag with the run it came from.

    Args:
        tag: Any text.
    """
    CALLS.append((tag, str(context.extra.get("runId", ""))))
    return f"{tag}@{context.extra.get('runId', context.agent)}"


#: Arrivals at ``meet``: each call waits until the other one has arrived, so two calls only
#: both succeed when the agent runs them at the same time.
ARRIVED: dict[str, asyncio.Event] = {}


async def meet(me: str, other: str) -> str:
    """Wait (up to 5 s) for the call of ``other``.

    Args:
        me: This call's name.
        other: The call to wait for.
    """
    ARRIVED.setdefault(me, asyncio.Event()).set()
    async with asyncio.timeout(5):
        await ARRIVED.setdefault(other, asyncio.Event()).wait()
    return f"{me} met {other}"


def step(n: int) -> str:
    """One step of a multi-round job; step 1 fails.

    Args:
        n: The step's number.
    """
    if n == 1:
        raise RuntimeError("step 1 is broken")
    return f"step {n} done"
