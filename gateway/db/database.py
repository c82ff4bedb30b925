"""One database API over asyncpg (PostgreSQL) and aiosqlite (SQLite).

Statements are written once, with PostgreSQL's numbered placeholders (``$1``, ``$2``); SQLite
reads them as its own numbered ``?1``, ``?2``. Rows come back as plain dicts. Every call is bounded
by ``[database] timeout``; a database that is down or too slow becomes
:class:`~gateway.errors.Unavailable` (503 in the client's protocol), never a hung request.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import logging
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from itertools import chain
from pathlib import Path
from typing import Any, TypeAlias

from gateway.config.sections import DatabaseConfig
from gateway.errors import ConfigError, GatewayError, Unavailable

log = logging.getLogger(__name__)

#: A row: column name -> value.
Row: TypeAlias = dict[str, Any]

_PLACEHOLDER = re.compile(r"\$(\d+)")
#: Parameters of one SQLite statement at most (SQLite's limit before 3.32: 999).
_SQLITE_VARIABLES = 999


@functools.lru_cache(maxsize=64)
def _insert_sql(table: str, columns: tuple[str, ...], rows: int) -> str:
    """``INSERT INTO table (columns) VALUES ($1, ...), ...`` for ``rows`` rows."""
    n = len(columns)
    values = ", ".join(
        "(" + ", ".join(f"${r * n + i + 1}" for i in range(n)) + ")" for r in range(rows)
    )
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES {values}"


@functools.lru_cache(maxsize=128)
def _sqlite_insert_sql(table: str, columns: tuple[str, ...], rows: int) -> str:
    """``_insert_sql`` with SQLite's nameless ``?`` placeholders: numbered ones (``?1``) make
    SQLite's parser look each number up among those seen, a cost growing with the square of
    the statement's parameters (a thousand here), paid whenever a statement of a new size is
    prepared."""
    n = len(columns)
    values = ", ".join(["(" + ", ".join("?" * n) + ")"] * rows)
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES {values}"


def _flat(rows: Sequence[Sequence[Any]]) -> list[Any]:
    return list(chain.from_iterable(rows))


class Database:
    """The application's database (``gateway.state.database(path)``), opened with the app."""

    #: ``"postgres"`` or ``"sqlite"``.
    dialect: str = ""

    def __init__(self, config: DatabaseConfig) -> None:
        self.config = config
        self.timeout = float(config.timeout)

    async def open(self) -> None:
        """Connect and bring the schema up to date (see :mod:`gateway.db.migrations`)."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def execute(self, sql: str, *args: Any) -> None:
        raise NotImplementedError

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run ``sql`` once per row, in one transaction."""
        raise NotImplementedError

    async def insert_many(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        """Insert ``rows`` (values of ``columns``, in order) into ``table``, in one
        transaction."""
        await self.executemany(_insert_sql(table, tuple(columns), 1), rows)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        raise NotImplementedError

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    def transaction(self) -> Any:
        """``async with db.transaction() as tx:`` where ``tx`` has ``execute`` and ``fetch``;
        committed when the block ends, rolled back when it raises. On PostgreSQL the block may
        take ``pg_advisory_xact_lock``; on SQLite it holds the database's write lock."""
        raise NotImplementedError

    @asynccontextmanager
    async def guard(self, what: str) -> AsyncIterator[None]:
        """Bound the block by :attr:`timeout`; failures to reach the database become
        :class:`Unavailable` naming ``what``."""
        try:
            async with asyncio.timeout(self.timeout):
                yield
        except (TimeoutError, OSError) as exc:
            log.error("database %s failed for %s: %s", self.describe(), what, _describe(exc))
            raise Unavailable(
                f"The gateway cannot reach its database right now, so {what} cannot be used. "
                "Retry shortly.",
                code="database_unavailable",
                retry_after=1.0,
            ) from None
        except GatewayError:
            raise
        except Exception as exc:
            if not _is_db_error(exc):
                raise
            log.error("database %s failed for %s: %s", self.describe(), what, _describe(exc))
            raise GatewayError(f"The gateway's database failed ({what}).") from None

    def describe(self) -> str:
        return self.config.describe()


def _is_db_error(exc: Exception) -> bool:
    module = type(exc).__module__
    return module.startswith(("asyncpg", "sqlite3", "aiosqlite"))


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class PostgresDatabase(Database):
    dialect = "postgres"

    def __init__(self, config: DatabaseConfig) -> None:
        super().__init__(config)
        self._pool: Any = None

    async def open(self) -> None:
        import asyncpg

        from gateway.db.migrations import migrate

        self._pool = await asyncpg.create_pool(
            str(self.config.url),
            min_size=1,
            max_size=int(self.config.pool_size),
            timeout=self.timeout,
            command_timeout=self.timeout,
        )
        await migrate(self)
        log.info("database: PostgreSQL at %s", self.describe())

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    @property
    def pool(self) -> Any:
        if self._pool is None:
            raise RuntimeError("the database is used outside the application's lifetime")
        return self._pool

    async def execute(self, sql: str, *args: Any) -> None:
        await self.pool.execute(sql, *args)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self.pool.executemany(sql, rows)

    async def insert_many(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        """One ``COPY ... FROM STDIN`` (binary) of all the rows: one statement, so one
        transaction, with none of a prepared ``INSERT``'s round of bookkeeping a row."""
        await self.pool.copy_records_to_table(table, records=rows, columns=list(columns))

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return [dict(r) for r in await self.pool.fetch(sql, *args)]

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_PostgresTx]:
        async with self.pool.acquire() as conn, conn.transaction():
            yield _PostgresTx(conn)


class _PostgresTx:
    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def execute(self, sql: str, *args: Any) -> None:
        await self.conn.execute(sql, *args)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return [dict(r) for r in await self.conn.fetch(sql, *args)]


def sqlite_sql(sql: str) -> str:
    """``$1`` -> ``?1``: SQLite's numbered parameters."""
    return _PLACEHOLDER.sub(r"?\1", sql)


class SQLiteDatabase(Database):
    """One aiosqlite connection (its own thread) per process, in WAL mode so the CLI and a
    running gateway may use the file at once; writes wait up to ``timeout`` for the lock."""

    dialect = "sqlite"

    def __init__(self, config: DatabaseConfig) -> None:
        super().__init__(config)
        self._conn: Any = None
        #: Transactions are serialised: statements of two would interleave on one connection.
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        import aiosqlite

        from gateway.db.migrations import migrate

        path = self.config.sqlite_path()
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # isolation_level None: no implicit transactions; BEGIN is explicit where needed.
        self._conn = await aiosqlite.connect(path, isolation_level=None, timeout=self.timeout)
        self._conn.row_factory = _dict_row
        await self._conn.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")
        await self._wal()
        # WAL with NORMAL: a commit does not wait for fsync (the database cannot be corrupted;
        # a power cut may lose the last commits), which batched ledger writes need.
        await self._conn.execute("PRAGMA synchronous=NORMAL")
        await self._conn.execute("PRAGMA foreign_keys=ON")
        await migrate(self)
        log.info("database: SQLite file %s", path)

    async def _wal(self) -> None:
        """Switch the file to WAL. SQLite answers "locked" at once (no busy wait) while another
        connection is opening the same file, so it is asked again for up to ``timeout``."""
        import sqlite3

        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        pause = 0.005
        while True:
            try:
                await self.conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or loop.time() + pause > deadline:
                    raise
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.1)

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()

    @property
    def conn(self) -> Any:
        if self._conn is None:
            raise RuntimeError("the database is used outside the application's lifetime")
        return self._conn

    async def execute(self, sql: str, *args: Any) -> None:
        async with self._lock:
            await self.conn.execute(sqlite_sql(sql), args)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        async with self._lock:
            conn = self.conn
            await conn.execute("BEGIN")
            try:
                await conn.executemany(sqlite_sql(sql), rows)
            except BaseException:
                await conn.execute("ROLLBACK")
                raise
            await conn.execute("COMMIT")

    async def insert_many(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        """Many rows a statement (``INSERT ... VALUES (...), (...)``): the sqlite3 module gives
        up and takes back the GIL at each statement, and each time it takes it back the event
        loop's thread may have to wait for it; a statement a row made that a cost per row."""
        cols = tuple(columns)
        per = max(1, _SQLITE_VARIABLES // len(cols))
        whole, rest = divmod(len(rows), per)
        async with self._lock:
            conn = self.conn
            if len(rows) <= per:
                # One statement is its own transaction: one trip to the database's thread
                # instead of three (BEGIN, INSERT, COMMIT).
                if rows:
                    await conn.execute(_sqlite_insert_sql(table, cols, len(rows)), _flat(rows))
                return
            await conn.execute("BEGIN")
            try:
                if whole:
                    await conn.executemany(
                        _sqlite_insert_sql(table, cols, per),
                        [_flat(rows[i * per : (i + 1) * per]) for i in range(whole)],
                    )
                if rest:
                    await conn.execute(
                        _sqlite_insert_sql(table, cols, rest), _flat(rows[whole * per :])
                    )
            except BaseException:
                await conn.execute("ROLLBACK")
                raise
            await conn.execute("COMMIT")

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        async with self._lock:
            # Executed, read and closed in one trip to the database's thread.
            rows: list[Row] = list(await self.conn.execute_fetchall(sqlite_sql(sql), args))
            return rows

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_SQLiteTx]:
        async with self._lock:
            conn = self.conn
            await conn.execute("BEGIN IMMEDIATE")
            try:
                yield _SQLiteTx(conn)
            except BaseException:
                await conn.execute("ROLLBACK")
                raise
            await conn.execute("COMMIT")


class _SQLiteTx:
    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def execute(self, sql: str, *args: Any) -> None:
        await self.conn.execute(sqlite_sql(sql), args)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        cursor = await self.conn.execute(sqlite_sql(sql), args)
        rows: list[Row] = list(await cursor.fetchall())
        await cursor.close()
        return rows


def _dict_row(cursor: Any, row: tuple[Any, ...]) -> Row:
    return {d[0]: v for d, v in zip(cursor.description, row, strict=True)}


def connect_database(config: DatabaseConfig) -> Database:
    """The database ``config`` names (not yet open). Its driver must be installed: a
    :class:`~gateway.errors.ConfigError` says which extra brings it when it is not."""
    module, extra = ("asyncpg", "postgres") if config.url.postgres else ("aiosqlite", "sqlite")
    if importlib.util.find_spec(module) is None:
        raise ConfigError(
            [f"database: {config.describe()} needs {module}: pip install 'hookgate[{extra}]'"]
        )
    if config.url.postgres:
        return PostgresDatabase(config)
    return SQLiteDatabase(config)
