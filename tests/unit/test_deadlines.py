"""Many deadlines on one event-loop timer: each met once, in order, never early and at most a
grain late; a dropped one never; a failing callback stops no other."""

from __future__ import annotations

import asyncio

import pytest

from gateway.streaming.deadlines import GRAIN, deadlines


class Waiter:
    def __init__(self, loop: asyncio.AbstractEventLoop, name: str, log: list[tuple[str, float]]):
        self.loop, self.name, self.log = loop, name, log
        self.done = loop.create_future()

    def expired(self) -> None:
        self.log.append((self.name, self.loop.time()))
        if not self.done.done():
            self.done.set_result(None)


async def test_deadlines_are_met_in_order_never_early_and_once():
    loop = asyncio.get_running_loop()
    wheel = deadlines()
    assert deadlines(loop) is wheel  # one per loop
    log: list[tuple[str, float]] = []
    start = loop.time()
    waits = {"c": 0.15, "a": 0.05, "b": 0.1, "a2": 0.05}
    items = {name: Waiter(loop, name, log) for name in waits}
    for name, wait in waits.items():
        wheel.add(start + wait, items[name])
    assert len(wheel) == 4
    await asyncio.wait_for(items["c"].done, 5)
    assert [name for name, _ in log][2:] == ["b", "c"]
    assert {name for name, _ in log[:2]} == {"a", "a2"}
    for name, at in log:
        assert at >= start + waits[name] - 0.002, (name, at - start)
        # late by the grain at most, and by what a busy machine adds to any timer
        assert at <= start + waits[name] + GRAIN + 0.25, (name, at - start)
    assert len(wheel) == 0 and wheel._timer is None


async def test_a_dropped_deadline_is_not_met_and_an_earlier_one_rearms_the_timer():
    loop = asyncio.get_running_loop()
    wheel = deadlines()
    log: list[tuple[str, float]] = []
    late, dropped, early = (Waiter(loop, n, log) for n in ("late", "dropped", "early"))
    start = loop.time()
    wheel.add(start + 0.2, late)
    n = wheel.add(start + 0.05, dropped)
    wheel.discard(n, dropped)
    wheel.add(start + 0.03, early)  # sooner than the timer was set for
    await asyncio.wait_for(late.done, 5)
    assert [name for name, _ in log] == ["early", "late"]
    assert log[0][1] < start + 0.2


async def test_a_callback_may_set_its_next_deadline_and_a_failing_one_stops_no_other(caplog):
    loop = asyncio.get_running_loop()
    wheel = deadlines()
    seen: list[float] = []
    finished = loop.create_future()

    class Again:
        def expired(self) -> None:
            seen.append(loop.time())
            if len(seen) < 3:
                wheel.add(loop.time() + 0.02, self)
            else:
                finished.set_result(None)

    class Broken:
        def expired(self) -> None:
            raise RuntimeError("boom")

    start = loop.time()
    wheel.add(start + 0.02, Broken())
    wheel.add(start + 0.02, Again())
    await asyncio.wait_for(finished, 5)
    assert len(seen) == 3 and seen == sorted(seen)
    assert "a deadline's callback failed" in caplog.text


async def test_far_deadlines_share_coarser_buckets_met_within_a_sixteenth_of_their_time():
    loop = asyncio.get_running_loop()
    wheel = deadlines()
    log: list[tuple[str, float]] = []
    now = loop.time()
    buckets = set()
    for i in range(3000):  # reads every 20 ms for a minute, each setting a deadline 60 s ahead
        ahead = 60.0 + i * GRAIN
        n = wheel.add(now + ahead, Waiter(loop, "far", log))
        assert now + ahead <= n * GRAIN <= now + ahead + ahead / 16 + GRAIN
        buckets.add(n)
    assert len(buckets) < 40  # not 3,000
    near = wheel.add(now + 0.1, Waiter(loop, "near", log))
    assert near * GRAIN <= now + 0.1 + GRAIN
    for n in buckets:
        for item in list(wheel._buckets[n]):
            wheel.discard(n, item)


@pytest.mark.parametrize("when", [-1.0, 0.0])
async def test_a_deadline_already_past_is_met_at_once(when):
    loop = asyncio.get_running_loop()
    log: list[tuple[str, float]] = []
    item = Waiter(loop, "past", log)
    deadlines().add(loop.time() + when, item)
    await asyncio.wait_for(item.done, 1)
    assert log and log[0][0] == "past"
