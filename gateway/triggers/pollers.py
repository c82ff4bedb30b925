"""The built-in ``triggers.pollers`` plugin: ``[pollers.<name>]``, work on a schedule.

Ticks are numbered from the Unix epoch (tick ``n`` is due at ``n * every``), so every instance
agrees on them. When a tick is due, each instance asks the shared trigger state to claim it
(see :mod:`gateway.triggers.state`): exactly one gets it, runs the handler through the
background runner and holds the poller's lease (renewed while it runs) until the handler ends.
A tick due while the previous one still runs, anywhere, is skipped: ticks never overlap. After
``k`` failures in a row the next ``2**(k-1) - 1`` ticks are skipped (at most ``max_backoff``).
``jitter`` delays each tick by a random part of it, so pollers sharing a schedule spread out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
from prometheus_client import Counter

from gateway import ConfigError, Duration, GatewayError, format_errors, hookimpl, make_converter
from gateway.triggers.handlers import Handler, TriggerEvent
from gateway.triggers.runner import stop_task
from gateway.triggers.service import SERVICE, TriggerService, service_for

if TYPE_CHECKING:
    from aiohttp import web

    from gateway import Gateway, Principal

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


@attrs.frozen
class PollerConfig:
    """``[pollers.<name>]``: ``every``, and a handler (``call``, ``agent`` + ``prompt``, or both:
    the call's result fills the prompt, one run per returned item)."""

    every: Duration
    call: str | None = None
    agent: str | None = None
    #: Filled from {"poller", "tick", "scheduled"}, or from what ``call`` returned.
    prompt: str | None = None
    #: Each tick waits a random 0..jitter first.
    jitter: Duration = Duration(0.0)
    #: The longest backoff after failures.
    max_backoff: Duration = Duration(3600.0)
    #: The API key that owns the runs this poller starts ([triggers] run_as when unset).
    run_as: str | None = None

    def __attrs_post_init__(self) -> None:
        if self.every <= 0:
            raise ValueError("every: must be more than 0")
        if self.jitter >= self.every:
            raise ValueError("jitter: must be less than 'every'")


class Poller:
    """One poller, running on every instance; only one instance runs each tick."""

    def __init__(
        self,
        name: str,
        config: PollerConfig,
        handler: Handler,
        owner: Principal,
        service: TriggerService,
        ticks: Counter,
    ) -> None:
        self.name = name
        self.config = config
        self.handler = handler
        self.owner = owner
        self.service = service
        self.source = f"poller:{name}"
        #: The poller's name in the trigger state (its ticks and lease).
        self.key = f"poller/{name}"
        self.ticks = ticks
        self.max_skip = max(0, int(config.max_backoff // config.every) - 1)
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=self.source)

    async def stop(self) -> None:
        """No more ticks; a tick still running may finish within the drain timeout."""
        await stop_task(self._task)
        self._task = None
        if self._running:
            await asyncio.wait(self._running, timeout=self.service.config.drain_timeout)
            for task in self._running:
                task.cancel()

    async def _loop(self) -> None:
        every = float(self.config.every)
        tick = math.floor(time.time() / every)
        while True:
            tick += 1
            delay = tick * every - time.time()
            if delay < 0:  # late (a long pause): skip to the next due tick
                tick = math.floor(time.time() / every) + 1
                delay = tick * every - time.time()
            await asyncio.sleep(delay + random.uniform(0, float(self.config.jitter)))
            # Not awaited: the next tick is claimed while this one may still run (and is
            # then skipped as busy, here or on any other instance).
            task = asyncio.create_task(self._tick(tick))
            task.add_done_callback(_log_crash)
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _tick(self, tick: int) -> None:
        state = self.service.state
        token = uuid.uuid4().hex
        lease = float(self.service.config.lease)
        try:
            claim = await state.claim_tick(self.key, tick, token, lease)
        except GatewayError as err:
            log.warning("poller %s: tick %d not claimed: %s", self.name, tick, err.message)
            self.ticks.labels(self.name, "unavailable").inc()
            return
        if claim == "done":
            return
        if claim != "ok":
            self.ticks.labels(self.name, claim).inc()
            log.info(
                "poller %s: tick %d skipped (%s)",
                self.name,
                tick,
                "the previous tick still runs" if claim == "busy" else "backing off after failures",
            )
            return
        self.ticks.labels(self.name, "run").inc()
        keeper = asyncio.create_task(self._keep(token, lease))
        ok = False
        try:
            payload = {"poller": self.name, "tick": tick, "scheduled": tick * self.config.every}
            event = TriggerEvent(self.source, "tick", payload, {}, str(tick))
            await self.service.dispatch(event, [self.handler], self.owner)
            ok = True
        except Exception:
            pass  # logged and counted by the runner
        finally:
            keeper.cancel()
            try:
                failures = await asyncio.shield(
                    state.end_tick(self.key, tick, token, ok, self.max_skip)
                )
                if failures:
                    log.warning("poller %s: %d failure(s) in a row", self.name, failures)
            except GatewayError as err:
                log.warning("poller %s: tick %d's end not recorded: %s", self.name, tick, err)

    async def _keep(self, token: str, lease: float) -> None:
        """Renew the lease while the tick runs."""
        while True:
            await asyncio.sleep(lease / 3)
            with contextlib.suppress(GatewayError):
                if not await self.service.state.extend(self.key, token, lease):
                    log.warning("poller %s: lost its lease while a tick ran", self.name)
                    return


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("a poller tick crashed", exc_info=task.exception())


class PollerManager:
    """Pollers declared in Python; pass the manager to ``create_app`` as a plugin::

        pollers = PollerManager()

        @pollers.every(minutes=15)
        async def check_mentions():
            ...

        @pollers.every(hours=1, agent="digest", prompt="Summarise: {items}")
        def new_items():
            return {"items": fetch()}        # fills the prompt; None: no run this time

        app = create_app(config, plugins=[pollers])

    Options are those of ``[pollers.<name>]`` (``name`` defaults to the function's name).
    """

    def __init__(self, name: str = "poller-manager") -> None:
        self.name = name
        self.declared: list[tuple[str, dict[str, Any], Handler]] = []

    def every(
        self,
        *,
        seconds: float = 0,
        minutes: float = 0,
        hours: float = 0,
        name: str | None = None,
        agent: str | None = None,
        prompt: str | None = None,
        **options: Any,
    ) -> Callable[[F], F]:
        interval = seconds + 60 * minutes + 3600 * hours

        def register(fn: F) -> F:
            handler = Handler("*", agent=agent, prompt=prompt, call=fn)
            self.declared.append((name or fn.__name__, {"every": interval, **options}, handler))
            return fn

        return register

    @hookimpl
    def gateway_configure_app(self, app: web.Application, gateway: Gateway) -> None:
        service_for(gateway).python_pollers.extend(self.declared)


def build_pollers(gateway: Gateway, service: TriggerService) -> None:
    ticks = Counter(
        "hookgate_poller_ticks",
        "Poller ticks this instance claimed, by poller and outcome (run, busy: skipped while "
        "the previous tick ran, backoff: skipped after failures, unavailable).",
        ["poller", "outcome"],
        registry=gateway.metrics.registry,
    )
    conv = make_converter()
    errors: list[str] = []
    tables: list[tuple[str, str, Any, Handler | None]] = [
        (name, f"pollers.{name}", cfg, None)
        for name, cfg in gateway.config.section("pollers").items()
    ]
    for name, table, declared in service.python_pollers:
        where = f"poller {name!r} (Python)"
        try:
            tables.append((name, where, conv.structure(table, PollerConfig), declared))
        except Exception as exc:
            errors.extend(format_errors(exc, where))
    seen: set[str] = set()
    for name, where, cfg, handler in tables:
        if name in seen:
            errors.append(f"{where}: a second poller named {name!r}")
            continue
        seen.add(name)
        try:
            if handler is None:
                handler = Handler("*", agent=cfg.agent, prompt=cfg.prompt, call=cfg.call)
            owner = service.owner(cfg.run_as, where)
        except ConfigError as exc:
            errors.extend(exc.errors)
            continue
        except ValueError as exc:
            errors.append(f"{where}: {exc}")
            continue
        if service.compile([handler], owner, [where], errors):
            service.add_source(Poller(name, cfg, handler, owner, service, ticks))
    if errors:
        raise ConfigError(errors)
    _ = service.state  # declares the store now: a bad combination fails at startup


@hookimpl
def gateway_config_sections(register: Any) -> None:
    register("pollers", dict[str, PollerConfig])


@hookimpl(trylast=True)
def gateway_configure_app(app: web.Application, gateway: Gateway) -> None:
    # Last, so agents (which other plugins route in this hook) can be checked by name.
    if gateway.config.section("pollers") or (SERVICE in app and app[SERVICE].python_pollers):
        build_pollers(gateway, service_for(gateway))
