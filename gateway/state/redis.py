"""The application's one pooled Redis client, and how its failures reach clients.

:class:`RedisState` wraps a ``redis.asyncio`` client over a blocking connection pool: at most
``[redis] max_connections`` sockets per process, each command bounded by ``timeout``, a stale
connection (Redis restarted) retried once on a fresh one, and lost connections re-opened on the
next use, so the gateway reconnects by itself when Redis comes back. Every call goes through
:meth:`RedisState.guard`, which turns "Redis is unreachable or too slow" into
:class:`~gateway.errors.Unavailable` (503 in the client's protocol) within a bounded time.

Keys are ``<prefix><space>:{<tag>}:<rest>``. Redis Cluster places a key by the part in braces
(its hash tag), so every key of one tag lives on one slot and one Lua script may touch them
all; stores use the caller's principal id as the tag.

This module imports ``redis``; the core imports it only when something asks for Redis.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeAlias

import redis.asyncio as aioredis
from hiredis import pack_command
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.config.sections import RedisConfig
from gateway.errors import GatewayError, Unavailable

log = logging.getLogger(__name__)

#: Seconds a client is told to wait before retrying after a 503 for an unreachable Redis.
RETRY_AFTER = 1.0
#: Seconds a measured offset between this host's clock and Redis's is trusted.
_CLOCK_CHECK = 60.0

# Reply shapes as the gateway's clients receive them: RESP2, bytes left undecoded. redis-py
# types each reply for every client configuration (RESP2 or RESP3, bytes or decoded str), so
# readers of stream commands state the shape they get with these.

#: A stream entry: its id and fields.
StreamEntry: TypeAlias = tuple[bytes, dict[bytes, bytes]]
#: XREAD and XREADGROUP: per stream read, its name and entries.
StreamRead: TypeAlias = list[tuple[bytes, list[StreamEntry]]]


class PackedByHiredis(AbstractConnection):
    """A connection whose commands hiredis packs (in C), as redis-py's synchronous connections
    have it do, rather than redis-py's asyncio connection (in Python, about five times the
    time: the budgets' scripts are called on every request). The same bytes. An argument of a
    type hiredis does not take (a subclass of ``int``, a ``bytearray``) leaves the command to
    redis-py's packer, which also refuses what Redis takes none of (``DataError``)."""

    def pack_command(self, *args: Any) -> list[bytes]:
        # A command name with its literal arguments ("SCRIPT LOAD") is sent as separate words.
        first = args[0]
        words = first.encode() if isinstance(first, str) else first
        if isinstance(words, bytes) and b" " in words:
            args = (*words.split(), *args[1:])
        try:
            return [pack_command(args)]
        except TypeError:
            return super().pack_command(*args)


def packed_by_hiredis(cls: type[Any]) -> type[Any]:
    """``cls`` (a redis-py asyncio connection class) with :class:`PackedByHiredis`'s packer
    (hiredis is installed with redis-py: ``redis[hiredis]``)."""
    return type(f"Hiredis{cls.__name__}", (PackedByHiredis, cls), {})


class RedisState:
    """One pooled ``redis.asyncio`` client per application, opened and closed with it.

    Plugins get it from ``gateway.state.redis(what)`` while the app is built and use it on the
    request path::

        async with state.guard("webhook de-duplication"):
            fresh = await state.client.set(state.key("webhooks", source, delivery_id), 1,
                                           nx=True, ex=86400)
    """

    def __init__(self, config: RedisConfig) -> None:
        self.config = config
        self.prefix = config.prefix
        self._client: aioredis.Redis | None = None
        #: Whether the last guarded call reached Redis (transitions are logged once).
        self.healthy = True
        #: The hard bound on one guarded block: a connect, a command, and the one retry.
        self.bound = 2 * (config.connect_timeout + config.timeout)
        #: Redis's clock minus this host's (seconds), and when it was measured (monotonic).
        self._offset = 0.0
        self._offset_at: float | None = None
        #: Scripts' calls sent together (:meth:`Script.batched`).
        self.batches = Batches(self)

    @property
    def client(self) -> aioredis.Redis:
        """The ``redis.asyncio.Redis`` client (between app startup and cleanup)."""
        if self._client is None:
            raise RuntimeError("the Redis client is used outside the application's lifetime")
        return self._client

    def key(self, space: str, tag: str, *rest: str) -> str:
        """``<prefix><space>:{<tag>}:<rest...>``: keys with one ``tag`` share a cluster slot."""
        tag = tag.replace("{", "%7B").replace("}", "%7D")
        key = f"{self.prefix}{space}:{{{tag}}}"
        return key + "".join(":" + part for part in rest) if rest else key

    def script(self, source: str) -> Script:
        """A Lua script run with EVALSHA (loaded again by itself after a Redis restart)."""
        return Script(self, source)

    async def open(self) -> None:
        cfg = self.config
        pool = aioredis.BlockingConnectionPool.from_url(
            str(cfg.url),
            max_connections=cfg.max_connections,
            timeout=cfg.timeout,
            socket_connect_timeout=cfg.connect_timeout,
            socket_timeout=cfg.timeout,
            # A pooled connection that Redis closed (restart, idle timeout) fails on first use:
            # try once more on a new connection. Timeouts are not retried (the command may have
            # run), and nothing backs off: the guard's bound is the whole budget.
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            client_name="hookgate",
        )
        # Plain, TLS or Unix socket, as the URL says, packed by hiredis.
        pool.connection_class = packed_by_hiredis(pool.connection_class)
        self._client = aioredis.Redis.from_pool(pool)
        try:
            async with asyncio.timeout(self.bound):
                await self._client.ping()
            log.info("shared state in Redis at %s", cfg.url.masked())
        except (RedisError, OSError, TimeoutError) as exc:
            self.healthy = False
            log.warning(
                "Redis at %s does not answer (%s): requests that need it get 503 until it does",
                cfg.url.masked(),
                _describe(exc),
            )

    async def redis_time(self) -> float:
        """Now on Redis's clock (Unix seconds), from this host's clock and an offset measured
        with ``TIME`` at most once a minute: what a script compares a deadline with. Call it
        inside :meth:`guard`."""
        now = time.monotonic()
        if self._offset_at is None or now - self._offset_at > _CLOCK_CHECK:
            sent = time.time()
            seconds, micros = await self.client.time()
            received = time.time()
            self._offset = seconds + micros / 1e6 - (sent + received) / 2
            self._offset_at = now
        return time.time() + self._offset

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    @asynccontextmanager
    async def guard(self, what: str) -> AsyncIterator[None]:
        """Run the block's Redis calls within :attr:`bound` seconds; an unreachable or slow
        Redis becomes :class:`Unavailable` naming ``what`` (e.g. ``"sessions"``)."""
        task = asyncio.current_task()
        before = task.cancelling() if task is not None else 0
        try:
            async with asyncio.timeout(self.bound):
                yield
        except (RedisError, TimeoutError, OSError) as exc:
            reraise_cancellation(before)
            raise self.failure(exc, what) from None
        reraise_cancellation(before)
        self.answered()

    def answered(self) -> None:
        """Redis answered (said once, when it had not)."""
        if not self.healthy:
            self.healthy = True
            log.warning("Redis at %s answers again", self.config.url.masked())

    def failure(self, exc: BaseException, what: str) -> GatewayError:
        """What a Redis failure of ``what`` is to a client (as :meth:`guard` raises it):
        unreachable or slow (logged once until Redis answers again) is :class:`Unavailable`;
        any other failure, logged, a :class:`GatewayError`."""
        if isinstance(exc, RedisConnectionError | RedisTimeoutError | TimeoutError | OSError):
            if self.healthy:
                self.healthy = False
                log.error(
                    "Redis at %s is unreachable (%s): %s answer 503 until it is back",
                    self.config.url.masked(),
                    _describe(exc),
                    what,
                )
            return Unavailable(
                f"The gateway cannot reach its state store right now, so {what} "
                "cannot be used. Retry shortly.",
                code="state_store_unavailable",
                retry_after=RETRY_AFTER,
            )
        log.error("Redis failed for %s: %s", what, _describe(exc))
        return GatewayError(f"The gateway's state store failed ({what}).")


class Script:
    """A Lua script bound to the application's client when first run."""

    def __init__(self, state: RedisState, source: str) -> None:
        self.state = state
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()
        self._script: Any = None
        self._client: Any = None

    async def __call__(self, keys: Sequence[str], args: Sequence[Any]) -> Any:
        client = self.state.client
        if self._client is not client:
            self._script, self._client = client.register_script(self.source), client
        return await self._script(keys=list(keys), args=list(args))

    def batched(self, keys: Sequence[str], args: Sequence[Any], what: str) -> Awaitable[Any]:
        """The script's answer on ``keys`` and ``args``, sent with the scripts' other calls of
        the moment (:class:`Batches`); without a :meth:`RedisState.guard` of the caller's own:
        a failure is the one the guard would raise, naming ``what``."""
        return self.state.batches.call(self, keys, args, what)


#: A call waiting in a batch: the script, its keys and arguments, what it is for, its answer.
_Call: TypeAlias = tuple[Script, Sequence[str], Sequence[Any], str, "asyncio.Future[Any]"]


class Batches:
    """Scripts' calls on every request's path (budgets, rate limits) sent to Redis together,
    one batch at a time.

    Each call through redis-py costs its connection handling and bookkeeping. Calls made in one
    turn of the loop (concurrent requests' reservations, settlements, rate limits) leave at the
    end of that turn as one pipeline on one connection; while it is out, the calls made
    meanwhile wait and leave together as soon as it is back, so under load a batch holds what
    arrived during the last one's round trip. Each caller still awaits its own answer, so a
    call is done in Redis when its ``await`` returns, as with a call of its own; a call whose
    caller gave up before its batch left is not sent. A batch is bounded in time as one
    :meth:`RedisState.guard` block: a Redis that does not answer in time fails every call of
    the batch with the guard's error (naming each call's ``what``); a call Redis refuses fails
    alone."""

    def __init__(self, state: RedisState) -> None:
        self.state = state
        self._calls: list[_Call] = []
        #: The batch out (at most one), or the turn's end at which the next leaves.
        self._out: asyncio.Task[None] | asyncio.Handle | None = None

    def call(
        self, script: Script, keys: Sequence[str], args: Sequence[Any], what: str
    ) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if self._out is None:
            self._out = loop.call_soon(self._send)
        self._calls.append((script, keys, args, what, future))
        return future

    def _send(self, _: object = None) -> None:
        """Send what waits (at the turn's end, or when the batch out is back)."""
        calls = [c for c in self._calls if not c[4].done()]
        self._calls = []
        if not calls:
            self._out = None
            return
        task = self._out = asyncio.ensure_future(self._run(calls))
        task.add_done_callback(self._send)

    async def _run(self, calls: list[_Call]) -> None:
        state = self.state
        try:
            async with asyncio.timeout(state.bound):
                if len(calls) == 1:
                    script, keys, args, _, _ = calls[0]
                    answers: list[Any] = [await script(keys, args)]
                else:
                    pipe = state.client.pipeline(transaction=False)
                    for script, keys, args, _, _ in calls:
                        pipe.evalsha(script.sha, len(keys), *keys, *args)
                    answers = await pipe.execute(raise_on_error=False)
                    for i, (script, keys, args, _, _) in enumerate(calls):
                        if isinstance(answers[i], NoScriptError):
                            # Redis lost its scripts (restarted): this call did not run.
                            answers[i] = await script(keys, args)
        except (RedisError, TimeoutError, OSError) as exc:
            for _, _, _, what, future in calls:
                if not future.done():
                    future.set_exception(state.failure(exc, what))
            return
        except Exception as exc:
            for *_, future in calls:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:
            for *_, future in calls:
                future.cancel()
            raise
        state.answered()
        for (_, _, _, what, future), answer in zip(calls, answers, strict=True):
            if future.done():  # its caller gave up (timed out)
                continue
            if isinstance(answer, Exception):
                future.set_exception(state.failure(answer, what))
            else:
                future.set_result(answer)


async def pubsub_messages(pubsub: Any, poll: float = 1.0) -> AsyncIterator[dict[str, Any]]:
    """The messages (not the subscription replies) a subscribed redis-py ``PubSub`` receives,
    until the task reading them is cancelled.

    redis-py can swallow a cancellation that lands inside one of its reads (it then reads on,
    or reports a read timeout), and a task blocked in ``PubSub.listen()`` would never end; so
    reads wait at most ``poll`` seconds and the task's cancellation is checked after each.
    """
    while True:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=poll)
        reraise_cancellation()
        if message is not None:
            yield message


def reraise_cancellation(before: int = 0) -> None:
    """Raise :class:`asyncio.CancelledError` when the running task was cancelled (more times
    than ``before``, its count when its Redis calls began) and the cancellation did not reach it.

    redis-py can swallow a cancellation that lands inside one of its calls: the call then returns,
    or fails as if the connection had, as though none had come (50 of 3,000 cancellations of a
    task looping on ``GET``, redis-py 8.1), and a loop of Redis calls goes on after its task was
    cancelled: a listener or a watcher that never stops, a shutdown that waits for it forever.
    :meth:`RedisState.guard` calls it as its block ends; a loop on a client of its own calls it
    after each call, and where it handles a failure and goes on."""
    task = asyncio.current_task()
    if task is not None and task.cancelling() > before:
        raise asyncio.CancelledError


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
