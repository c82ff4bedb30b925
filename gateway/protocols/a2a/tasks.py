"""Where A2A tasks are kept between their run and the calls that read them.

A task's run (its event log, followed by streams and subscriptions, and its cancellation) goes
through :mod:`gateway.runs`, like an AG-UI run. What outlives the run is the task itself: a
:class:`TaskRecord` (the task as its last event left it, the agent that ran it, when it was
created and last changed), written when the task is created and when its run ends, and read by
``GetTask``, ``ListTasks`` and the next message of the same context, on any instance.

:class:`MemoryTaskStore` keeps records in this process; :class:`RedisTaskStore` in Redis, per
owner (``O``, the caller's principal id) under the hash tag ``{O}``::

    <prefix>a2a:{O}:t:<task>     the record (JSON), expiring ``ttl`` after its last change
    <prefix>a2a:{O}:tasks        sorted set: task ids by last change (ListTasks)
    <prefix>a2a:{O}:c:<context>  sorted set: task ids of one context by creation
"""

from __future__ import annotations

import builtins
import collections
import time
from typing import TYPE_CHECKING, Any, cast

import attrs
import orjson

if TYPE_CHECKING:
    from gateway import RedisState

WHAT = "A2A tasks"


@attrs.frozen
class TaskRecord:
    """A task (1.0 JSON) and what the gateway knows about it."""

    task: dict[str, Any]
    agent: str
    created: float
    updated: float

    @property
    def id(self) -> str:
        return str(self.task["id"])

    @property
    def context_id(self) -> str:
        return str(self.task.get("contextId", ""))

    def dumps(self) -> bytes:
        return orjson.dumps(
            {
                "task": self.task,
                "agent": self.agent,
                "created": self.created,
                "updated": self.updated,
            }
        )

    @classmethod
    def loads(cls, data: bytes | str) -> TaskRecord:
        obj = orjson.loads(data)
        return cls(obj["task"], obj["agent"], obj["created"], obj["updated"])


class TaskStore:
    """Task records, each owned by the principal that created it."""

    async def put(self, owner: str, record: TaskRecord) -> None:
        raise NotImplementedError

    async def get(self, owner: str, task_id: str) -> TaskRecord | None:
        raise NotImplementedError

    async def delete(self, owner: str, task_id: str) -> None:
        raise NotImplementedError

    async def list(self, owner: str) -> list[TaskRecord]:
        """The owner's tasks, the most recently changed first."""
        raise NotImplementedError

    async def context(self, owner: str, context_id: str) -> builtins.list[TaskRecord]:
        """The owner's tasks of one context, the oldest first."""
        raise NotImplementedError


class MemoryTaskStore(TaskStore):
    """Records in this process: each kept ``ttl`` seconds after its last change, and at most
    ``max_kept`` of them (the least recently changed go first)."""

    def __init__(self, ttl: float, max_kept: int = 10_000) -> None:
        self.ttl = ttl
        self.max_kept = max_kept
        self.records: collections.OrderedDict[tuple[str, str], TaskRecord] = (
            collections.OrderedDict()
        )

    def _purge(self) -> None:
        records = self.records
        horizon = time.time() - self.ttl
        while records:
            key, oldest = next(iter(records.items()))
            if oldest.updated > horizon and len(records) <= self.max_kept:
                break
            del records[key]

    async def put(self, owner: str, record: TaskRecord) -> None:
        key = (owner, record.id)
        self.records.pop(key, None)
        self.records[key] = record
        self._purge()

    async def get(self, owner: str, task_id: str) -> TaskRecord | None:
        self._purge()
        return self.records.get((owner, task_id))

    async def delete(self, owner: str, task_id: str) -> None:
        self.records.pop((owner, task_id), None)

    async def list(self, owner: str) -> list[TaskRecord]:
        self._purge()
        return [r for (o, _), r in reversed(self.records.items()) if o == owner]

    async def context(self, owner: str, context_id: str) -> builtins.list[TaskRecord]:
        self._purge()
        found = [
            r for (o, _), r in self.records.items() if o == owner and r.context_id == context_id
        ]
        return sorted(found, key=lambda r: r.created)


class RedisTaskStore(TaskStore):
    def __init__(self, redis: RedisState, ttl: float) -> None:
        self.redis = redis
        self.ttl = ttl
        self.ttl_ms = max(1, int(ttl * 1000))

    def _task(self, owner: str, task_id: str) -> str:
        return self.redis.key("a2a", owner, "t", task_id)

    def _index(self, owner: str) -> str:
        return self.redis.key("a2a", owner, "tasks")

    def _context(self, owner: str, context_id: str) -> str:
        return self.redis.key("a2a", owner, "c", context_id)

    async def put(self, owner: str, record: TaskRecord) -> None:
        index, context = self._index(owner), self._context(owner, record.context_id)
        horizon = (time.time() - self.ttl) * 1000
        async with self.redis.guard(WHAT), self.redis.client.pipeline(transaction=True) as pipe:
            pipe.set(self._task(owner, record.id), record.dumps(), px=self.ttl_ms)
            pipe.zadd(index, {record.id: record.updated * 1000})
            pipe.zremrangebyscore(index, "-inf", horizon)
            pipe.pexpire(index, self.ttl_ms)
            pipe.zadd(context, {record.id: record.created * 1000})
            pipe.pexpire(context, self.ttl_ms)
            await pipe.execute()

    async def get(self, owner: str, task_id: str) -> TaskRecord | None:
        async with self.redis.guard(WHAT):
            data = await self.redis.client.get(self._task(owner, task_id))
        return None if data is None else TaskRecord.loads(data)

    async def delete(self, owner: str, task_id: str) -> None:
        async with self.redis.guard(WHAT):
            await self.redis.client.delete(self._task(owner, task_id))

    async def _records(self, owner: str, ids: builtins.list[bytes]) -> builtins.list[TaskRecord]:
        records: builtins.list[TaskRecord] = []
        for start in range(0, len(ids), 500):
            keys = [self._task(owner, i.decode()) for i in ids[start : start + 500]]
            async with self.redis.guard(WHAT):
                found = await self.redis.client.mget(keys)
            records.extend(TaskRecord.loads(data) for data in found if data is not None)
        return records

    async def list(self, owner: str) -> list[TaskRecord]:
        async with self.redis.guard(WHAT):
            ids = cast("list[bytes]", await self.redis.client.zrevrange(self._index(owner), 0, -1))
        return await self._records(owner, ids)

    async def context(self, owner: str, context_id: str) -> builtins.list[TaskRecord]:
        async with self.redis.guard(WHAT):
            ids = cast(
                "list[bytes]",
                await self.redis.client.zrange(self._context(owner, context_id), 0, -1),
            )
        return await self._records(owner, ids)
