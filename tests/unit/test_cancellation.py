"""A cancellation that a redis-py call swallowed is raised again: by ``RedisState.guard`` as its
block ends, and by a listener's loop (``reraise_cancellation``). Here a stand-in call swallows
it as redis-py's can, returning or failing as if the connection had;
``tests/integration/test_redis_cancellation.py`` cancels real Redis calls."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from support.waiting import stops_when_cancelled

from gateway import GatewayError, reraise_cancellation
from gateway.config.sections import RedisConfig, RedisUrl
from gateway.state.redis import RedisState
from gateway.triggers.listeners.base import Listener

FAILURES = [None, RedisConnectionError("Connection closed by server.")]


class Call:
    """A call that waits until cancelled and then, the first time, returns (or fails with
    ``fail``) as if it had not been; later cancellations go through (so a task that went on
    after the first can still be stopped)."""

    def __init__(self, fail: Exception | None) -> None:
        self.fail = fail
        self.entered = asyncio.Event()
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1
        self.entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            if self.calls > 1:
                raise
            if self.fail is not None:
                raise self.fail from None


async def stopped(task: asyncio.Task[None]) -> None:
    """Cancel ``task``; it must end cancelled, at once."""
    if not await stops_when_cancelled(task):
        pytest.fail("the cancelled task went on")
    assert task.cancelled()


@pytest.mark.parametrize("fail", FAILURES, ids=["returns", "fails"])
async def test_a_guard_raises_the_cancellation_its_block_swallowed(fail):
    state = RedisState(RedisConfig(url=RedisUrl("redis://127.0.0.1:6379/0")))
    call = Call(fail)

    async def loop() -> None:
        while True:
            with contextlib.suppress(GatewayError):  # Redis unavailable: try again
                async with state.guard("things"):
                    await call()

    task = asyncio.create_task(loop())
    await call.entered.wait()
    await stopped(task)
    assert call.calls == 1


async def test_a_guard_lets_its_own_timeout_be_a_failure():
    state = RedisState(RedisConfig(url=RedisUrl("redis://127.0.0.1:6379/0")))
    state.bound = 0.01
    with pytest.raises(GatewayError) as failed:
        async with state.guard("things"):
            await asyncio.Event().wait()
    assert failed.value.status == 503 and "things" in failed.value.message


@pytest.mark.parametrize("fail", FAILURES, ids=["returns", "fails"])
async def test_a_listener_whose_client_swallowed_its_cancellation_stops(fail):
    call = Call(fail)

    class Source:
        name = "source"
        connected = asyncio.Event()
        consume = call

    task = asyncio.create_task(Listener._listen(Source()))  # type: ignore[arg-type]
    await call.entered.wait()
    await stopped(task)
    assert call.calls == 1


async def test_reraise_cancellation_counts_from_before():
    entered = asyncio.Event()

    async def cleanup() -> None:
        entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            # Cleaning up after its own cancellation: that one is not raised again here...
            before = asyncio.current_task().cancelling()
            reraise_cancellation(before)
            # ...and outside the cleanup, it is.
            reraise_cancellation()

    task = asyncio.create_task(cleanup())
    await entered.wait()
    await stopped(task)
