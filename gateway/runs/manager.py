"""Producing runs in the background, and finding any run's log."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, Protocol

import orjson

from gateway.canonical import Event
from gateway.errors import GatewayError, Unavailable
from gateway.runs.log import Batch, Run, RunKey, RunStore

log = logging.getLogger(__name__)


class Translator(Protocol):
    """Turns a run's canonical events into the JSON objects of its log (AG-UI events, A2A
    stream results); ``done`` once the run's last object went out."""

    done: bool

    def start(self) -> list[Any]: ...

    def add(self, ev: Event) -> list[Any]: ...

    def failed(self, err: GatewayError) -> list[Any]: ...

    def cancelled(self) -> list[Any]: ...


class Runs:
    """The runs this instance produces, and the way to every run's log.

    ``on_end(run, translator)``, when given, is awaited once each run has its whole log (ended,
    failed or cancelled), before the store is told: for protocols that keep a summary of the
    run elsewhere (A2A tasks).
    """

    def __init__(
        self,
        store: RunStore,
        *,
        max_events: int,
        streams: set[asyncio.Task[Any]],
        max_bytes: int = 0,
        on_end: Callable[[Run, Any], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self.max_events = max_events
        #: The bytes one run's log may hold (0: no limit).
        self.max_bytes = max_bytes
        self.on_end = on_end
        #: Runs being produced here.
        self.active: dict[RunKey, Run] = {}
        #: The tasks producing runs here, until each has recorded its run's end (a run leaves
        #: ``active`` before it tells the store).
        self._producing: set[asyncio.Task[None]] = set()
        #: The gateway's set of streaming tasks: a drain that runs out of time cancels them.
        self.streams = streams
        store.on_cancel = self.cancel_local

    def launch(
        self,
        run: Run,
        translator: Translator,
        first: Event | None,
        events: AsyncGenerator[Event, None],
    ) -> None:
        """Produce the run in the background, starting with the already-received ``first``
        (``None``: the run starts before its first event, which ``events`` then yields)."""
        self.active[run.key] = run
        self.store.record(run)
        run.task = task = asyncio.create_task(self._produce(run, translator, first, events))
        self.streams.add(task)
        self._producing.add(task)
        task.add_done_callback(self._producing.discard)

    async def _produce(
        self,
        run: Run,
        translator: Translator,
        first: Event | None,
        events: AsyncGenerator[Event, None],
    ) -> None:
        dumps = orjson.dumps
        try:
            for out in translator.start():
                run.append(dumps(out))
            ev = first if first is not None else await anext(events, None)
            while ev is not None:
                for out in translator.add(ev):
                    run.append(dumps(out))
                if translator.done:
                    break
                err = self._too_large(run)
                if err is not None:
                    for out in translator.failed(err):
                        run.append(dumps(out))
                    break
                ev = await anext(events, None)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # the run ends normally, with its terminal event
            if run.cancel_requested:
                ending = translator.cancelled()
            else:
                ending = translator.failed(
                    Unavailable("the gateway is shutting down; the run was stopped")
                )
            for out in ending:
                run.append(dumps(out))
        except Exception:
            log.exception("run %s failed", run.run_id)
            for out in translator.failed(GatewayError("the run failed inside the gateway")):
                run.append(dumps(out))
        finally:
            try:
                await events.aclose()
            except Exception:
                log.exception("closing the events of run %s failed", run.run_id)
            if not translator.done:
                for out in translator.failed(GatewayError("the run ended without finishing")):
                    run.append(dumps(out))
            run.close()
            if self.on_end is not None:
                try:
                    await self.on_end(run, translator)
                except Exception:
                    log.exception("recording the end of run %s failed", run.run_id)
            self.active.pop(run.key, None)
            if run.task is not None:
                self.streams.discard(run.task)
            try:
                await self.store.finish(run)
            except Exception:
                log.exception("storing the end of run %s failed", run.run_id)

    def _too_large(self, run: Run) -> GatewayError | None:
        """The error that ends a run whose log reached a bound, if it did."""
        if len(run.events) >= self.max_events:
            return GatewayError(
                f"the run produced more than {self.max_events} events", code="too_many_events"
            )
        if self.max_bytes and run.size >= self.max_bytes:
            return GatewayError(
                f"the run produced more than {self.max_bytes} bytes of events",
                code="run_too_large",
            )
        return None

    def follow(self, owner: str, run_id: str, after: int) -> AsyncGenerator[Batch, None]:
        """A run's events after number ``after``: from this instance when it produces the run,
        from the store otherwise."""
        run = self.active.get((owner, run_id))
        if run is not None:
            return run.batches(after)
        return self.store.follow(owner, run_id, after)

    def cancel_local(self, owner: str, run_id: str) -> bool:
        """Cancel a run produced here (its upstream request is cancelled with it)."""
        run = self.active.get((owner, run_id))
        if run is None or run.task is None or run.done:
            return False
        run.cancel_requested = True
        run.task.cancel()
        return True

    async def cancel(self, owner: str, run_id: str) -> None:
        """Cancel a run wherever it is produced."""
        if not self.cancel_local(owner, run_id):
            await self.store.request_cancel(owner, run_id)

    async def shutdown(self) -> None:
        """Stop every run still going (application shutdown) and let each record its end, those
        that had ended and were still recording it too: the store is closed after this."""
        for run in self.active.values():
            if run.task is not None:
                run.task.cancel()
        if self._producing:
            await asyncio.gather(*self._producing, return_exceptions=True)
