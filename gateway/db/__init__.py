"""The database: keys, teams and the spend ledger, shared by every instance.

PostgreSQL through asyncpg when ``[database] url`` is ``postgres://...``; SQLite through
aiosqlite (a file under ``[database] data_dir``) as the embedded default for one machine. Both
take the same SQL (written with ``$1`` placeholders) and the same numbered migrations, applied
when the database is opened. Plugins get the application's one :class:`Database` from
``gateway.state.database(path)`` while the app is built; it is opened with the app.
"""

from __future__ import annotations

from gateway.config.sections import DatabaseConfig, DatabaseUrl
from gateway.db.database import Database, Row, connect_database
from gateway.db.migrations import MIGRATIONS, Migration, migrate

__all__ = [
    "MIGRATIONS",
    "Database",
    "DatabaseConfig",
    "DatabaseUrl",
    "Migration",
    "Row",
    "connect_database",
    "migrate",
]
