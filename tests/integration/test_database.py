"""The database room on both engines: migrations applied once, even by instances starting
together, and the key store's operations the admin API and ``hookgate keys`` rely on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway import BadRequest, ConfigError, Database, NotFound, connect_database
from gateway.config.sections import DatabaseConfig, DatabaseUrl
from gateway.db import MIGRATIONS, migrate
from gateway.keys.store import KeyStore, digest


@pytest.fixture(params=["sqlite", "postgres"])
def db_config(request: pytest.FixtureRequest, tmp_path: Path) -> DatabaseConfig:
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
        return DatabaseConfig(url=DatabaseUrl.parse(url))
    return DatabaseConfig(data_dir=str(tmp_path / "data"))


@pytest.fixture
async def db(db_config: DatabaseConfig) -> AsyncIterator[Database]:
    database = connect_database(db_config)
    await database.open()
    yield database
    await database.close()


async def test_migrations_run_once_in_order(db: Database) -> None:
    rows = await db.fetch("SELECT version, name FROM hookgate_migrations ORDER BY version")
    assert [(r["version"], r["name"]) for r in rows] == [(m.version, m.name) for m in MIGRATIONS]
    assert await migrate(db) == []  # already there: nothing applied again
    for table in ("hookgate_keys", "hookgate_teams", "hookgate_spend", "hookgate_request_logs"):
        assert await db.fetch(f"SELECT * FROM {table}") == []


@pytest.mark.parametrize("count", [1, 66, 150])
async def test_many_rows_are_inserted_whole_and_in_order(db: Database, count: int) -> None:
    # SQLite takes several rows a statement (66 of 15 columns), and the rest in one more.
    from gateway.spend.ledger import COLUMNS

    rows = [
        (float(i), "2026-12-01", f"r{i}", "k", None, "m", "b/m", i, 2 * i, 0, 0, 0, 0.5, "ok", 1.0)
        for i in range(count)
    ]
    await db.insert_many("hookgate_spend", COLUMNS, rows)
    got = await db.fetch(
        "SELECT request_id, output_tokens, team_id FROM hookgate_spend ORDER BY ts"
    )
    assert [(r["request_id"], r["output_tokens"], r["team_id"]) for r in got] == [
        (f"r{i}", 2 * i, None) for i in range(count)
    ]


async def test_a_batch_with_a_bad_row_inserts_none_of_its_rows(db: Database) -> None:
    from gateway.spend.ledger import COLUMNS

    def row(i: int, key: str | None) -> tuple[Any, ...]:
        return (
            float(i),
            "2026-12-01",
            f"r{i}",
            key,
            None,
            "m",
            "b/m",
            1,
            2,
            0,
            0,
            0,
            0.5,
            "ok",
            1.0,
        )

    # A row without its key (NOT NULL) between two good ones: the batch fails whole.
    with pytest.raises(Exception):  # noqa: B017 (each driver raises its own)
        await db.insert_many("hookgate_spend", COLUMNS, [row(0, "k"), row(1, None), row(2, "k")])
    assert await db.fetch("SELECT request_id FROM hookgate_spend") == []
    await db.insert_many("hookgate_spend", COLUMNS, [row(3, "k")])
    got = await db.fetch("SELECT request_id FROM hookgate_spend")
    assert [r["request_id"] for r in got] == ["r3"]


async def test_instances_starting_together_migrate_once(db_config: DatabaseConfig) -> None:
    databases = [connect_database(db_config) for _ in range(4)]
    try:
        await asyncio.gather(*(d.open() for d in databases))
        rows = await databases[0].fetch("SELECT version FROM hookgate_migrations")
        assert sorted(r["version"] for r in rows) == [m.version for m in MIGRATIONS]
    finally:
        for d in databases:
            await d.close()


async def test_embedded_file_lives_under_the_data_dir(tmp_path: Path) -> None:
    cfg = DatabaseConfig(data_dir=str(tmp_path / "d"))
    database = connect_database(cfg)
    await database.open()
    await database.close()
    assert (tmp_path / "d" / "hookgate.db").is_file()
    assert DatabaseConfig(url=DatabaseUrl.parse("sqlite:////x/y.db")).sqlite_path() == "/x/y.db"
    for bad in ("mysql://h/db", "sqlite://relative.db", "nonsense"):
        with pytest.raises(ValueError, match="not a database URL"):
            DatabaseUrl.parse(bad)


async def test_keys_and_teams(db: Database) -> None:
    store = KeyStore(db)
    team = await store.create_team({"id": "eng", "name": "Engineering", "budget": {"day": 5}})
    assert team.to_json()["budget"] == {"day": 5.0, "month": None, "total": None}
    key, secret = await store.create_key(
        {
            "name": "ci",
            "team": "eng",
            "models": ["m1"],
            "rpm": 10,
            "budget": {"total": 2.5},
            "expires_at": "2030-01-01T00:00:00Z",
            "metadata": {"owner": "ada"},
        }
    )
    assert secret.startswith("hg-") and key.hint == secret[-4:]
    # Only the digest is kept: the secret appears nowhere in the database.
    rows = await db.fetch("SELECT * FROM hookgate_keys")
    assert secret not in repr(rows) and rows[0]["digest"] == digest(secret)
    shown = key.to_json()
    assert shown["team"] == "eng" and shown["models"] == ["m1"] and shown["rpm"] == 10
    assert shown["expires_at"] == "2030-01-01T00:00:00Z" and shown["metadata"] == {"owner": "ada"}
    assert (await store.by_digest(digest(secret))) == key

    updated = await store.update_key(key.id, {"models": None, "budget": {"total": None}})
    assert updated.models is None and updated.limits.budget == {}
    assert [k.id for k in await store.keys(team="eng")] == [key.id]

    rotated, new_secret, old = await store.rotate_key(key.id)
    assert old == digest(secret) and new_secret != secret and rotated.id == key.id
    assert await store.by_digest(digest(secret)) is None

    revoked = await store.revoke_key(key.id)
    assert revoked.revoked_at is not None and not revoked.usable(revoked.revoked_at + 1)
    assert await store.keys() == [] and len(await store.keys(revoked=True)) == 1
    with pytest.raises(BadRequest, match="revoked"):
        await store.rotate_key(key.id)

    changed = await store.update_team("eng", {"rpm": 100, "metadata": {"cost_centre": "42"}})
    assert changed.limits.rpm == 100 and changed.metadata == {"cost_centre": "42"}
    assert [t.id for t in await store.teams()] == ["eng"]


async def test_bad_input_is_refused_with_the_field(db: Database) -> None:
    store = KeyStore(db)
    cases = [
        ({}, "'name' is required"),
        ({"name": "x", "rpm": -1}, "'rpm'"),
        ({"name": "x", "budget": {"week": 1}}, "Unknown budget period"),
        ({"name": "x", "budget": {"day": "lots"}}, "budget.day"),
        ({"name": "x", "models": "m1"}, "'models'"),
        ({"name": "x", "expires_at": "soon"}, "'expires_at'"),
        ({"name": "x", "colour": "red"}, "Unknown field"),
        ({"name": "x", "team": "nobody"}, "No team 'nobody'"),
    ]
    for fields, message in cases:
        with pytest.raises(BadRequest, match=message):
            await store.create_key(fields)
    with pytest.raises(NotFound):
        await store.key("key_missing")
    with pytest.raises(NotFound):
        await store.update_team("missing", {"rpm": 1})
    await store.create_team({"id": "t", "name": "T"})
    with pytest.raises(BadRequest, match="exists"):
        await store.create_team({"id": "t", "name": "T again"})


def test_missing_driver_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "asyncpg" else real(name)
    )
    cfg = DatabaseConfig(url=DatabaseUrl.parse("postgres://db.example/x"))
    with pytest.raises(ConfigError) as caught:
        connect_database(cfg)
    assert "hookgate[postgres]" in caught.value.errors[0]
