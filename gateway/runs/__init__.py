"""Runs that outlive their connection: produced once, followed by any number of clients.

An AG-UI run is produced by one background task on the instance that started it. Its events
are numbered from 1 and appended to the run's log; every client that follows the run (the one
that started it, others that attach later, one that reconnects with ``Last-Event-ID``) reads
that log from its own position, at its own pace. No client ever holds up the run or another
client, and no client costs a copy of the events: a slow reader just lags behind in the log.

The log lives in a :class:`RunStore`: :class:`MemoryRunStore` keeps it in this process (one
instance); :class:`~gateway.runs.redis.RedisRunStore` keeps it in Redis Streams, so a client
can attach, resume and cancel through any instance. A run is named by its owner (the principal
that started it) and the client's run id.
"""

from __future__ import annotations

from gateway.runs.log import Batch, Run, RunInfo, RunKey, RunStore, is_terminal
from gateway.runs.manager import Runs
from gateway.runs.memory import MemoryRunStore
from gateway.runs.redis import RedisRunStore

__all__ = [
    "Batch",
    "MemoryRunStore",
    "RedisRunStore",
    "Run",
    "RunInfo",
    "RunKey",
    "RunStore",
    "Runs",
    "is_terminal",
]
