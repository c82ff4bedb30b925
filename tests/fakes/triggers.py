"""Helpers for the trigger tests: reading metrics, following runs, and handlers a configuration
can name (``call = "fakes.triggers:record"``). ``until`` is :func:`support.waiting.until`."""

from __future__ import annotations

import asyncio
import os
import re
import time
from typing import Any

import orjson
import redis as sync_redis
from aiohttp.test_utils import TestClient
from support.waiting import until

from gateway.streaming.sse import SSEDecoder

#: What ``record`` received, for tests that name it in TOML.
CALLS: list[tuple[Any, dict[str, str]]] = []


def record(payload: Any, headers: dict[str, str]) -> None:
    CALLS.append((payload, headers))


def explode(payload: Any) -> None:
    raise RuntimeError("the handler exploded")


def record_tick(event: Any) -> None:
    """A poller handler for gateway processes: RPUSH "<pid> <tick> <start> <end>" to the Redis
    list named by $TRIGGER_TEST_KEY, after sleeping $TRIGGER_TEST_SLEEP seconds."""
    start = time.time()
    time.sleep(float(os.environ.get("TRIGGER_TEST_SLEEP", "0")))
    client = sync_redis.Redis.from_url(os.environ["TRIGGER_TEST_REDIS"])
    try:
        client.rpush(
            os.environ["TRIGGER_TEST_KEY"],
            f"{os.getpid()} {event.payload['tick']} {start} {time.time()}",
        )
    finally:
        client.close()


async def metric(client: TestClient, name: str, **labels: str) -> float:
    """The value of one sample of ``/metrics`` (0 when absent)."""
    text = await (await client.get("/metrics")).text()
    for line in text.splitlines():
        m = re.match(r"([a-z_]+)(\{[^}]*\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(m.group(3))
    return 0.0


async def until_metric(
    client: TestClient,
    name: str,
    expected: float,
    within: float = 10.0,
    at_least: bool = False,
    **labels: str,
) -> None:
    """Wait until a ``/metrics`` sample is ``expected`` (or, ``at_least``, no less)."""

    async def check() -> bool:
        value = await metric(client, name, **labels)
        return value >= expected if at_least else value == expected

    await until(check, within, f"{name}{labels} == {expected}")


async def run_events(
    client: TestClient, run_id: str, headers: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Attach to an AG-UI run (waiting for it to exist) and read it to its end."""
    deadline = time.monotonic() + 10
    while True:
        resp = await client.get("/agui/ws", params={"run_id": run_id}, headers=headers)
        if resp.status != 404 or time.monotonic() > deadline:
            break
        resp.release()
        await asyncio.sleep(0.02)
    assert resp.status == 200, await resp.text()
    decoder = SSEDecoder()
    events = []
    async for chunk in resp.content.iter_any():
        events += [orjson.loads(f.data) for f in decoder.feed(chunk)]
    return events


def text_of(events: list[dict[str, Any]]) -> str:
    return "".join(e.get("delta", "") for e in events if e["type"] == "TEXT_MESSAGE_CONTENT")
