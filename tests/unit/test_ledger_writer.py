"""The SQLite ledger's writer program (gateway/spend/writer.py), fed frames as the gateway writes
them: each frame inserted in one transaction and answered, written or failed."""

from __future__ import annotations

import io
import sqlite3
import time
from pathlib import Path

from gateway import sidecar
from gateway.spend.ledger import COLUMNS
from gateway.spend.writer import FAILED, WRITTEN, Inserter, ack, run

ROW = (1.5, "2026-12-01", "r", "k", None, "m", "b/m", 11, 7, 0, 0, 0, 2.5e-05, "success", 3.0)


def _table(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    columns = ", ".join(COLUMNS)
    conn.execute(f"CREATE TABLE hookgate_spend ({columns})")
    return conn


def _frames(*batches: list[tuple[object, ...]]) -> io.BytesIO:
    return io.BytesIO(b"".join(sidecar.frame(list(b), time.monotonic_ns()) for b in batches))


def test_each_frame_is_inserted_and_answered(tmp_path: Path) -> None:
    conn = _table(tmp_path / "ledger.db")
    # More rows than one statement binds (999 values: 66 rows of 15): a batch of several
    # statements, in one transaction.
    big = [(*ROW[:2], f"r{i}", *ROW[3:]) for i in range(150)]
    out = io.BytesIO()
    run(_frames([ROW], big), out, Inserter(conn, "hookgate_spend", list(COLUMNS)))
    assert out.getvalue() == ack(WRITTEN, 1) + ack(WRITTEN, 150)
    rows = conn.execute("SELECT * FROM hookgate_spend ORDER BY rowid").fetchall()
    assert rows[0] == ROW and len(rows) == 151
    assert [r[2] for r in rows[1:]] == [f"r{i}" for i in range(150)]


def test_a_frame_that_cannot_be_written_is_answered_failed_and_leaves_the_others(
    tmp_path: Path,
) -> None:
    conn = _table(tmp_path / "ledger.db")
    short = [ROW, ROW[:-1]]  # a row without its last value: the whole frame fails
    out = io.BytesIO()
    run(_frames([ROW], short, [ROW]), out, Inserter(conn, "hookgate_spend", list(COLUMNS)))
    assert out.getvalue() == ack(WRITTEN, 1) + ack(FAILED, 2) + ack(WRITTEN, 1)
    # The failed frame's first row went with its transaction.
    assert conn.execute("SELECT COUNT(*) FROM hookgate_spend").fetchone() == (2,)


def test_a_locked_file_fails_the_frame_after_the_timeout(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    _table(path).close()
    lock = sqlite3.connect(path, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=0.1)
        out = io.BytesIO()
        run(_frames([ROW]), out, Inserter(conn, "hookgate_spend", list(COLUMNS)))
        assert out.getvalue() == ack(FAILED, 1)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
