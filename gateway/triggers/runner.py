"""Handlers run in the background, a bounded number at a time, from a bounded queue.

Webhook endpoints :meth:`~JobRunner.offer` jobs and answer at once (a full queue is a 503 with
``retry-after``, never an unbounded backlog); pollers and listeners :meth:`~JobRunner.run` them,
waiting for room and for the outcome (a Redis stream message is acknowledged only after its
handler succeeded). Every outcome is logged and counted; at shutdown the queue is drained for
``drain_timeout`` and whatever is left is logged by name, never dropped silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
from prometheus_client import CollectorRegistry, Counter, Gauge

from gateway import Unavailable

log = logging.getLogger(__name__)


class RunnerClosed(Unavailable):
    """The gateway is shutting down and takes no more trigger work."""


@attrs.define(eq=False)
class Job:
    """One handler for one event."""

    #: ``"webhook:stripe"``, ``"poller:mentions"``, ...: the metrics label.
    trigger: str
    #: For logs: ``"delivery evt_1 -> agent 'billing' (run wh-stripe-evt_1)"``.
    what: str
    work: Callable[[], Awaitable[Any]]
    future: asyncio.Future[Any] | None = None


class JobRunner:
    def __init__(
        self,
        *,
        concurrency: int,
        max_queued: int,
        timeout: float,
        registry: CollectorRegistry,
    ) -> None:
        self.concurrency = concurrency
        self.timeout = timeout
        self.queue: asyncio.Queue[Job] = asyncio.Queue(max_queued)
        self.closed = False
        self._workers: list[asyncio.Task[None]] = []
        self._running: set[Job] = set()
        self.jobs = Counter(
            "hookgate_trigger_jobs",
            "Trigger handlers run, by trigger and outcome (ok, failed, timeout, dropped).",
            ["trigger", "outcome"],
            registry=registry,
        )
        self.queued = Gauge(
            "hookgate_trigger_jobs_queued", "Trigger handlers waiting to run.", registry=registry
        )
        self.running = Gauge(
            "hookgate_trigger_jobs_running", "Trigger handlers running now.", registry=registry
        )
        self.queued.set_function(self.queue.qsize)
        self.running.set_function(lambda: len(self._running))

    def start(self) -> None:
        self._workers = [
            asyncio.create_task(self._worker(), name=f"trigger-worker-{i}")
            for i in range(self.concurrency)
        ]

    def offer(self, job: Job) -> bool:
        """Queue ``job`` if there is room; ``False`` when the queue is full."""
        if self.closed:
            raise RunnerClosed("The gateway is shutting down; retry shortly.", retry_after=5)
        try:
            self.queue.put_nowait(job)
        except asyncio.QueueFull:
            return False
        return True

    async def put(self, job: Job) -> None:
        """Queue ``job``, waiting for room (a listener that must not drop what it received)."""
        if self.closed:
            raise RunnerClosed("The gateway is shutting down.")
        await self.queue.put(job)

    async def run(self, job: Job) -> Any:
        """Queue ``job`` (waiting for room), wait for it and return its result; its failure is
        raised (after being logged and counted)."""
        if self.closed:
            raise RunnerClosed("The gateway is shutting down.")
        job.future = asyncio.get_running_loop().create_future()
        await self.queue.put(job)
        return await job.future

    async def _worker(self) -> None:
        while True:
            job = await self.queue.get()
            self._running.add(job)
            try:
                result = await self._execute(job)
            except asyncio.CancelledError:
                if job.future is not None:
                    job.future.cancel()
                raise
            except Exception as exc:
                if job.future is not None and not job.future.done():
                    job.future.set_exception(exc)
            else:
                if job.future is not None and not job.future.done():
                    job.future.set_result(result)
            finally:
                self._running.discard(job)
                self.queue.task_done()

    async def _execute(self, job: Job) -> Any:
        try:
            async with asyncio.timeout(self.timeout):
                result = await job.work()
        except TimeoutError:
            self.jobs.labels(job.trigger, "timeout").inc()
            log.error("%s: %s did not finish within %gs", job.trigger, job.what, self.timeout)
            raise
        except asyncio.CancelledError:
            self.jobs.labels(job.trigger, "dropped").inc()
            log.error(
                "%s: %s was stopped by the shutdown before it finished", job.trigger, job.what
            )
            raise
        except Exception as exc:
            self.jobs.labels(job.trigger, "failed").inc()
            log.error("%s: %s failed: %s", job.trigger, job.what, _describe(exc))
            log.debug("%s: %s failed", job.trigger, job.what, exc_info=True)
            raise
        self.jobs.labels(job.trigger, "ok").inc()
        log.info("%s: %s done", job.trigger, job.what)
        return result

    async def close(self, drain_timeout: float) -> None:
        """Take no more jobs; let queued and running ones finish for up to ``drain_timeout``
        seconds; then stop the rest and log each job that did not run."""
        self.closed = True
        if not self._workers:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(drain_timeout):
                await self.queue.join()
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        while not self.queue.empty():
            job = self.queue.get_nowait()
            self.jobs.labels(job.trigger, "dropped").inc()
            log.error("%s: %s was never run: the gateway shut down first", job.trigger, job.what)
            if job.future is not None and not job.future.done():
                job.future.cancel()


async def stop_task(task: asyncio.Task[Any] | None) -> None:
    """Cancel a background task and wait until it has ended."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
