"""Budgets in Redis, called directly: the calls of one turn of the event loop leave as one
pipeline, and each caller still gets its own answer, in order, with the limit held."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from support.services import RedisServer

from gateway.config.sections import RedisConfig, RedisUrl
from gateway.spend.budgets import RedisBudgets, counters, periods
from gateway.state.redis import RedisState


@pytest.fixture
async def state(redis_url: str, redis_prefix: str) -> Any:
    state = RedisState(RedisConfig(url=RedisUrl(redis_url), prefix=redis_prefix))
    await state.open()
    yield state
    await state.close()


class Counting:
    """Counts the pipelines a client runs (and the commands in each)."""

    def __init__(self, state: RedisState) -> None:
        self.sizes: list[int] = []
        client = state.client
        make = client.pipeline

        def pipeline(*args: Any, **kwargs: Any) -> Any:
            pipe = make(*args, **kwargs)
            execute = pipe.execute

            async def counted(*a: Any, **k: Any) -> Any:
                self.sizes.append(len(pipe.command_stack))
                return await execute(*a, **k)

            pipe.execute = counted
            return pipe

        client.pipeline = pipeline  # type: ignore[method-assign]


async def test_concurrent_reservations_share_pipelines_and_hold_the_limit(state):
    pipelines = Counting(state)
    budgets = RedisBudgets(state)
    day = counters("key", "k1", {"day": 1.0}, periods(time.time()))
    # Five at once of 0.3 on a budget of 1.0: three fit, two are refused (by counter 0).
    results = await asyncio.gather(*(budgets.reserve("k1", day, 300_000) for _ in range(5)))
    assert sorted(results, key=str) == [0, 0, None, None, None]
    assert await budgets.spent("k1", day[0]) == 900_000
    # The counter was missing: all five found so at once, in one pipeline (then made it once,
    # and asked again).
    assert pipelines.sizes[0] == 5
    # Settlements made together, each applied once.
    before = len(pipelines.sizes)
    await asyncio.gather(*(budgets.settle("k1", day, -100_000) for _ in range(3)))
    assert pipelines.sizes[before:] == [3]
    assert await budgets.spent("k1", day[0]) == 600_000
    # One at a time: no pipeline, the same answers.
    assert await budgets.reserve("k1", day, 400_000) is None
    assert await budgets.reserve("k1", day, 1) == 0
    assert pipelines.sizes[before:] == [3]
    assert await budgets.spent("k1", day[0]) == 1_000_000


@pytest.fixture
async def own_state() -> Any:
    """A Redis of this test's own: its scripts are flushed, which the shared one's never are."""
    server = RedisServer()
    server.start()
    state = RedisState(RedisConfig(url=RedisUrl(server.url)))
    await state.open()
    try:
        yield state
    finally:
        await state.close()
        server.stop()


async def test_a_pipeline_after_redis_lost_its_scripts(own_state):
    budgets = RedisBudgets(own_state)
    day = counters("key", "k2", {"day": 1.0}, periods(time.time()))
    assert await budgets.reserve("k2", day, 100_000) is None
    await own_state.client.script_flush()  # as a restarted Redis: the scripts are gone
    results = await asyncio.gather(*(budgets.reserve("k2", day, 100_000) for _ in range(3)))
    assert results == [None, None, None]
    await own_state.client.script_flush()
    await asyncio.gather(*(budgets.settle("k2", day, -50_000) for _ in range(4)))
    assert await budgets.spent("k2", day[0]) == 4 * 100_000 - 4 * 50_000
