"""Virtual keys and teams in the database: created, listed, changed, rotated and revoked.

The admin API and ``hookgate keys`` both go through :class:`KeyStore`. A key's secret is shown
once, when it is created or rotated; the database keeps only its SHA-256 digest and a hint (its
last four characters). A key's id stays the same across rotations, so its limits, budgets,
sessions and spend carry on.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import attrs
import orjson

from gateway import BadRequest, Database, NotFound

#: Budget periods, in the order they are listed.
PERIODS = ("day", "month", "total")
#: What a key's secret starts with (so it is recognisable in a leak scanner's rules).
SECRET_PREFIX = "hg-"

_KEY_COLUMNS = (
    "id, digest, hint, name, team_id, models, expires_at, revoked_at, rpm, tpm, "
    "budget_day, budget_month, budget_total, metadata, created_at, updated_at"
)
_TEAM_COLUMNS = (
    "id, name, rpm, tpm, budget_day, budget_month, budget_total, metadata, created_at, updated_at"
)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


@attrs.frozen
class Limits:
    """Requests and tokens per minute (``None``: the defaults apply; 0: no limit) and spend
    limits in USD per period (``None``: none)."""

    rpm: int | None = None
    tpm: int | None = None
    budget: Mapping[str, float] = attrs.Factory(dict)

    def budget_json(self) -> dict[str, float | None]:
        return {p: self.budget.get(p) for p in PERIODS}


@attrs.frozen
class Team:
    id: str
    name: str
    limits: Limits
    metadata: Mapping[str, Any]
    created_at: float
    updated_at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "object": "team",
            "id": self.id,
            "name": self.name,
            "rpm": self.limits.rpm,
            "tpm": self.limits.tpm,
            "budget": self.limits.budget_json(),
            "metadata": dict(self.metadata),
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        }


@attrs.frozen
class VirtualKey:
    id: str
    digest: str
    hint: str
    name: str
    team_id: str | None
    models: tuple[str, ...] | None
    expires_at: float | None
    revoked_at: float | None
    limits: Limits
    metadata: Mapping[str, Any]
    created_at: float
    updated_at: float

    def usable(self, now: float) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def to_json(self) -> dict[str, Any]:
        return {
            "object": "key",
            "id": self.id,
            "name": self.name,
            "hint": f"{SECRET_PREFIX}...{self.hint}",
            "team": self.team_id,
            "models": list(self.models) if self.models is not None else None,
            "rpm": self.limits.rpm,
            "tpm": self.limits.tpm,
            "budget": self.limits.budget_json(),
            "expires_at": iso(self.expires_at),
            "revoked_at": iso(self.revoked_at),
            "metadata": dict(self.metadata),
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        }


def _limits(row: Mapping[str, Any]) -> Limits:
    budget = {p: float(row[f"budget_{p}"]) for p in PERIODS if row[f"budget_{p}"] is not None}
    rpm, tpm = row["rpm"], row["tpm"]
    return Limits(None if rpm is None else int(rpm), None if tpm is None else int(tpm), budget)


def _key(row: Mapping[str, Any]) -> VirtualKey:
    models = row["models"]
    return VirtualKey(
        id=row["id"],
        digest=row["digest"],
        hint=row["hint"],
        name=row["name"],
        team_id=row["team_id"],
        models=tuple(orjson.loads(models)) if models is not None else None,
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        limits=_limits(row),
        metadata=orjson.loads(row["metadata"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _team(row: Mapping[str, Any]) -> Team:
    return Team(
        id=row["id"],
        name=row["name"],
        limits=_limits(row),
        metadata=orjson.loads(row["metadata"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


# --- checking what callers send ---------------------------------------------------------------

_KEY_FIELDS = {"name", "team", "models", "rpm", "tpm", "budget", "expires_at", "metadata"}
_TEAM_FIELDS = {"id", "name", "rpm", "tpm", "budget", "metadata"}


def _count(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadRequest(f"'{name}' must be a whole number of at least 0, or null.", param=name)
    return value


def _budget(value: Any) -> dict[str, float | None]:
    if not isinstance(value, dict):
        raise BadRequest(
            "'budget' must be an object {day, month, total} of USD amounts.", param="budget"
        )
    out: dict[str, float | None] = {}
    for period, amount in value.items():
        if period not in PERIODS:
            raise BadRequest(
                f"Unknown budget period {period!r}: expected day, month or total.",
                param=f"budget.{period}",
            )
        if amount is not None and (
            isinstance(amount, bool)
            or not isinstance(amount, int | float)
            or not math.isfinite(amount)
            or amount < 0
        ):
            raise BadRequest(
                f"'budget.{period}' must be a number of USD of at least 0, or null.",
                param=f"budget.{period}",
            )
        out[period] = None if amount is None else float(amount)
    return out


def _expiry(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            return when.timestamp()
    raise BadRequest(
        "'expires_at' must be an ISO 8601 time (2026-12-31T00:00:00Z), epoch seconds, or null.",
        param="expires_at",
    )


def _checked(fields: Mapping[str, Any], allowed: set[str]) -> dict[str, Any]:
    """The columns to write for ``fields`` (as the admin API and the CLI receive them)."""
    if not isinstance(fields, Mapping):
        raise BadRequest("Expected a JSON object.")
    unknown = set(fields) - allowed
    if unknown:
        raise BadRequest(
            f"Unknown field(s) {', '.join(sorted(map(repr, unknown)))}; expected "
            f"{', '.join(sorted(allowed))}.",
            param=sorted(unknown)[0],
        )
    columns: dict[str, Any] = {}
    for name, value in fields.items():
        if name in ("name", "id"):
            if not isinstance(value, str) or not value.strip() or len(value) > 200:
                raise BadRequest(f"'{name}' must be a non-empty string.", param=name)
            columns[name] = value.strip()
        elif name == "team":
            if value is not None and (not isinstance(value, str) or not value):
                raise BadRequest("'team' must be a team id, or null.", param="team")
            columns["team_id"] = value
        elif name == "models":
            if value is not None and not (
                isinstance(value, list) and all(isinstance(m, str) and m for m in value)
            ):
                raise BadRequest(
                    "'models' must be a list of model names, or null for all.", param="models"
                )
            columns["models"] = None if value is None else orjson.dumps(value).decode()
        elif name in ("rpm", "tpm"):
            columns[name] = _count(name, value)
        elif name == "budget":
            for period, amount in _budget(value).items():
                columns[f"budget_{period}"] = amount
        elif name == "expires_at":
            columns["expires_at"] = _expiry(value)
        elif name == "metadata":
            if not isinstance(value, dict):
                raise BadRequest("'metadata' must be a JSON object.", param="metadata")
            columns["metadata"] = orjson.dumps(value).decode()
    return columns


class KeyStore:
    """Keys and teams in ``db`` (migrated by :mod:`gateway.db.migrations`)."""

    def __init__(self, db: Database, clock: Any = time.time) -> None:
        self.db = db
        self.clock = clock

    # --- keys --------------------------------------------------------------------------------

    async def create_key(self, fields: Mapping[str, Any]) -> tuple[VirtualKey, str]:
        """A new key and its secret (shown this once)."""
        columns = _checked(fields, _KEY_FIELDS)
        if "name" not in columns:
            raise BadRequest("'name' is required.", param="name")
        await self._team_exists(columns.get("team_id"))
        secret = new_secret()
        now = self.clock()
        columns.update(
            id="key_" + secrets.token_hex(8),
            digest=digest(secret),
            hint=secret[-4:],
            created_at=now,
            updated_at=now,
        )
        columns.setdefault("metadata", "{}")
        await self._insert("hookgate_keys", columns)
        return await self.key(columns["id"]), secret

    async def keys(self, team: str | None = None, revoked: bool = False) -> list[VirtualKey]:
        sql = f"SELECT {_KEY_COLUMNS} FROM hookgate_keys"
        where, args = [], []
        if team is not None:
            args.append(team)
            where.append(f"team_id = ${len(args)}")
        if not revoked:
            where.append("revoked_at IS NULL")
        if where:
            sql += " WHERE " + " AND ".join(where)
        async with self.db.guard("keys"):
            rows = await self.db.fetch(sql + " ORDER BY created_at, id", *args)
        return [_key(r) for r in rows]

    async def key(self, key_id: str) -> VirtualKey:
        async with self.db.guard("keys"):
            row = await self.db.fetchrow(
                f"SELECT {_KEY_COLUMNS} FROM hookgate_keys WHERE id = $1", key_id
            )
        if row is None:
            raise NotFound(f"No key {key_id!r}.", code="key_not_found")
        return _key(row)

    async def by_digest(self, key_digest: str) -> VirtualKey | None:
        async with self.db.guard("API keys"):
            row = await self.db.fetchrow(
                f"SELECT {_KEY_COLUMNS} FROM hookgate_keys WHERE digest = $1", key_digest
            )
        return None if row is None else _key(row)

    async def update_key(self, key_id: str, fields: Mapping[str, Any]) -> VirtualKey:
        columns = _checked(fields, _KEY_FIELDS)
        if "team_id" in columns:
            await self._team_exists(columns["team_id"])
        await self._update("hookgate_keys", key_id, columns)
        return await self.key(key_id)

    async def rotate_key(self, key_id: str) -> tuple[VirtualKey, str, str]:
        """A new secret for the key (the old one stops working); the key, the secret, and the
        old secret's digest (to invalidate caches)."""
        old = await self.key(key_id)
        if old.revoked_at is not None:
            raise BadRequest(f"Key {key_id!r} is revoked; create a new one.", code="key_revoked")
        secret = new_secret()
        await self._update("hookgate_keys", key_id, {"digest": digest(secret), "hint": secret[-4:]})
        return await self.key(key_id), secret, old.digest

    async def revoke_key(self, key_id: str) -> VirtualKey:
        key = await self.key(key_id)
        if key.revoked_at is None:
            await self._update("hookgate_keys", key_id, {"revoked_at": self.clock()})
            key = await self.key(key_id)
        return key

    # --- teams -------------------------------------------------------------------------------

    async def create_team(self, fields: Mapping[str, Any]) -> Team:
        columns = _checked(fields, _TEAM_FIELDS)
        if "name" not in columns:
            raise BadRequest("'name' is required.", param="name")
        columns.setdefault("id", "team_" + secrets.token_hex(6))
        if await self._row("hookgate_teams", columns["id"]) is not None:
            raise BadRequest(f"Team {columns['id']!r} exists.", code="team_exists", param="id")
        now = self.clock()
        columns.update(created_at=now, updated_at=now)
        columns.setdefault("metadata", "{}")
        await self._insert("hookgate_teams", columns)
        return await self.team(columns["id"])

    async def teams(self) -> list[Team]:
        async with self.db.guard("teams"):
            rows = await self.db.fetch(
                f"SELECT {_TEAM_COLUMNS} FROM hookgate_teams ORDER BY created_at, id"
            )
        return [_team(r) for r in rows]

    async def team(self, team_id: str) -> Team:
        row = await self._row("hookgate_teams", team_id, _TEAM_COLUMNS)
        if row is None:
            raise NotFound(f"No team {team_id!r}.", code="team_not_found")
        return _team(row)

    async def update_team(self, team_id: str, fields: Mapping[str, Any]) -> Team:
        columns = _checked(fields, _TEAM_FIELDS - {"id"})
        await self._update("hookgate_teams", team_id, columns)
        return await self.team(team_id)

    # --- plumbing ----------------------------------------------------------------------------

    async def _team_exists(self, team_id: str | None) -> None:
        if team_id is not None and await self._row("hookgate_teams", team_id) is None:
            raise BadRequest(
                f"No team {team_id!r}: create it first.", code="team_not_found", param="team"
            )

    async def _row(self, table: str, row_id: str, columns: str = "id") -> dict[str, Any] | None:
        async with self.db.guard(table.removeprefix("hookgate_")):
            return await self.db.fetchrow(f"SELECT {columns} FROM {table} WHERE id = $1", row_id)

    async def _insert(self, table: str, columns: Mapping[str, Any]) -> None:
        names = list(columns)
        marks = ", ".join(f"${i + 1}" for i in range(len(names)))
        async with self.db.guard(table.removeprefix("hookgate_")):
            await self.db.execute(
                f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks})",
                *(columns[n] for n in names),
            )

    async def _update(self, table: str, row_id: str, columns: Mapping[str, Any]) -> None:
        if await self._row(table, row_id) is None:
            what = "key" if table == "hookgate_keys" else "team"
            raise NotFound(f"No {what} {row_id!r}.", code=f"{what}_not_found")
        columns = {**columns, "updated_at": self.clock()}
        names = list(columns)
        sets = ", ".join(f"{n} = ${i + 1}" for i, n in enumerate(names))
        async with self.db.guard(table.removeprefix("hookgate_")):
            await self.db.execute(
                f"UPDATE {table} SET {sets} WHERE id = ${len(names) + 1}",
                *(columns[n] for n in names),
                row_id,
            )
