"""Pollers: ticks on a schedule, agent runs from them, backoff after failures, no overlap, and
each tick exactly once across instances sharing one Redis (in process and as real processes)."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import Any

import pytest
import redis as sync_redis
from fakes.triggers import metric, run_events, text_of, until, until_metric
from support import TESTS
from support.processes import gateway_process
from support.waiting import wait_until

from gateway.triggers import PollerManager


async def test_python_poller_ticks(make_gateway):
    pollers = PollerManager()
    ticks: list[dict[str, Any]] = []

    @pollers.every(seconds=0.1)
    async def heartbeat(event):
        ticks.append(event.payload)

    client = await make_gateway({}, plugins=[pollers])
    await until(lambda: len(ticks) >= 3)
    assert {t["poller"] for t in ticks} == {"heartbeat"}
    numbers = [t["tick"] for t in ticks]
    assert numbers == sorted(set(numbers))
    assert ticks[0]["scheduled"] == pytest.approx(numbers[0] * 0.1)
    assert (
        await metric(client, "hookgate_poller_ticks_total", poller="heartbeat", outcome="run") >= 3
    )


async def test_toml_poller_runs_an_agent_from_what_its_call_returns(make_gateway):
    from fakes import triggers

    triggers.CALLS.clear()
    cfg = {
        "pollers": {
            "digest": {
                "every": "100ms",
                "call": "fakes.triggers:record",
                "agent": "echo",
                "prompt": "Summarise tick {tick}",
            }
        }
    }
    client = await make_gateway(cfg)
    await until(lambda: triggers.CALLS)
    payload, headers = triggers.CALLS[0]
    assert payload["poller"] == "digest" and headers == {}
    # record() returns None: no run; a poller whose call returns items runs the agent per item
    pollers = PollerManager()
    ticks: list[int] = []

    @pollers.every(seconds=0.1, agent="echo", prompt="Item {id}")
    def items(event):
        ticks.append(event.payload["tick"])
        return [{"id": f"{event.payload['tick']}-a"}, {"id": f"{event.payload['tick']}-b"}]

    client = await make_gateway({}, plugins=[pollers])
    await until(lambda: ticks)
    tick = ticks[0]
    # the runs are named after the poller, the tick and the item
    assert text_of(await run_events(client, f"items-{tick}-0")) == f"Item {tick}-a"
    assert text_of(await run_events(client, f"items-{tick}-1")) == f"Item {tick}-b"
    await until_metric(
        client, "hookgate_trigger_jobs_total", 1, trigger="poller:items", outcome="ok"
    )


async def test_failures_back_off(make_gateway):
    pollers = PollerManager()
    attempts: list[int] = []

    @pollers.every(seconds=0.1, max_backoff=10)
    def flaky(event):
        attempts.append(event.payload["tick"])
        raise RuntimeError("the source is down")

    client = await make_gateway({}, plugins=[pollers])
    await until(lambda: len(attempts) >= 4, within=30)
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    # after k failures in a row, at least 2**(k-1) ticks pass before the next try
    assert all(gap >= 2**k for k, gap in enumerate(gaps[:3])), attempts
    assert (
        await metric(client, "hookgate_poller_ticks_total", poller="flaky", outcome="backoff") >= 1
    )
    await until_metric(
        client,
        "hookgate_trigger_jobs_total",
        4,
        at_least=True,
        trigger="poller:flaky",
        outcome="failed",
    )


@pytest.mark.parametrize("instances", [1, 2])
async def test_slow_ticks_never_overlap_and_run_once(
    make_gateway, redis_url, redis_prefix, instances
):
    runs: list[tuple[int, float, float]] = []

    def slow_poller() -> PollerManager:
        pollers = PollerManager()

        @pollers.every(seconds=0.1, name="slow")
        async def slow(event):
            start = time.monotonic()
            await asyncio.sleep(0.25)
            runs.append((event.payload["tick"], start, time.monotonic()))

        return pollers

    shared = {"redis": {"url": redis_url, "prefix": redis_prefix}}
    clients = [await make_gateway(shared, plugins=[slow_poller()]) for _ in range(instances)]
    await until(lambda: len(runs) >= 4, within=15)
    ticks = [r[0] for r in runs]
    assert len(ticks) == len(set(ticks)), runs
    ordered = sorted(runs, key=lambda r: r[1])
    for earlier, later in itertools.pairwise(ordered):
        assert later[1] >= earlier[2], f"ticks overlapped: {earlier} {later}"
    busy = [
        await metric(c, "hookgate_poller_ticks_total", poller="slow", outcome="busy")
        for c in clients
    ]
    assert sum(busy) >= 1


def test_each_tick_fires_once_across_two_gateway_processes(tmp_path: Path, redis_url, redis_prefix):
    key = f"{redis_prefix}ticks"
    config = tmp_path / "hookgate.toml"
    config.write_text(
        f"""
[redis]
url = "{redis_url}"
prefix = "{redis_prefix}"

[pollers.tick]
every = "200ms"
call = "fakes.triggers:record_tick"
"""
    )
    env = {
        "PYTHONPATH": str(TESTS),
        "TRIGGER_TEST_KEY": key,
        "TRIGGER_TEST_REDIS": redis_url,
        "TRIGGER_TEST_SLEEP": "0.05",
    }
    client = sync_redis.Redis.from_url(redis_url)
    try:
        with (
            gateway_process("serve", "--config", str(config), env=env) as one,
            gateway_process("serve", "--config", str(config), env=env) as two,
        ):
            wait_until(
                lambda: client.llen(key) >= 8,
                30,
                "8 ticks recorded",
                lambda: one.describe() + "\n" + two.describe(),
            )
        entries = [e.decode().split() for e in client.lrange(key, 0, -1)]
    finally:
        client.close()
    assert one.returncode == 0 and two.returncode == 0, one.output + two.output
    ticks = [int(e[1]) for e in entries]
    assert len(ticks) >= 8, (entries, one.output, two.output)
    assert len(ticks) == len(set(ticks)), f"a tick fired twice: {entries}"
    pids = {e[0] for e in entries}
    assert pids <= {str(one.proc.pid), str(two.proc.pid)}
