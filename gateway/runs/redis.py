"""The Redis run store: every run's log in a Redis Stream, so any instance can replay it.

Per run (``O`` the owner's principal id, ``R`` the client's run id), under the hash tag ``{O}``
and the store's key space (``agui`` for AG-UI runs, ``a2a`` for A2A tasks)::

    <prefix>agui:{O}:s:R    string: "running" or "done"; claimed with SET NX
    <prefix>agui:{O}:e:R    stream: the run's events in batches; the entry "<n>-0" holds the
                            events up to number n since the previous entry, one JSON per line

The instance producing a run appends its events in batches (one entry per batch, one
transaction per write, as fast as Redis takes them, and the run itself never waits for Redis)
and keeps both keys alive while the run goes on: ``alive`` seconds, refreshed at every write
and every ``alive / 3`` seconds, so the run of an instance that died disappears soon. When the
run ends both keys are kept for the TTL. Because an entry's id is the number of its last event,
``Last-Event-ID`` is the same on every instance and a follower resumes with ``XREAD`` after
``<n>-0``: the first entry it gets is the one holding event n + 1. Cancellation requests go to
every instance on one pub/sub channel; the instance producing the run cancels it.

What finished runs are kept is bounded as the memory store bounds it (``max_kept`` runs and
``max_bytes`` in all, ``max_owner_bytes`` for one owner; 0: no bound), with the accounting in
Redis so that every instance counts the same runs::

    <prefix>agui:{O}:kept    sorted set: the owner's finished runs kept, scored by their expiry
    <prefix>agui:{O}:sizes   hash: their bytes
    <prefix>agui:{O}:bytes   their bytes together
    <prefix>agui:{*}:kept, :sizes, :bytes    the same for every owner ("<O>" and "<R>" on two lines)

When a run ends, one Lua script counts it for its owner and forgets (deletes) the owner's
oldest runs while the owner holds more than its bound; a second counts it for all and picks
the oldest runs of anyone while the bounds in all are exceeded, and each of those is then
forgotten by a script on its owner's keys. Each script is atomic on the keys of one hash tag
(the owner's, or ``*``); runs whose TTL ended are dropped from the counts as they are met.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable
from typing import TYPE_CHECKING, Any, cast

import orjson

from gateway.errors import GatewayError
from gateway.runs.log import Batch, Run, RunInfo, RunKey, RunStore, is_terminal
from gateway.state.redis import pubsub_messages

if TYPE_CHECKING:
    from gateway.state.redis import RedisState, StreamEntry, StreamRead

log = logging.getLogger(__name__)

WHAT = "AG-UI runs"
RUNNING, DONE = b"running", b"done"
#: What followers of an AG-UI run whose producing instance died get last.
LOST = orjson.dumps(
    {
        "type": "RUN_ERROR",
        "message": "The run was lost: the gateway producing it stopped.",
        "code": "run_lost",
    }
)
#: Seconds the writer waits after each write, so that events arriving meanwhile share an entry.
COALESCE = 0.005


# Kept runs' accounting, per owner (KEYS under the owner's tag: the sorted set of its kept
# runs scored by when each expires, in ms on Redis's clock; their sizes; their bytes together)
# and for all owners (the same three under the tag ``*``, members ``<owner>\n<run id>``). Both
# scripts first forget the runs whose TTL ended (their keys expired by themselves).
_ACCOUNT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local kept, sizes, total = KEYS[1], KEYS[2], KEYS[3]
local function drop(id)
  local size = tonumber(redis.call('HGET', sizes, id) or '0')
  redis.call('HDEL', sizes, id)
  redis.call('ZREM', kept, id)
  return redis.call('DECRBY', total, size)
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', kept, '-inf', now)) do drop(id) end
"""

# KEEP_OWNER: ARGV: run id, its bytes, TTL (ms), the owner's bound (0: none), the prefixes of
# its runs' state and events keys. Counts the finished run, then forgets the owner's oldest
# kept runs (deleting their keys) while it holds more than its bound. Returns when the run
# expires, then the forgotten runs: id, expiry, ...
KEEP_OWNER = (
    _ACCOUNT
    + """
local id, ttl, bound = ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[4])
local ends = now + ttl
if redis.call('ZSCORE', kept, id) then drop(id) end
redis.call('ZADD', kept, ends, id)
redis.call('HSET', sizes, id, ARGV[2])
local bytes = redis.call('INCRBY', total, ARGV[2])
local out = {tostring(ends)}
while bound > 0 and bytes > bound do
  local oldest = redis.call('ZRANGE', kept, 0, 0, 'WITHSCORES')
  if #oldest == 0 then break end
  bytes = drop(oldest[1])
  local state = ARGV[5] .. oldest[1]
  if redis.call('GET', state) == 'done' then redis.call('DEL', state, ARGV[6] .. oldest[1]) end
  table.insert(out, oldest[1])
  table.insert(out, oldest[2])
end
for _, key in ipairs(KEYS) do redis.call('PEXPIRE', key, ttl + 1000) end
return out
"""
)

# KEEP_ALL: ARGV: "<owner>\n<run id>", its bytes, when it expires (ms), TTL (ms), the bound on
# bytes and on runs (0: none), then the members its owner just forgot. Returns the members
# forgotten to hold the bounds (oldest first): member, expiry, ...
KEEP_ALL = (
    _ACCOUNT
    + """
local member = ARGV[1]
if redis.call('ZSCORE', kept, member) then drop(member) end
redis.call('ZADD', kept, ARGV[3], member)
redis.call('HSET', sizes, member, ARGV[2])
local bytes = redis.call('INCRBY', total, ARGV[2])
for i = 7, #ARGV do
  if redis.call('ZSCORE', kept, ARGV[i]) then bytes = drop(ARGV[i]) end
end
local max_bytes, max_runs = tonumber(ARGV[5]), tonumber(ARGV[6])
local out = {}
while (max_bytes > 0 and bytes > max_bytes)
    or (max_runs > 0 and redis.call('ZCARD', kept) > max_runs) do
  local oldest = redis.call('ZRANGE', kept, 0, 0, 'WITHSCORES')
  if #oldest == 0 then break end
  bytes = drop(oldest[1])
  table.insert(out, oldest[1])
  table.insert(out, oldest[2])
end
for _, key in ipairs(KEYS) do redis.call('PEXPIRE', key, tonumber(ARGV[4]) + 1000) end
return out
"""
)

# FORGET: KEYS: the owner's three, then the run's state and events keys. ARGV: run id, the
# expiry it was counted with. Forgets that run (unless it is another run by now).
FORGET = (
    _ACCOUNT
    + """
local score = redis.call('ZSCORE', kept, ARGV[1])
if not score or tonumber(score) ~= tonumber(ARGV[2]) then return 0 end
drop(ARGV[1])
if redis.call('GET', KEYS[4]) == 'done' then redis.call('DEL', KEYS[4], KEYS[5]) end
return 1
"""
)


class RedisRunStore(RunStore):
    """Run logs in Redis Streams. ``space`` names the keys' space, ``what`` the runs (in errors
    and logs), ``terminal`` recognises a run's last event and ``lost`` is the event followers
    get when the instance producing a run stopped without ending it; the defaults are AG-UI's."""

    def __init__(
        self,
        redis: RedisState,
        ttl: float,
        alive: float = 30.0,
        *,
        space: str = "agui",
        what: str = WHAT,
        terminal: Callable[[bytes], bool] = is_terminal,
        lost: bytes = LOST,
        max_kept: int = 0,
        max_bytes: int = 0,
        max_owner_bytes: int = 0,
    ) -> None:
        self.redis = redis
        self.ttl_ms = max(1, int(ttl * 1000))
        self.alive_ms = max(1, int(alive * 1000))
        # A follower's XREAD blocks at most half the command timeout, so it never times out.
        self.block_ms = max(10, int(redis.config.timeout * 500))
        self.space = space
        self.what = what
        self.terminal = terminal
        self.lost = lost
        self.channel = redis.key(space, "cancel")
        self._writers: dict[RunKey, asyncio.Task[None]] = {}
        #: Bounds on the finished runs kept (0: none): runs in all, bytes in all and per owner.
        self.max_kept = max_kept
        self.max_bytes = max_bytes
        self.max_owner_bytes = max_owner_bytes
        self._keep_owner = redis.script(KEEP_OWNER)
        self._keep_all = redis.script(KEEP_ALL)
        self._forget = redis.script(FORGET)
        self._listener: asyncio.Task[None] | None = None

    def _keys(self, owner: str, run_id: str) -> tuple[str, str]:
        key = self.redis.key
        return key(self.space, owner, "s", run_id), key(self.space, owner, "e", run_id)

    def _accounts(self, owner: str) -> list[str]:
        """The keys that count ``owner``'s kept runs (``*``: everyone's)."""
        key = self.redis.key
        return [key(self.space, owner, part) for part in ("kept", "sizes", "bytes")]

    async def start(self) -> None:
        self._listener = asyncio.create_task(self._listen())

    async def close(self) -> None:
        for task in [self._listener, *self._writers.values()]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._listener = None

    async def reserve(self, run: Run) -> bool:
        state, _ = self._keys(run.owner, run.run_id)
        async with self.redis.guard(self.what):
            return bool(await self.redis.client.set(state, RUNNING, nx=True, px=self.alive_ms))

    async def release(self, run: Run) -> None:
        async with self.redis.guard(self.what):
            await self.redis.client.delete(*self._keys(run.owner, run.run_id))

    def record(self, run: Run) -> None:
        self._writers[run.key] = asyncio.create_task(self._write(run))

    async def finish(self, run: Run) -> None:
        writer = self._writers.pop(run.key, None)
        if writer is not None:
            await writer
        if self.max_kept or self.max_bytes or self.max_owner_bytes:
            await self._keep(run)

    async def _keep(self, run: Run) -> None:
        """Count the finished run among those kept, and forget the oldest past the bounds."""
        owner, run_id = run.owner, run.run_id
        state, events = self._keys(owner, run_id)
        async with self.redis.guard(self.what):
            out = await self._keep_owner(
                self._accounts(owner),
                [
                    run_id,
                    run.size,
                    self.ttl_ms,
                    self.max_owner_bytes,
                    state.removesuffix(run_id),
                    events.removesuffix(run_id),
                ],
            )
            if not (self.max_bytes or self.max_kept):
                return
            ends, forgotten = out[0], out[1::2]
            mine = [f"{owner}\n{other.decode()}" for other in forgotten]
            evicted = await self._keep_all(
                self._accounts("*"),
                [
                    f"{owner}\n{run_id}",
                    run.size,
                    ends,
                    self.ttl_ms,
                    self.max_bytes,
                    self.max_kept,
                    *mine,
                ],
            )
        for member, expiry in zip(evicted[::2], evicted[1::2], strict=True):
            other, _, other_id = member.decode().partition("\n")
            async with self.redis.guard(self.what):
                await self._forget(
                    [*self._accounts(other), *self._keys(other, other_id)], [other_id, expiry]
                )

    async def lookup(self, owner: str, run_id: str) -> RunInfo | None:
        state, _ = self._keys(owner, run_id)
        async with self.redis.guard(self.what):
            found = await self.redis.client.get(state)
        return None if found is None else RunInfo(run_id, owner, found == DONE)

    async def follow(self, owner: str, run_id: str, after: int) -> AsyncGenerator[Batch, None]:
        state, events = self._keys(owner, run_id)
        client = self.redis.client
        number = max(0, after)  # the last event read
        # The first read does not wait: when nothing is there, the run's state says at once
        # whether it is still running (a run whose instance stopped is told without waiting a
        # blocking read's time, however long the Redis timeout makes that).
        block: int | None = None
        # Set once the run is done: its last events were written with that state (one
        # transaction), so one more read without waiting has every event it wrote.
        done = False
        while True:
            async with self.redis.guard(self.what):
                found = cast(
                    "StreamRead",
                    await client.xread({events: f"{number}-0"}, count=1000, block=block),
                )
            block = None if done else self.block_ms
            if found:
                batch: list[bytes] = []
                for entry_id, fields in found[0][1]:
                    events_in = fields[b"e"].split(b"\n")
                    last = int(entry_id.split(b"-")[0])
                    # the first entry may begin with events the follower already has
                    batch.extend(events_in[max(0, len(events_in) - (last - number)) :])
                    number = last
                if batch:
                    yield number - len(batch) + 1, batch
                if batch and self.terminal(batch[-1]):
                    return
                continue
            if done:
                return  # everything after ``after`` was read (a resume past the end)
            async with self.redis.guard(self.what):
                status = await client.get(state)
            if status == DONE:
                # Done since the read above, maybe with events of its own: read once more.
                done, block = True, None
                continue
            if status is None:
                # Expired: the instance producing the run stopped without finishing it.
                yield number + 1, [self.lost]
                return

    async def request_cancel(self, owner: str, run_id: str) -> None:
        async with self.redis.guard(self.what):
            await self.redis.client.publish(self.channel, f"{owner}\n{run_id}")

    # -- background tasks

    async def _write(self, run: Run) -> None:
        """Append the run's events to its stream as they come; at the end mark it done."""
        state, events = self._keys(run.owner, run.run_id)
        pos = 0
        failing = False
        heartbeat = self.alive_ms / 3000
        while True:
            if pos == len(run.events) and not run.done:
                await run.changed(heartbeat)  # nothing new by then: only refresh the lifetimes
            done = run.done  # read first: when set, the log below is complete
            batch = run.events[pos:]
            try:
                async with (
                    self.redis.guard(self.what),
                    self.redis.client.pipeline(transaction=True) as pipe,
                ):
                    if batch:
                        pipe.xadd(events, {"e": b"\n".join(batch)}, id=f"{pos + len(batch)}-0")
                    if done:
                        pipe.set(state, DONE, px=self.ttl_ms)
                        pipe.pexpire(events, self.ttl_ms)
                    else:
                        pipe.pexpire(state, self.alive_ms)
                        pipe.pexpire(events, self.alive_ms)
                    await pipe.execute()
                pos += len(batch)
                if failing:
                    failing = False
                    log.warning("run %s: its events reach Redis again", run.run_id)
                if done:
                    return
                # Let a few more events gather: fewer, larger entries; followers elsewhere
                # wait a few milliseconds more (followers here read the run directly).
                await asyncio.sleep(COALESCE)
            except GatewayError:
                if not failing:
                    failing = True
                    log.error("run %s: cannot store its events in Redis; retrying", run.run_id)
                await asyncio.sleep(1.0)
                pos = await self._stored(events, pos)

    async def _stored(self, events: str, guess: int) -> int:
        """How many events the stream holds (after a failed write that may have landed)."""
        try:
            async with self.redis.guard(self.what):
                newest = cast(
                    "list[StreamEntry]", await self.redis.client.xrevrange(events, count=1)
                )
        except GatewayError:
            return guess
        return int(newest[0][0].split(b"-")[0]) if newest else 0

    async def _listen(self) -> None:
        """Receive cancellation requests from every instance (one subscription per app)."""
        while True:
            pubsub: Any = None
            try:
                pubsub = self.redis.client.pubsub()
                await pubsub.subscribe(self.channel)
                async for message in pubsub_messages(pubsub):
                    if message.get("type") == "message" and self.on_cancel:
                        owner, _, run_id = message["data"].decode().partition("\n")
                        self.on_cancel(owner, run_id)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "%s cancellations: Redis subscription failed (%s); retrying", self.what, exc
                )
                await asyncio.sleep(1.0)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()
