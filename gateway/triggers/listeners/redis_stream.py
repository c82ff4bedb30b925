"""The ``redis-stream`` listener kind: a Redis Stream read through a consumer group.

At least once: each instance is a consumer of the group (``XREADGROUP``), so each message goes
to one of them, and it is acknowledged (``XACK``) only after its handlers succeeded. A message
whose handler failed, or whose consumer died (a crash, a deploy), stays pending; once it has
been idle for ``claim_idle`` any instance claims it (``XPENDING`` + ``XCLAIM``) and runs it
again. While a handler runs, its consumer keeps re-claiming the message (``XCLAIM ... JUSTID``
resets its idle time), so a slow handler is not mistaken for a dead one. A message delivered
``max_deliveries`` times without success is moved to the ``dead_letter`` stream (when set),
logged and acknowledged, so one bad message cannot block the others forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from typing import TYPE_CHECKING, Any, TypeAlias, TypedDict, cast

import attrs
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from gateway import Count, Duration, hookimpl, reraise_cancellation
from gateway.triggers.listeners.base import Listener, ListenerConfig
from gateway.triggers.listeners.redis_pubsub import redis_url
from gateway.triggers.runner import stop_task

if TYPE_CHECKING:
    from redis.typing import EncodableT, FieldT, StreamIdT

    from gateway import Gateway, StreamRead

log = logging.getLogger(__name__)

#: Seconds a read may take beyond ``block`` (and a connection to open) before Redis is taken as
#: gone.
READ_MARGIN = 5.0


class _Pending(TypedDict):
    """One message of XPENDING's extended form (RESP2, bytes)."""

    message_id: bytes
    consumer: bytes
    time_since_delivered: int
    times_delivered: int


#: An entry XCLAIM returns: its id and fields (``None`` when trimmed from the stream meanwhile).
_Claimed: TypeAlias = tuple[bytes, dict[bytes, bytes] | None]


@attrs.frozen
class RedisStreamConfig(ListenerConfig):
    """``[listeners.<name>] kind = "redis-stream"``."""

    stream: str | None = None
    #: The consumer group every instance joins (made when missing).
    group: str = "hookgate"
    #: Where a new group starts: "$" (messages added from now on) or "0" (the whole stream).
    start: str = "$"
    #: The entry field holding the message (JSON or text); empty: an entry with one field is
    #: that field's value, an entry with several is a table of them.
    field: str = ""
    #: Messages read at once (and handled concurrently).
    batch: Count = Count(10)
    #: How long one read waits for new messages.
    block: Duration = Duration(5.0)
    #: A pending message idle this long (a failed handler, a dead consumer) is run again.
    claim_idle: Duration = Duration(60.0)
    #: Deliveries before a message is given up (moved to dead_letter, logged, acknowledged).
    max_deliveries: Count = Count(5)
    #: A stream to move given-up messages to; empty: they are only logged.
    dead_letter: str = ""
    #: The Redis server; empty: the gateway's own ([redis] url).
    url: str = ""


class RedisStreamListener(Listener):
    config: RedisStreamConfig

    def __init__(self, name: str, config: RedisStreamConfig, gateway: Gateway) -> None:
        super().__init__(name, config, gateway)
        if not config.stream:
            raise ValueError("'stream' is required")
        self.url = redis_url(config, gateway)
        self.stream = config.stream
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.claim_ms = max(1, int(config.claim_idle * 1000))

    async def consume(self) -> None:
        cfg = self.config
        # A read waits up to ``block`` for messages: the socket's timeout is longer (redis-py's
        # default, 5 s, would cut every idle read of the default ``block`` short and reconnect),
        # and still finite, so a Redis that stops answering is given up and tried again.
        client = aioredis.Redis.from_url(
            self.url,
            health_check_interval=30,
            socket_timeout=cfg.block + READ_MARGIN,
            socket_connect_timeout=READ_MARGIN,
        )
        try:
            try:
                await client.xgroup_create(self.stream, cfg.group, id=cfg.start, mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            self.connected.set()
            loop = asyncio.get_running_loop()
            next_claim = 0.0
            while True:
                if loop.time() >= next_claim:
                    await self._reclaim(client)
                    next_claim = loop.time() + max(0.05, cfg.claim_idle / 2)
                block = int(min(cfg.block, max(0.05, next_claim - loop.time())) * 1000)
                found = cast(
                    "StreamRead",
                    await client.xreadgroup(
                        cfg.group, self.consumer, {self.stream: ">"}, count=cfg.batch, block=block
                    ),
                )
                reraise_cancellation()  # one redis-py swallowed: the listener stops
                entries = [(i, f, 1) for i, f in found[0][1]] if found else []
                await self._process(client, entries)
        finally:
            await client.aclose()

    async def _reclaim(self, client: aioredis.Redis) -> None:
        """Claim messages left pending too long, by any consumer; give up on exhausted ones."""
        cfg = self.config
        pending = cast(
            "list[_Pending]",
            await client.xpending_range(
                self.stream, cfg.group, min="-", max="+", count=cfg.batch, idle=self.claim_ms
            ),
        )
        if not pending:
            return
        counts = {p["message_id"]: p["times_delivered"] for p in pending}
        claimed = cast(
            "list[_Claimed]",
            await client.xclaim(self.stream, cfg.group, self.consumer, self.claim_ms, list(counts)),
        )
        entries: list[tuple[bytes, dict[bytes, bytes], int]] = []
        for entry_id, fields in claimed:
            delivered = counts.get(entry_id, 0)
            if fields is None:  # trimmed from the stream meanwhile
                await client.xack(self.stream, cfg.group, entry_id)
            elif delivered >= cfg.max_deliveries:
                await self._give_up(client, entry_id, fields, delivered)
            else:
                self.service.messages.labels(self.name, "redelivered").inc()
                entries.append((entry_id, fields, delivered + 1))
        await self._process(client, entries)

    async def _process(
        self, client: aioredis.Redis, entries: list[tuple[bytes, dict[bytes, bytes], int]]
    ) -> None:
        if not entries:
            return
        keeper = asyncio.create_task(self._keep_claimed(client, [e[0] for e in entries]))
        try:
            results = await asyncio.gather(
                *(self._handle(entry_id, fields, attempt) for entry_id, fields, attempt in entries)
            )
        finally:
            await stop_task(keeper)
        done = [entry_id for (entry_id, _, _), ok in zip(entries, results, strict=True) if ok]
        if done:
            await client.xack(self.stream, self.config.group, *done)

    async def _handle(self, entry_id: bytes, fields: dict[bytes, bytes], attempt: int) -> bool:
        message_id = entry_id.decode()
        event = self.event(self._message(fields), self.stream, id=message_id, attempt=attempt)
        try:
            await self.handle(event)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Logged and counted by the runner; left pending, it is delivered again later.
            log.warning(
                "listener %s: message %s (delivery %d) stays pending",
                self.name,
                message_id,
                attempt,
            )
            return False
        return True

    async def _keep_claimed(self, client: aioredis.Redis, ids: list[StreamIdT]) -> None:
        """While handlers run, reset their messages' idle time so no one else claims them."""
        while True:
            await asyncio.sleep(max(0.05, self.config.claim_idle / 3))
            with contextlib.suppress(Exception):
                await client.xclaim(
                    self.stream, self.config.group, self.consumer, 0, ids, justid=True
                )

    async def _give_up(
        self, client: aioredis.Redis, entry_id: bytes, fields: dict[bytes, bytes], delivered: int
    ) -> None:
        cfg = self.config
        if cfg.dead_letter:
            moved: dict[FieldT, EncodableT] = {k: v for k, v in fields.items()}
            moved[b"source_stream"] = self.stream
            moved[b"source_id"] = entry_id
            await client.xadd(cfg.dead_letter, moved)
        await client.xack(self.stream, cfg.group, entry_id)
        self.service.messages.labels(self.name, "dead").inc()
        log.error(
            "listener %s: message %s failed %d times; given up%s",
            self.name,
            entry_id.decode(),
            delivered,
            f" (moved to {cfg.dead_letter})" if cfg.dead_letter else "",
        )

    def _message(self, fields: dict[bytes, bytes]) -> Any:
        wanted = self.config.field
        if wanted:
            return fields.get(wanted.encode(), b"")
        if len(fields) == 1:
            return next(iter(fields.values()))
        return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in fields.items()}


@hookimpl
def gateway_register_listeners(register: Any) -> None:
    register("redis-stream", RedisStreamListener, RedisStreamConfig)
