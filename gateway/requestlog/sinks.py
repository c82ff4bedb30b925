"""Where request log records go. A sink is any class with ``async write(records)`` (and, if it
needs them, ``async start()`` / ``async close()``), built from ``[request_logs]`` and the
gateway; ``[request_logs] sink`` names a built-in one or ``"package.module:Class"``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from gateway import Database, Gateway, RedisState


class Sink:
    """The base of sinks: ``write`` a batch of records (JSON-ready dicts)."""

    def __init__(self, config: Any, gateway: Gateway) -> None:
        self.config = config

    async def start(self) -> None:
        """With the app (before the first record)."""

    async def write(self, records: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        """When the app stops (after the last record)."""


class FileSink(Sink):
    """Appends one JSON object a line to ``[request_logs] path`` (in a thread: file writes
    block)."""

    def __init__(self, config: Any, gateway: Gateway) -> None:
        super().__init__(config, gateway)
        if not config.path:
            raise ValueError("the file sink needs [request_logs] path")
        self.path = Path(config.path)

    async def start(self) -> None:
        """Make the file's directory and open it once: a path that cannot be written stops
        the start, naming the setting, rather than every batch failing after."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._append(b"")
        except OSError as exc:
            raise OSError(
                exc.errno,
                f"[request_logs] path {str(self.path)!r} cannot be written: {exc.strerror or exc}",
            ) from exc

    def _append(self, data: bytes) -> None:
        with self.path.open("ab") as f:
            f.write(data)

    async def write(self, records: list[dict[str, Any]]) -> None:
        data = b"".join(orjson.dumps(r) + b"\n" for r in records)
        await asyncio.get_running_loop().run_in_executor(None, self._append, data)


class DatabaseSink(Sink):
    """Rows of ``hookgate_request_logs`` (time, request id, the record as JSON)."""

    def __init__(self, config: Any, gateway: Gateway) -> None:
        super().__init__(config, gateway)
        self.db: Database = gateway.state.database("request_logs.sink")

    async def write(self, records: list[dict[str, Any]]) -> None:
        rows = [(r["ts"], r["request_id"], orjson.dumps(r).decode()) for r in records]
        async with self.db.guard("request logs"):
            await self.db.executemany(
                "INSERT INTO hookgate_request_logs (ts, request_id, record) VALUES ($1, $2, $3)",
                rows,
            )


class RedisStreamSink(Sink):
    """Entries of the Redis stream ``<prefix><[request_logs] stream>`` (field ``record``), kept
    to about ``[request_logs] max_entries``."""

    def __init__(self, config: Any, gateway: Gateway) -> None:
        super().__init__(config, gateway)
        self.redis: RedisState = gateway.state.redis("request_logs.sink")
        self.stream = self.redis.prefix + config.stream

    async def write(self, records: list[dict[str, Any]]) -> None:
        async with self.redis.guard("request logs"):
            pipe = self.redis.client.pipeline(transaction=False)
            for r in records:
                pipe.xadd(
                    self.stream,
                    {"record": orjson.dumps(r)},
                    maxlen=int(self.config.max_entries),
                    approximate=True,
                )
            await pipe.execute()


BUILTIN = {"file": FileSink, "database": DatabaseSink, "redis": RedisStreamSink}
