"""Tasks looping on guarded calls to a real Redis stop when cancelled, wherever the cancellation
lands: redis-py swallows some of those that land inside its calls (about one in sixty of a
``GET`` loop's, redis-py 8.1), and ``RedisState.guard`` raises them again."""

from __future__ import annotations

import asyncio
import random

from support.waiting import stops_when_cancelled

from gateway.config.sections import RedisConfig, RedisUrl
from gateway.state.redis import RedisState

CANCELS = 1000


async def loop(state: RedisState, key: str, called: asyncio.Event) -> None:
    while True:
        async with state.guard("the test"):
            await state.client.get(key)
        called.set()


async def test_guarded_redis_loops_stop_wherever_they_are_cancelled(redis_url, redis_prefix):
    state = RedisState(RedisConfig(url=RedisUrl(redis_url), prefix=redis_prefix))
    await state.open()
    key = state.key("cancel", "t", "k")
    at = random.Random(0)
    went_on = False
    try:
        for _ in range(CANCELS):
            called = asyncio.Event()
            task = asyncio.create_task(loop(state, key, called))
            await called.wait()
            # Cancelled some way into a later call, as likely inside redis-py as between calls.
            for _ in range(at.randrange(1, 8)):
                await asyncio.sleep(0)
            if not await stops_when_cancelled(task, 2):
                went_on = True
                break
            assert task.cancelled()
    finally:
        await state.close()
    assert not went_on, "a cancelled loop went on"
