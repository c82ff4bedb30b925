"""Shared state: memory when the gateway runs alone, Redis when ``[redis] url`` is set.

Sessions, rate-limit counters, and later run event logs, webhook delivery ids, poller locks and
A2A tasks live behind small store interfaces with a memory and a Redis implementation. This
package is where a plugin finds out which one to use and gets the shared client:

- ``gateway.state.choose(path, store)`` resolves a section's ``store = "auto" | "memory" |
  "redis"`` (auto: Redis when ``[redis] url`` is set) and applies the rules below;
- ``gateway.state.memory(path)`` declares state kept in this process; with ``--workers`` above 1
  that is refused at startup (a :class:`~gateway.errors.ConfigError` naming ``path``), since each
  worker would keep its own copy;
- ``gateway.state.redis(path)`` returns the application's one pooled client
  (:class:`~gateway.state.redis.RedisState`), opened when the app starts and closed when it
  stops. Use ``state.key(space, tag, ...)`` for key names (prefix and cluster hash tag) and
  ``async with state.guard("what"):`` around calls (Redis down: 503 in the client's protocol).

- ``gateway.state.database(path)`` returns the application's one
  :class:`~gateway.db.Database` (``[database]``: PostgreSQL, or the embedded SQLite file), opened
  (and migrated) when the app starts and closed when it stops.

All four are called while the app is built (in a plugin's factory), never per request.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Literal

from gateway.config.sections import DatabaseConfig, RedisConfig, RedisUrl

if TYPE_CHECKING:
    from aiohttp import web

    from gateway.config.sections import Config
    from gateway.db import Database
    from gateway.state.redis import RedisState

__all__ = ["RedisConfig", "RedisUrl", "SharedState"]

log = logging.getLogger(__name__)


class SharedState:
    """Where this application keeps state other instances may need (``gateway.state``)."""

    def __init__(self, config: Config) -> None:
        self.config: RedisConfig = config.section("redis")
        self.database_config: DatabaseConfig = config.section("database")
        self._database: Database | None = None
        self.workers = int(config.server.workers)
        self._redis: RedisState | None = None
        #: What uses which store, by configuration path (``{"sessions.store": "redis"}``).
        self.users: dict[str, str] = {}

    @property
    def redis_configured(self) -> bool:
        """Whether ``[redis] url`` (or ``HOOKGATE_REDIS_URL``) is set."""
        return bool(self.config.url)

    def choose(self, path: str, store: str) -> Literal["memory", "redis"]:
        """Resolve ``store`` (``auto``, ``memory`` or ``redis``) for the option at ``path`` and
        declare the use (see :meth:`memory` and :meth:`redis`)."""
        if store == "auto":
            store = "redis" if self.redis_configured else "memory"
        if store == "redis":
            self.redis(path)
            return "redis"
        if store == "memory":
            self.memory(path)
            return "memory"
        from gateway.errors import ConfigError

        raise ConfigError([f"{path}: expected 'auto', 'memory' or 'redis', not {store!r}"])

    def memory(self, path: str) -> None:
        """Declare state that other instances would need, kept in this process."""
        if self.workers > 1:
            from gateway.errors import ConfigError

            raise ConfigError(
                [
                    f"{path}: the memory store keeps state inside one process, but "
                    f"server.workers = {self.workers} runs {self.workers} of them, each with "
                    "its own copy; set [redis] url (HOOKGATE_REDIS_URL) to share state through "
                    "Redis, or run one worker"
                ]
            )
        self.users[path] = "memory"

    def redis(self, path: str) -> RedisState:
        """The application's Redis client, for the option at ``path``."""
        if not self.redis_configured:
            from gateway.errors import ConfigError

            raise ConfigError(
                [f"{path}: the redis store needs [redis] url (or HOOKGATE_REDIS_URL) to be set"]
            )
        if self._redis is None:
            from gateway.state.redis import RedisState

            self._redis = RedisState(self.config)
        self.users[path] = "redis"
        return self._redis

    def database(self, path: str) -> Database:
        """The application's database, for the option at ``path``. The embedded SQLite file
        belongs to one machine: with several workers that is allowed (they share the file), but
        several hosts need ``[database] url`` to name a PostgreSQL."""
        if self._database is None:
            from gateway.db import connect_database

            self._database = connect_database(self.database_config)
        self.users[path] = "database"
        return self._database

    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        """Open the Redis client and the database (if anything asked for them) with the app;
        close them after."""
        redis, database = self._redis, self._database
        if redis is not None:
            await redis.open()
        if database is not None:
            try:
                await database.open()
            except BaseException:
                if redis is not None:
                    await redis.close()
                raise
        try:
            yield
        finally:
            if database is not None:
                await database.close()
            if redis is not None:
                await redis.close()
