"""The parts every trigger shares: prompt templates, handler matching and calling, the
background runner (bounded, counted, drained at shutdown) and the memory trigger state."""

from __future__ import annotations

import asyncio
import logging

import pytest
from prometheus_client import CollectorRegistry
from support.waiting import until

from gateway.triggers.handlers import Handler, TriggerEvent, matches
from gateway.triggers.runner import Job, JobRunner, RunnerClosed
from gateway.triggers.state import MemoryTriggerState
from gateway.triggers.template import Template, TemplateError

PAYLOAD = {
    "data": {"object": {"id": "pi_1", "amount": 2000, "paid": True, "meta": None}},
    "items": [{"sku": "A"}, {"sku": "B"}],
}


def test_template_fills_dotted_fields_safely():
    assert Template("Pay {data.object.id}: {data.object.amount}").fill(PAYLOAD) == "Pay pi_1: 2000"
    assert Template("{items.1.sku} {data.object.paid} {data.object.meta}").fill(PAYLOAD) == (
        "B true null"
    )
    assert Template("{items}").fill(PAYLOAD) == '[{"sku":"A"},{"sku":"B"}]'
    assert Template("{{literal}} {}").fill({"a": 1}) == '{literal} {"a":1}'
    assert Template("{ data.object.id }").fields == ["data.object.id"]
    # attribute access and format specs are just missing fields, never evaluated
    for source in ("{data.__class__}", "{data.object.id!r}", "{data.object.id:>10}", "{items.5}"):
        with pytest.raises(TemplateError, match="has no field"):
            Template(source).fill(PAYLOAD)
    with pytest.raises(TemplateError, match=r"no 'nope' in data\.object"):
        Template("{data.object.nope}").fill(PAYLOAD)
    for bad in ("{a", "a}", "{a..b}"):
        with pytest.raises(TemplateError):
            Template(bad)


def test_patterns():
    assert matches("*", "anything")
    assert matches("issues", "issues.opened") and matches("issues.opened", "issues.opened")
    assert matches("charge.*", "charge.failed") and not matches("charge.*", "invoice.paid")
    assert not matches("issue", "issues.opened")


async def test_handlers_get_what_they_accept():
    event = TriggerEvent("webhook:x", "t", {"a": 1}, {"h": "v"}, "id-1")
    seen = []

    def none():
        seen.append(())

    def payload_only(p):
        seen.append((p,))

    async def both(p, h):
        seen.append((p, h))

    def with_event(payload, *, event):
        seen.append((payload, event.id))

    for fn in (none, payload_only, both, with_event):
        await Handler(call=fn).call(event)
    assert seen == [(), ({"a": 1},), ({"a": 1}, {"h": "v"}), ({"a": 1}, "id-1")]
    with pytest.raises(ValueError, match="needs an 'agent'"):
        Handler(prompt="x", call=none)


def runner(concurrency: int = 1, max_queued: int = 2, timeout: float = 5.0) -> JobRunner:
    made = JobRunner(
        concurrency=concurrency,
        max_queued=max_queued,
        timeout=timeout,
        registry=CollectorRegistry(),
    )
    made.start()
    return made


def count(made: JobRunner, outcome: str) -> float:
    return made.jobs.labels("t", outcome)._value.get()


async def test_runner_bounds_counts_and_times_out():
    made = runner(concurrency=2, max_queued=1, timeout=0.1)
    gate = asyncio.Event()
    running = 0
    peak = 0

    async def work():
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await gate.wait()
        running -= 1

    jobs = [asyncio.ensure_future(made.run(Job("t", f"job {i}", work))) for i in range(4)]
    await until(lambda: running == 2 and made.queue.full())  # two run, one queued, one waits
    gate.set()
    await asyncio.gather(*jobs)
    assert peak == 2 and count(made, "ok") == 4

    async def boom():
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        await made.run(Job("t", "boom", boom))
    with pytest.raises(TimeoutError):
        await made.run(Job("t", "slow", lambda: asyncio.sleep(5)))
    assert count(made, "failed") == 1 and count(made, "timeout") == 1
    await made.close(1.0)


async def test_runner_drains_then_logs_what_did_not_run(caplog):
    caplog.set_level(logging.INFO, "gateway.triggers.runner")
    made = runner(concurrency=1, max_queued=2)
    forever = asyncio.Event()
    stuck = asyncio.Event()

    async def get_stuck() -> None:
        stuck.set()
        await forever.wait()

    assert made.offer(Job("t", "first", lambda: asyncio.sleep(0.01)))
    assert made.offer(Job("t", "stuck", get_stuck))
    await asyncio.wait_for(stuck.wait(), 10)  # the first is done (one at a time), the second runs
    assert made.offer(Job("t", "never", forever.wait))
    assert made.offer(Job("t", "full", forever.wait))
    assert not made.offer(Job("t", "refused", forever.wait))
    await made.close(0.2)
    assert "first done" in caplog.text
    assert "stuck was stopped by the shutdown" in caplog.text
    assert "never was never run" in caplog.text and "full was never run" in caplog.text
    assert count(made, "dropped") == 3
    with pytest.raises(RunnerClosed):
        made.offer(Job("t", "late", forever.wait))


def test_memory_state_forgets_the_oldest_ids_first():
    state = MemoryTriggerState(max_seen=2)

    async def go() -> None:
        assert await state.first_seen("w", "a", 10)
        assert await state.first_seen("w", "b", 10) and await state.first_seen("w", "c", 10)
        assert await state.first_seen("w", "a", 10)

    asyncio.run(go())
