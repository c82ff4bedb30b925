"""The schema, as numbered migrations applied in order when the database is opened.

The missing migrations run in one transaction, each with its row in ``hookgate_migrations``
(all or none of them are applied); several instances starting at once take turns (PostgreSQL:
an advisory lock; SQLite: the write lock), so each migration runs exactly once. A migration is never edited once released: a change is a
new migration. The SQL is the common ground of PostgreSQL and SQLite (times are epoch seconds
in ``DOUBLE PRECISION``, JSON is ``TEXT``).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from gateway.db.database import Database

log = logging.getLogger(__name__)

#: Any number the gateway's migrations lock on (PostgreSQL advisory locks are per database).
_LOCK = 0x686F6F6B67617465 & 0x7FFFFFFFFFFFFFFF


@attrs.frozen
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


_BUDGET_COLUMNS = """
    rpm BIGINT,
    tpm BIGINT,
    budget_day DOUBLE PRECISION,
    budget_month DOUBLE PRECISION,
    budget_total DOUBLE PRECISION,
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "teams and virtual keys",
        (
            f"""CREATE TABLE hookgate_teams (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,{_BUDGET_COLUMNS}
            )""",
            f"""CREATE TABLE hookgate_keys (
                id TEXT PRIMARY KEY,
                digest TEXT NOT NULL UNIQUE,
                hint TEXT NOT NULL,
                name TEXT NOT NULL,
                team_id TEXT REFERENCES hookgate_teams (id),
                models TEXT,
                expires_at DOUBLE PRECISION,
                revoked_at DOUBLE PRECISION,{_BUDGET_COLUMNS}
            )""",
            "CREATE INDEX hookgate_keys_team ON hookgate_keys (team_id)",
        ),
    ),
    Migration(
        2,
        "spend ledger",
        (
            """CREATE TABLE hookgate_spend (
                ts DOUBLE PRECISION NOT NULL,
                day TEXT NOT NULL,
                request_id TEXT NOT NULL,
                key_id TEXT NOT NULL,
                team_id TEXT,
                model TEXT NOT NULL,
                target TEXT NOT NULL,
                input_tokens BIGINT NOT NULL,
                output_tokens BIGINT NOT NULL,
                cached_tokens BIGINT NOT NULL,
                cache_write_tokens BIGINT NOT NULL,
                reasoning_tokens BIGINT NOT NULL,
                cost DOUBLE PRECISION NOT NULL,
                status TEXT NOT NULL,
                latency_ms DOUBLE PRECISION NOT NULL
            )""",
            "CREATE INDEX hookgate_spend_day ON hookgate_spend (day)",
            "CREATE INDEX hookgate_spend_key ON hookgate_spend (key_id, day)",
            "CREATE INDEX hookgate_spend_team ON hookgate_spend (team_id, day)",
        ),
    ),
    Migration(
        3,
        "request logs",
        (
            """CREATE TABLE hookgate_request_logs (
                ts DOUBLE PRECISION NOT NULL,
                request_id TEXT NOT NULL,
                record TEXT NOT NULL
            )""",
            "CREATE INDEX hookgate_request_logs_ts ON hookgate_request_logs (ts)",
        ),
    ),
)


async def migrate(db: Database, migrations: tuple[Migration, ...] = MIGRATIONS) -> list[int]:
    """Apply the migrations ``db`` lacks, in order; the versions applied now."""
    applied: list[int] = []
    async with db.transaction() as tx:
        if db.dialect == "postgres":
            await tx.execute(f"SELECT pg_advisory_xact_lock({_LOCK})")
        await tx.execute(
            """CREATE TABLE IF NOT EXISTS hookgate_migrations (
                version BIGINT PRIMARY KEY,
                name TEXT NOT NULL,
                applied_at DOUBLE PRECISION NOT NULL
            )"""
        )
        done = {r["version"] for r in await tx.fetch("SELECT version FROM hookgate_migrations")}
        for m in migrations:
            if m.version in done:
                continue
            for statement in m.statements:
                await tx.execute(statement)
            await tx.execute(
                "INSERT INTO hookgate_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                m.version,
                m.name,
                time.time(),
            )
            applied.append(m.version)
    if applied:
        log.info("database %s: applied migrations %s", db.describe(), applied)
    return applied
