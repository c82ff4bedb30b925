"""The triggers of one application: their shared state, the background runner, agent runs.

:func:`service_for` makes (once per app) the :class:`TriggerService` that webhooks, pollers and
listeners share. It turns a :class:`~gateway.triggers.handlers.TriggerEvent` and the handlers
that match it into :class:`~gateway.triggers.runner.Job`\\ s; an agent handler's job starts an
AG-UI run through the same run registry as ``POST /agui/...`` (so it can be attached to by its
id, ``GET /agui/ws?run_id=...``) and waits for its end: a run that ends in ``RUN_ERROR`` is a
failed handler.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any, Protocol

import attrs
from aiohttp import web
from prometheus_client import Counter

from gateway import (
    ANONYMOUS,
    ChatRequest,
    ConfigError,
    Count,
    Duration,
    Exchange,
    GatewayError,
    Message,
    Principal,
    RouteInfo,
    TextPart,
    new_id,
)
from gateway.protocols.agui import RunInput
from gateway.triggers.handlers import Handler, HandlerError, TriggerEvent, slug
from gateway.triggers.runner import Job, JobRunner
from gateway.triggers.state import MemoryTriggerState, TriggerState

if TYPE_CHECKING:
    from gateway import Gateway
    from gateway.runs import Run

log = logging.getLogger(__name__)


@attrs.frozen
class TriggersConfig:
    """``[triggers]``: what webhooks, pollers and listeners share."""

    #: Delivery ids, poller ticks and leases: "auto" (redis when [redis] url is set, else
    #: memory), "memory" or "redis".
    store: str = "auto"
    #: Handlers running at once (agent runs and calls), across every trigger.
    concurrency: Count = Count(8)
    #: Handlers waiting for a turn at most; past that webhooks get 503 and listeners wait.
    max_queued: Count = Count(1000)
    #: Longest a handler (a call, or an agent run to its end) may take.
    timeout: Duration = Duration(600.0)
    #: At shutdown, how long queued and running handlers may still take.
    drain_timeout: Duration = Duration(30.0)
    #: Poller ticks and single-instance listeners hold a lease this long, renewed while alive;
    #: an instance that dies frees its lease after at most this long.
    lease: Duration = Duration(15.0)
    #: The API key (its name in [auth] keys) that owns triggered runs: that key may attach to
    #: and cancel them. None: the first key (or anyone, when no keys are configured).
    run_as: str | None = None


@attrs.define
class Plan:
    """What one event will do."""

    #: Handlers whose pattern matched the event's type.
    matched: int
    jobs: list[Job] = attrs.Factory(list)
    #: Ids of the runs the jobs will start, where known in advance.
    run_ids: list[str] = attrs.Factory(list)
    #: Why handlers that matched cannot run (a prompt field missing).
    errors: list[str] = attrs.Factory(list)

    @property
    def failed(self) -> int:
        return len(self.errors)


class Source(Protocol):
    """Something that produces events in the background (a poller, a listener)."""

    name: str

    def start(self) -> None: ...

    async def stop(self) -> None: ...


#: Triggered runs' requests are counted under this route name.
TRIGGER_ROUTE = RouteInfo("trigger", auth=False)


class TriggerService:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.config: TriggersConfig = gateway.config.sections.get("triggers") or TriggersConfig()
        cfg = self.config
        self.runner = JobRunner(
            concurrency=cfg.concurrency,
            max_queued=cfg.max_queued,
            timeout=cfg.timeout,
            registry=gateway.metrics.registry,
        )
        self.messages = Counter(
            "hookgate_listener_messages",
            "Listener messages by listener and outcome (received; for redis streams also "
            "redelivered and dead: given up after max_deliveries).",
            ["listener", "outcome"],
            registry=gateway.metrics.registry,
        )
        self._state: TriggerState | None = None
        self.sources: list[Source] = []
        #: Handlers embedders registered in Python, by webhook name (see WebhookRouter).
        self.webhook_handlers: dict[str, list[Handler]] = {}
        self.webhook_declarations: dict[str, dict[str, Any]] = {}
        #: Pollers and listeners embedders registered in Python, compiled by their plugins.
        self.python_pollers: list[tuple[str, dict[str, Any], Handler]] = []
        self.python_listeners: list[tuple[str, dict[str, Any], Handler]] = []
        self._agui: Any = None
        #: Set by whatever gives the service work (a webhook, a poller, a listener).
        self.active = False
        gateway.app.cleanup_ctx.append(self._lifespan)

    # -- building (while the app is built)

    @property
    def state(self) -> TriggerState:
        """The shared trigger state, chosen on first use (``[triggers] store``)."""
        if self._state is None:
            kind = self.gateway.state.choose("triggers.store", self.config.store)
            if kind == "redis":
                from gateway.triggers.state import RedisTriggerState

                self._state = RedisTriggerState(self.gateway.state.redis("triggers.store"))
            else:
                self._state = MemoryTriggerState()
        return self._state

    def owner(self, run_as: str | None, where: str) -> Principal:
        """The principal that owns runs started by a trigger (``run_as`` names an API key)."""
        run_as = run_as if run_as is not None else self.config.run_as
        if not self.gateway.auth_enabled:
            return ANONYMOUS
        for auth in self.gateway.authenticators:
            found = auth.principal(run_as)
            if found is not None:
                return found
        raise ConfigError([f"{where}.run_as: no API key named {run_as!r} in [auth] keys"])

    def compile(
        self,
        handlers: Iterable[Handler],
        owner: Principal,
        where: str | list[str],
        errors: list[str],
    ) -> list[Handler]:
        """Check that each agent handler's agent exists and ``owner`` may run it. ``where``
        names the handlers in errors: a path to index (``webhooks.x.on``), or one per handler."""
        handlers = list(handlers)
        paths = [f"{where}[{i}]" for i in range(len(handlers))] if isinstance(where, str) else where
        checked = []
        for at, handler in zip(paths, handlers, strict=True):
            if handler.agent is not None:
                if self.agui is None:
                    errors.append(
                        f"{at}.agent: agent runs need the AG-UI protocol plugin "
                        "(protocols.agui), which is disabled"
                    )
                    continue
                try:
                    self.gateway.router.resolve(handler.agent, owner)
                except GatewayError:
                    errors.append(
                        f"{at}.agent: no agent or model named {handler.agent!r} that "
                        f"the key {owner.name!r} may use"
                    )
                    continue
            checked.append(handler)
        return checked

    @property
    def agui(self) -> Any:
        if self._agui is None:
            self._agui = self.gateway.protocols.get("agui")
        return self._agui

    def add_source(self, source: Source) -> None:
        self.sources.append(source)
        self.active = True

    # -- planning and running the work for one event

    def plan(
        self, event: TriggerEvent, handlers: list[Handler], owner: Principal, *, quiet: bool = False
    ) -> Plan:
        """The jobs for ``event`` and the ids of the runs they will start (as far as known
        before running: those of agent handlers; a call's runs are known once it returns).
        A prompt that cannot be filled is a failed handler, logged and counted here (unless
        ``quiet``: a plan made again for a duplicate delivery)."""
        matched = [h for h in handlers if h.matches(event.type)]
        base = self._run_base(event)
        plan = Plan(matched=len(matched))
        jobs, run_ids = plan.jobs, plan.run_ids
        for k, handler in enumerate(matched):
            stem = f"{base}-{k}" if len(matched) > 1 else base
            if handler.function is not None:
                work = self._call(handler, event, owner, stem)
                jobs.append(Job(event.source, self._describe(event, handler), work))
                continue
            agent = handler.agent
            assert agent is not None  # a handler without a function names an agent
            try:
                prompts = handler.prompts(event.payload)
            except HandlerError as exc:
                plan.errors.append(str(exc))
                if not quiet:
                    self.runner.jobs.labels(event.source, "failed").inc()
                    log.error("%s: %s: %s", event.source, self._describe(event, handler), exc)
                continue
            for run_id, prompt in _numbered(stem, prompts):
                run_ids.append(run_id)
                jobs.append(
                    Job(
                        event.source,
                        f"{self._describe(event, handler)} (run {run_id})",
                        self._agent(agent, prompt, run_id, owner),
                    )
                )
        return plan

    async def dispatch(
        self, event: TriggerEvent, handlers: list[Handler], owner: Principal
    ) -> None:
        """Run every handler of ``event`` and wait for them (pollers, listeners); the first
        failure is raised once all have ended."""
        plan = self.plan(event, handlers, owner)
        results = await asyncio.gather(
            *(self.runner.run(j) for j in plan.jobs), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        if plan.errors:
            raise HandlerError("; ".join(plan.errors))

    def _run_base(self, event: TriggerEvent) -> str:
        name = event.source.partition(":")[2] or event.source
        base = slug(f"{name}-{event.id}") if event.id else f"{slug(name)}-{uuid.uuid4().hex[:12]}"
        return base if event.attempt <= 1 else f"{base}-a{event.attempt}"

    @staticmethod
    def _describe(event: TriggerEvent, handler: Handler) -> str:
        what = f"{event.type!r}" + (f" ({event.id})" if event.id else "")
        return f"{what} -> {handler!r}"

    def _call(self, handler: Handler, event: TriggerEvent, owner: Principal, stem: str) -> Any:
        async def work() -> Any:
            result = await handler.call(event)
            if handler.agent is None:
                return result
            prompts = handler.prompts(result)
            await asyncio.gather(
                *(
                    self._agent(handler.agent, prompt, run_id, owner)()
                    for run_id, prompt in _numbered(stem, prompts)
                )
            )
            return result

        return work

    def _agent(self, agent: str, prompt: str, run_id: str, owner: Principal) -> Any:
        async def work() -> str:
            run = await self.start_run(agent, prompt, run_id, owner)
            await self.wait_run(run)
            return run_id

        return work

    async def start_run(self, agent: str, prompt: str, run_id: str, owner: Principal) -> Run:
        """Start an AG-UI run of ``agent`` with one user message, owned by ``owner``."""
        request = ChatRequest(
            model=agent,
            messages=[Message("user", [TextPart(prompt)])],
            protocol="agui",
            stream=True,
            extra={"threadId": run_id, "runId": run_id},
        )
        ex = Exchange(new_id("trigger-"), TRIGGER_ROUTE, principal=owner)
        run: Run = await self.agui.begin(RunInput(run_id, run_id, request), ex)
        log.info("run %s of %r started (owner %s)", run_id, agent, owner.name)
        return run

    async def wait_run(self, run: Run) -> None:
        """Wait for a run's end; one that ended in ``RUN_ERROR`` (or was cancelled) raises."""
        try:
            if run.task is not None:
                await asyncio.shield(run.task)
        except asyncio.CancelledError:
            self.agui.runs.cancel_local(run.owner, run.run_id)
            raise
        last = run.events[-1] if run.events else b""
        if not last.startswith(b'{"type":"RUN_FINISHED"') or b'"cancelled"' in last:
            raise HandlerError(f"run {run.run_id} failed: {last.decode(errors='replace')[:300]}")

    # -- lifetime

    async def _lifespan(self, app: web.Application) -> AsyncIterator[None]:
        if not self.active:
            yield
            return
        self.runner.start()
        for source in self.sources:
            source.start()
        try:
            yield
        finally:
            for source in self.sources:
                try:
                    await source.stop()
                except Exception:
                    log.exception("stopping %s failed", source.name)
            await self.runner.close(self.config.drain_timeout)


def _numbered(stem: str, prompts: list[str]) -> list[tuple[str, str]]:
    if len(prompts) == 1:
        return [(stem, prompts[0])]
    return [(f"{stem}-{i}", p) for i, p in enumerate(prompts)]


SERVICE: web.AppKey[TriggerService] = web.AppKey("hookgate.triggers", TriggerService)


def service_for(gateway: Gateway) -> TriggerService:
    """The application's trigger service, made on first use."""
    app = gateway.app
    if SERVICE not in app:
        app[SERVICE] = TriggerService(gateway)
    return app[SERVICE]
