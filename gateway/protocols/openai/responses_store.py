"""Where stored Responses live: the ``[responses]`` section and its memory and Redis stores.

A stored response is a :class:`ResponseRecord`: the ``response`` object as the client last saw
it, the input items of its request (ids given, item references resolved), and its **context**:
every item that came before that input through ``previous_response_id``. The next response
that names it continues from ``context + input + output``. Each input and output item is also
kept under its own id, so an ``item_reference`` finds it.

Every record and item is owned by the caller's principal id (``O``), so one key never reads
another's. In Redis, under the hash tag ``{O}``::

    <prefix>responses:{O}:r:<response id>   the record (JSON), expiring ``ttl`` after it is written
    <prefix>responses:{O}:i:<item id>       one item (JSON), expiring with its response
"""

from __future__ import annotations

import collections
import time
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

import attrs
import orjson
from redis.exceptions import WatchError

from gateway import Count, Duration

if TYPE_CHECKING:
    from gateway import RedisState

WHAT = "stored responses"


@attrs.frozen
class ResponsesConfig:
    """``[responses]``: responses kept for ``previous_response_id``, ``GET /v1/responses/{id}``,
    item references and background runs."""

    #: Where responses live: "auto" (Redis when [redis] url is set, else memory in one process),
    #: "memory", "redis", or "off" (nothing is kept: ``store`` is ignored, and
    #: ``previous_response_id``, item references and ``background`` are refused).
    store: str = "auto"
    #: How long a stored response (and its items) stays readable after it is written. OpenAI
    #: keeps them 30 days; every response is stored unless its request says ``store: false``,
    #: each with the whole conversation it continues, so the default is a day, like sessions.
    ttl: Duration = Duration(86400.0)
    #: Responses the memory store keeps at most (the oldest written go first).
    max_kept: Count = Count(1000)
    #: How often a background response checks whether another instance cancelled it.
    cancel_poll: Duration = Duration(1.0)


@attrs.frozen
class ResponseRecord:
    """A stored response: the object, its input items, and the items before them."""

    response: dict[str, Any]
    input: list[dict[str, Any]]
    context: list[dict[str, Any]]

    @property
    def id(self) -> str:
        return str(self.response["id"])

    @property
    def status(self) -> str:
        return str(self.response.get("status"))

    def conversation(self) -> list[dict[str, Any]]:
        """What a response naming this one as ``previous_response_id`` continues from."""
        return [*self.context, *self.input, *self.response.get("output", ())]

    def items(self) -> list[dict[str, Any]]:
        """The items kept under their own ids: the input and the output."""
        return [i for i in (*self.input, *self.response.get("output", ())) if "id" in i]

    def dumps(self) -> bytes:
        return orjson.dumps(
            {"response": self.response, "input": self.input, "context": self.context}
        )

    @classmethod
    def loads(cls, data: bytes | str) -> ResponseRecord:
        obj = orjson.loads(data)
        return cls(obj["response"], obj["input"], obj["context"])


class ResponseStore:
    """Stored responses and their items, each owned by the principal that created them."""

    async def put(self, owner: str, record: ResponseRecord) -> None:
        """Write the record and its items (replacing what was there)."""
        raise NotImplementedError

    async def replace(self, owner: str, record: ResponseRecord, statuses: Collection[str]) -> bool:
        """Write the record and its items only over a stored record whose status is one of
        ``statuses``, looked at and written in one step (a response that any instance cancelled
        or deleted meanwhile stays so); whether it was written."""
        raise NotImplementedError

    async def get(self, owner: str, response_id: str) -> ResponseRecord | None:
        raise NotImplementedError

    async def items(self, owner: str, ids: list[str]) -> list[dict[str, Any] | None]:
        """The items of these ids, in order (``None`` where none is kept)."""
        raise NotImplementedError

    async def delete(self, owner: str, response_id: str) -> bool:
        """Forget the response and its items; whether it existed."""
        raise NotImplementedError


class MemoryResponseStore(ResponseStore):
    """Records in this process, each kept ``ttl`` seconds, ``max_kept`` at most."""

    def __init__(self, ttl: float, max_kept: int) -> None:
        self.ttl = ttl
        self.max_kept = max_kept
        #: (owner, id) -> (written at, record), the oldest written first.
        self.records: collections.OrderedDict[tuple[str, str], tuple[float, ResponseRecord]] = (
            collections.OrderedDict()
        )
        #: (owner, item id) -> (response id, item).
        self.by_item: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}

    def _purge(self) -> None:
        records = self.records
        horizon = time.monotonic() - self.ttl
        while records:
            (owner, _), (written, oldest) = next(iter(records.items()))
            if written > horizon and len(records) <= self.max_kept:
                break
            self._forget(owner, oldest.id)

    def _forget(self, owner: str, response_id: str) -> bool:
        found = self.records.pop((owner, response_id), None)
        if found is None:
            return False
        for item in found[1].items():
            key = (owner, str(item["id"]))
            if self.by_item.get(key, ("",))[0] == response_id:
                del self.by_item[key]
        return True

    async def put(self, owner: str, record: ResponseRecord) -> None:
        self.records.pop((owner, record.id), None)
        self.records[(owner, record.id)] = (time.monotonic(), record)
        for item in record.items():
            self.by_item[(owner, str(item["id"]))] = (record.id, item)
        self._purge()

    async def replace(self, owner: str, record: ResponseRecord, statuses: Collection[str]) -> bool:
        # No await between the look and the write: one step on the event loop.
        self._purge()
        found = self.records.get((owner, record.id))
        if found is None or found[1].status not in statuses:
            return False
        await self.put(owner, record)
        return True

    async def get(self, owner: str, response_id: str) -> ResponseRecord | None:
        self._purge()
        found = self.records.get((owner, response_id))
        return None if found is None else found[1]

    async def items(self, owner: str, ids: list[str]) -> list[dict[str, Any] | None]:
        self._purge()
        found = [self.by_item.get((owner, i)) for i in ids]
        return [None if f is None else f[1] for f in found]

    async def delete(self, owner: str, response_id: str) -> bool:
        return self._forget(owner, response_id)


class RedisResponseStore(ResponseStore):
    def __init__(self, redis: RedisState, ttl: float) -> None:
        self.redis = redis
        self.ttl_ms = max(1, int(ttl * 1000))

    def _record(self, owner: str, response_id: str) -> str:
        return self.redis.key("responses", owner, "r", response_id)

    def _item(self, owner: str, item_id: str) -> str:
        return self.redis.key("responses", owner, "i", item_id)

    def _write(self, pipe: Any, owner: str, record: ResponseRecord) -> None:
        pipe.set(self._record(owner, record.id), record.dumps(), px=self.ttl_ms)
        for item in record.items():
            pipe.set(self._item(owner, str(item["id"])), orjson.dumps(item), px=self.ttl_ms)

    async def put(self, owner: str, record: ResponseRecord) -> None:
        async with self.redis.guard(WHAT), self.redis.client.pipeline(transaction=True) as pipe:
            self._write(pipe, owner, record)
            await pipe.execute()

    async def replace(self, owner: str, record: ResponseRecord, statuses: Collection[str]) -> bool:
        # WATCH, look, MULTI, write: the write fails when the record changed after the look
        # (then it is looked at again).
        key = self._record(owner, record.id)
        async with self.redis.guard(WHAT), self.redis.client.pipeline(transaction=True) as watched:
            pipe: Any = watched  # redis-py leaves multi() untyped
            while True:
                await pipe.watch(key)
                data = await pipe.get(key)
                if data is None or ResponseRecord.loads(data).status not in statuses:
                    return False  # leaving the pipeline unwatches the key
                pipe.multi()
                self._write(pipe, owner, record)
                try:
                    await pipe.execute()
                except WatchError:
                    continue
                return True

    async def get(self, owner: str, response_id: str) -> ResponseRecord | None:
        async with self.redis.guard(WHAT):
            data = await self.redis.client.get(self._record(owner, response_id))
        return None if data is None else ResponseRecord.loads(data)

    async def items(self, owner: str, ids: list[str]) -> list[dict[str, Any] | None]:
        if not ids:
            return []
        async with self.redis.guard(WHAT):
            found = await self.redis.client.mget([self._item(owner, i) for i in ids])
        return [None if data is None else orjson.loads(data) for data in found]

    async def delete(self, owner: str, response_id: str) -> bool:
        record = await self.get(owner, response_id)
        if record is None:
            return False
        keys = [self._record(owner, response_id)]
        keys += [self._item(owner, str(i["id"])) for i in record.items()]
        async with self.redis.guard(WHAT):
            await self.redis.client.delete(*keys)
        return True
