"""Budgets and rate limits in Redis, called directly: the calls of one turn of the event loop
leave as one pipeline, and each caller still gets its own answer, in order, with the limit
held; the state's commands packed by hiredis."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import pytest
from support.services import RedisServer
from support.waiting import until

from gateway import GatewayError, Unavailable
from gateway.config.sections import RedisConfig, RedisUrl
from gateway.limits.buckets import RedisBuckets
from gateway.spend.budgets import RedisBudgets, counters, periods
from gateway.state.redis import PackedByHiredis, RedisState


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
async def own_state(own_redis: RedisServer) -> Any:
    """The state on a Redis of this test's own (``own_redis``), which the test may flush, stop or
    freeze, as it never may the shared one."""
    state = RedisState(RedisConfig(url=RedisUrl(own_redis.url)))
    await state.open()
    try:
        yield state
    finally:
        await state.close()


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


async def test_every_call_of_a_pipeline_fails_alike_when_redis_is_gone(own_state, own_redis):
    state, server = own_state, own_redis
    budgets = RedisBudgets(state)
    day = counters("key", "k3", {"day": 1.0}, periods(time.time()))
    assert await budgets.reserve("k3", day, 100_000) is None
    server.stop()
    started = time.monotonic()
    results = await asyncio.gather(
        *(budgets.reserve("k3", day, 100_000) for _ in range(4)),
        budgets.settle("k3", day, -50_000),
        return_exceptions=True,
    )
    assert time.monotonic() - started <= state.bound + 1
    assert all(isinstance(r, Unavailable) for r in results), results
    assert {r.code for r in results} == {"state_store_unavailable"}
    assert not state.healthy
    server.start()
    await until(lambda: _fits(budgets, day), 10, "budgets in Redis again")
    assert state.healthy


async def _fits(budgets: RedisBudgets, day: Any) -> bool:
    try:
        return await budgets.reserve("k3", day, 100_000) is None
    except Unavailable:
        return False


async def test_a_call_redis_refuses_fails_alone_in_its_pipeline(state):
    budgets = RedisBudgets(state)
    day = counters("key", "k4", {"day": 1.0}, periods(time.time()))
    other = counters("key", "k5", {"day": 1.0}, periods(time.time()))
    assert await budgets.reserve("k4", day, 100_000) is None
    assert await budgets.reserve("k5", other, 100_000) is None
    # A counter that is not a number: the script's INCRBY fails in Redis, for that call only.
    (key,) = await state.client.keys(state.prefix + "budget:{k4}:*")
    await state.client.set(key, "not a number", keepttl=True)
    results = await asyncio.gather(
        budgets.reserve("k4", day, 100_000),
        budgets.reserve("k5", other, 100_000),
        return_exceptions=True,
    )
    assert isinstance(results[0], GatewayError) and not isinstance(results[0], Unavailable)
    assert "state store failed (budgets)" in str(results[0])
    assert results[1] is None
    assert state.healthy


async def test_the_state_s_commands_are_packed_by_hiredis(state):
    assert issubclass(state.client.connection_pool.connection_class, PackedByHiredis)
    key = state.key("packing", "t")
    await state.client.set(key, "välue ✓\r\n", px=60_000)
    assert (await state.client.get(key)).decode() == "välue ✓\r\n"
    assert await state.client.incrbyfloat(key + ":n", 0.5) == 0.5
    await state.client.delete(key, key + ":n")


async def test_calls_made_while_a_batch_is_out_leave_together_when_it_is_back(own_state, own_redis):
    state, server = own_state, own_redis
    pipelines = Counting(state)
    budgets = RedisBudgets(state)
    day = counters("key", "k6", {"day": 1.0}, periods(time.time()))
    assert await budgets.reserve("k6", day, 1) is None  # the counter made, on its own
    os.kill(server.proc.pid, signal.SIGSTOP)  # Redis reads nothing until it goes on
    try:
        first = [asyncio.ensure_future(budgets.reserve("k6", day, 1)) for _ in range(3)]
        await until(lambda: pipelines.sizes == [3], 5, "the first batch out")
        # Made in two later turns while it is out: they wait for it, then leave as one.
        later = [asyncio.ensure_future(budgets.reserve("k6", day, 1)) for _ in range(2)]
        await until(lambda: len(state.batches._calls) == 2, 5, "two calls waiting")
        later += [asyncio.ensure_future(budgets.settle("k6", day, 10)) for _ in range(2)]
        gone = asyncio.ensure_future(budgets.reserve("k6", day, 1000))
        await until(lambda: len(state.batches._calls) == 5, 5, "five calls waiting")
        gone.cancel()  # its caller gave up before its batch left: it is not sent
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    assert await asyncio.gather(*first, *later) == [None] * 5 + [None, None]
    assert pipelines.sizes == [3, 4]
    assert await budgets.spent("k6", day[0]) == 1 + 3 + 2 + 2 * 10


async def test_budgets_and_rate_limits_share_their_batches(own_state, own_redis):
    state, server = own_state, own_redis
    pipelines = Counting(state)
    budgets, buckets = RedisBudgets(state), RedisBuckets(state)
    day = counters("key", "k7", {"day": 1.0}, periods(time.time()))
    assert await budgets.reserve("k7", day, 1) is None
    # A budget's reservation and two rate limits' in one turn: one pipeline, each its answer.
    reserved, first, second = await asyncio.gather(
        budgets.reserve("k7", day, 1), buckets.acquire("k7", 2, 0), buckets.acquire("k7", 2, 0)
    )
    assert pipelines.sizes[-1] == 3
    assert reserved is None
    assert first[1] is None and second[1] is None  # two requests of two a minute
    wait, limit, _, _ = await buckets.acquire("k7", 2, 0)
    assert limit == "requests" and wait > 0
    # Redis gone: each call's failure names what it was for.
    server.stop()
    results = await asyncio.gather(
        budgets.reserve("k7", day, 1), buckets.acquire("k7", 2, 0), return_exceptions=True
    )
    assert [type(r) for r in results] == [Unavailable, Unavailable]
    assert "so budgets cannot" in str(results[0])
    assert "so rate limits cannot" in str(results[1])
