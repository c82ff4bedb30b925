"""The SQLite spend ledger's writer process: inserts the rows its standard input brings.

A worker's ledger rows leave the request path as plain tuples; written by the worker's own
SQLite connection, each batch was bound value by value on a thread of the worker holding its GIL,
which the event loop then waited for (and paid for in handoffs). Here they are inserted by a
process of their own, under a GIL of its own, on the machine's other cores.

Started as ``python gateway/core/sidecar.py writer.py PATH TIMEOUT PRIORITY TABLE COLUMN...``,
by path (it imports nothing of the gateway: see :mod:`gateway.core.sidecar`). Frames on stdin
(:func:`gateway.core.sidecar.frame`): lists of rows, the values of COLUMN... in order. Each
frame is inserted in one transaction, waiting up to TIMEOUT seconds for the file's write lock,
and answered on stdout with 5 bytes: ``0`` (written) or ``1`` (failed), then the frame's row
count (4 bytes, big-endian); a failure is also said on stderr. With PRIORITY ``idle`` it keeps to
Linux's idle scheduling class while it keeps up (:class:`gateway.core.sidecar.Turns`). At the
end of its input it has answered every frame, and exits.
"""

from __future__ import annotations

import logging
import sqlite3
import sys
from itertools import chain
from typing import Any, BinaryIO

log = logging.getLogger("hookgate.ledger_writer")

WRITTEN, FAILED = 0, 1
#: Values one statement binds at most (SQLite's limit before 3.32: 999).
VARIABLES = 999


if __package__:
    from gateway import sidecar
else:  # started through gateway/core/sidecar.py, by path (see there)
    sidecar = sys.modules["hookgate_sidecar"]


def ack(status: int, rows: int) -> bytes:
    """The answer to a frame of ``rows`` rows."""
    return bytes((status,)) + rows.to_bytes(4, "big")


class Inserter:
    """Rows into ``table`` (``columns`` in order): many a statement (``VALUES (...), (...)``),
    the statements of one batch in one transaction."""

    def __init__(self, conn: sqlite3.Connection, table: str, columns: list[str]) -> None:
        self.conn = conn
        self.per = max(1, VARIABLES // len(columns))
        self.head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
        self.row = "(" + ", ".join("?" * len(columns)) + ")"
        self._sql: dict[int, str] = {}

    def sql(self, rows: int) -> str:
        found = self._sql.get(rows)
        if found is None:
            found = self._sql[rows] = self.head + ", ".join([self.row] * rows)
        return found

    def insert(self, rows: list[Any]) -> None:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for i in range(0, len(rows), self.per):
                chunk = rows[i : i + self.per]
                conn.execute(self.sql(len(chunk)), list(chain.from_iterable(chunk)))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


def run(stream: BinaryIO, out: BinaryIO, inserter: Inserter, idle: Any = None) -> None:
    """Insert what ``stream`` carries, answering each frame on ``out``."""
    turns = sidecar.Turns(idle)
    for written, rows in sidecar.frames(stream):
        turns.arrived(written)
        try:
            inserter.insert(rows)
        except (sqlite3.Error, ValueError, TypeError, OverflowError) as exc:
            log.error("%d ledger rows not written: %s", len(rows), exc)
            out.write(ack(FAILED, len(rows)))
        else:
            out.write(ack(WRITTEN, len(rows)))
        out.flush()
        turns.handled()


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="hookgate ledger writer: %(message)s")
    path, timeout, priority, table, *columns = sys.argv[1:]
    # The module's timeout is SQLite's busy timeout: a locked file is waited for that long.
    conn = sqlite3.connect(path, isolation_level=None, timeout=float(timeout))
    # As the gateway's own connection (WAL is the file's, set when the gateway opened it).
    conn.execute("PRAGMA synchronous=NORMAL")
    idle = sidecar.background if priority == "idle" else None
    try:
        run(sys.stdin.buffer, sys.stdout.buffer, Inserter(conn, table, columns), idle)
    finally:
        conn.close()


if __name__ == "__main__":
    main()
