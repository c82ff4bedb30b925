"""Listeners: subscriptions to outside streams whose messages start agent runs or calls.

A listener kind (``redis-pubsub``, ``redis-stream``, ``sse``, ``nats``, or a plugin's) is a
:class:`Listener` subclass registered with ``gateway_register_listeners(register)`` as
``register(kind, ListenerSubclass, ConfigSubclass)``. It implements :meth:`Listener.consume`:
connect, then turn each message into a :class:`TriggerEvent` and hand it to :meth:`submit`
(queued; the listener reads on) or :meth:`handle` (waits for the handlers' outcome, for sources
that acknowledge). The base class reconnects with backoff whenever ``consume`` fails or ends, and
for sources every instance would receive alike (``exclusive``: pub/sub channels, SSE streams) it
lets one instance at a time listen, holding a lease in the shared trigger state.

:class:`ListenerManager` declares listeners from Python.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import attrs
import orjson

from gateway import ConfigError, GatewayError, hookimpl, reraise_cancellation
from gateway.triggers.handlers import Handler, HandlerConfig, TriggerEvent
from gateway.triggers.runner import stop_task
from gateway.triggers.service import service_for
from gateway.triggers.template import TemplateError, lookup

if TYPE_CHECKING:
    from aiohttp import web

    from gateway import Gateway, Principal

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

#: Reconnection waits start here and double up to ``MAX_BACKOFF`` seconds.
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0


@attrs.frozen
class ListenerConfig:
    """What every ``[listeners.<name>]`` table may say; kinds add their own fields."""

    kind: str
    #: The handler for every message: an agent (+ prompt filled from the message), a call, or
    #: both. Or route by type with [[listeners.<name>.on]] tables, as webhooks do.
    agent: str | None = None
    prompt: str | None = None
    call: str | None = None
    on: tuple[HandlerConfig, ...] = ()
    #: A dotted path in the message whose value is its type (default: the kind's own: the
    #: channel, stream, subject or SSE event name).
    event_field: str | None = None
    #: The API key that owns the runs this listener starts ([triggers] run_as when unset).
    run_as: str | None = None


class Listener:
    """Base of listener kinds (see the module docstring)."""

    #: Every instance would receive every message: only one instance listens at a time.
    exclusive: ClassVar[bool] = False

    def __init__(self, name: str, config: ListenerConfig, gateway: Gateway) -> None:
        self.name = name
        self.config = config
        self.gateway = gateway
        self.service = service_for(gateway)
        self.source = f"listener:{name}"
        self.handlers = [Handler.from_config(h) for h in config.on]
        #: Where each handler is declared, for errors.
        self.paths = [f"on[{i}]" for i in range(len(self.handlers))]
        if config.agent is not None or config.call is not None:
            self.handlers.insert(
                0, Handler("*", agent=config.agent, prompt=config.prompt, call=config.call)
            )
            self.paths.insert(0, "")
        elif config.prompt is not None:
            raise ValueError("'prompt' needs an 'agent' to send it to")
        self.event_path = tuple(config.event_field.split(".")) if config.event_field else None
        self.owner: Principal | None = None
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    def add_handler(self, handler: Handler) -> None:
        self.handlers.append(handler)
        self.paths.append("(Python)")

    def check(self, where: str) -> None:
        """Compile the handlers (called once the listener's handlers are all added)."""
        if not self.handlers:
            raise ConfigError(
                [f"{where}: nothing to do: set agent (and prompt), call, or [[...on]] handlers"]
            )
        self.owner = self.service.owner(self.config.run_as, where)
        errors: list[str] = []
        paths = [
            f"{where}.{p}" if p.startswith("on[") else f"{where} {p}".strip() for p in self.paths
        ]
        self.handlers = self.service.compile(self.handlers, self.owner, paths, errors)
        if errors:
            raise ConfigError(errors)
        if self.exclusive:
            _ = self.service.state  # declares the store now: a bad combination fails at startup

    # -- what kinds implement and use

    async def consume(self) -> None:
        """Connect and process messages until cancelled; raise (or return) to reconnect."""
        raise NotImplementedError

    def event(
        self,
        data: Any,
        kind: str,
        *,
        headers: dict[str, str] | None = None,
        id: str | None = None,
        attempt: int = 1,
    ) -> TriggerEvent:
        """A message as an event: bytes or text that is JSON is parsed, other text becomes
        ``{"text": ...}``; its type is ``kind`` unless ``event_field`` names one."""
        self.service.messages.labels(self.name, "received").inc()
        payload = decode(data)
        if self.event_path is not None:
            try:
                found = lookup(payload, self.event_path)
                kind = found if isinstance(found, str) else kind
            except TemplateError:
                pass
        return TriggerEvent(self.source, kind, payload, headers or {}, id, attempt)

    async def submit(self, event: TriggerEvent) -> None:
        """Queue the handlers of ``event`` (waiting for room in the queue)."""
        assert self.owner is not None
        for job in self.service.plan(event, self.handlers, self.owner).jobs:
            await self.service.runner.put(job)

    async def handle(self, event: TriggerEvent) -> None:
        """Run the handlers of ``event`` and wait for them; raises when one failed."""
        assert self.owner is not None
        await self.service.dispatch(event, self.handlers, self.owner)

    # -- lifetime

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.source)

    async def stop(self) -> None:
        await stop_task(self._task)
        self._task = None

    async def _run(self) -> None:
        if self.exclusive:
            await self._lead()
        else:
            await self._listen()

    async def _listen(self) -> None:
        backoff = FIRST_BACKOFF
        loop = asyncio.get_running_loop()
        while True:
            began = loop.time()
            try:
                await self.consume()
                reraise_cancellation()
                log.warning("listener %s: the source ended; reconnecting", self.name)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # A cancellation its client swallowed, failing as if the connection had: stop.
                reraise_cancellation()
                log.warning(
                    "listener %s: %s; reconnecting in %.1fs",
                    self.name,
                    str(exc) or type(exc).__name__,
                    backoff,
                )
            finally:
                self.connected.clear()
            if loop.time() - began > MAX_BACKOFF:
                backoff = FIRST_BACKOFF  # it had been working: start over
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    async def _lead(self) -> None:
        """Listen only while this instance holds the listener's lease."""
        state, lease = self.service.state, float(self.service.config.lease)
        key, token = f"listener/{self.name}", uuid.uuid4().hex
        while True:
            if not await _quietly(state.acquire(key, token, lease), self.name):
                await asyncio.sleep(lease / 3)
                continue
            log.info("listener %s: this instance listens", self.name)
            task = asyncio.create_task(self._listen())
            try:
                while not task.done():
                    await asyncio.sleep(lease / 3)
                    if not await _quietly(state.extend(key, token, lease), self.name):
                        log.warning(
                            "listener %s: lost its lease; another instance listens", self.name
                        )
                        break
            finally:
                await stop_task(task)
                with contextlib.suppress(GatewayError):
                    await asyncio.shield(state.release(key, token))


async def _quietly(call: Any, name: str) -> bool:
    try:
        return bool(await call)
    except GatewayError as err:
        log.warning("listener %s: the trigger state is unavailable: %s", name, err.message)
        return False


def decode(data: Any) -> Any:
    """A message's payload: parsed JSON, or ``{"text": ...}``."""
    if isinstance(data, bytes | bytearray | memoryview):
        data = bytes(data)
    if isinstance(data, bytes | str):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            text = data.decode(errors="replace") if isinstance(data, bytes) else data
            return {"text": text}
    return data


class ListenerManager:
    """Listeners declared in Python; pass the manager to ``create_app`` as a plugin::

        listeners = ListenerManager()

        @listeners.on_sse("https://events.example/stream", events=["order.created"])
        async def order(payload, headers): ...

        @listeners.on_redis_stream("orders", group="hookgate")
        def fulfil(payload): ...

        app = create_app(config, plugins=[listeners])

    Each decorator takes the options of its kind's ``[listeners.<name>]`` table (``name``
    defaults to the function's name); ``agent=`` + ``prompt=`` start runs from what the
    function returns, as in TOML.
    """

    def __init__(self, name: str = "listener-manager") -> None:
        self.name = name
        self.declared: list[tuple[str, dict[str, Any], Handler]] = []

    def listen(
        self,
        kind: str,
        *,
        name: str | None = None,
        agent: str | None = None,
        prompt: str | None = None,
        **options: Any,
    ) -> Callable[[F], F]:
        """Decorate a function called with ``(payload, headers)`` for each message of a
        listener of ``kind``."""

        def register(fn: F) -> F:
            handler = Handler("*", agent=agent, prompt=prompt, call=fn)
            self.declared.append((name or fn.__name__, {"kind": kind, **options}, handler))
            return fn

        return register

    def on_sse(self, url: str, **options: Any) -> Callable[[F], F]:
        return self.listen("sse", url=url, **options)

    def on_redis_pubsub(self, channel: str, **options: Any) -> Callable[[F], F]:
        return self.listen("redis-pubsub", channel=channel, **options)

    def on_redis_stream(self, stream: str, **options: Any) -> Callable[[F], F]:
        return self.listen("redis-stream", stream=stream, **options)

    def on_nats(self, subject: str, **options: Any) -> Callable[[F], F]:
        return self.listen("nats", subject=subject, **options)

    @hookimpl
    def gateway_configure_app(self, app: web.Application, gateway: Gateway) -> None:
        service_for(gateway).python_listeners.extend(self.declared)
