"""``hookgate keys`` and ``hookgate teams``: the admin API's key and team operations from the
command line, straight on the configured database (no gateway needs to be running). Changes are
announced on Redis (when ``[redis] url`` is set), so running gateways drop what they cached."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import orjson

from gateway import GatewayError, Loaded, RedisState, connect_database
from gateway.keys.cache import ALL, KeyCache
from gateway.keys.store import KeyStore


def _limit_args(p: argparse.ArgumentParser, key: bool) -> None:
    p.add_argument("--name", help="a name to recognise it by")
    if key:
        p.add_argument("--team", help="the team id it belongs to ('' for none)")
        p.add_argument(
            "--models", help="comma-separated model names it may use ('' or '*' for all)"
        )
        p.add_argument("--expires", metavar="TIME", help="ISO 8601 expiry ('' for none)")
    p.add_argument("--rpm", type=int, help="requests per minute (0: no limit)")
    p.add_argument("--tpm", type=int, help="tokens per minute (0: no limit)")
    for period in ("day", "month", "total"):
        p.add_argument(
            f"--budget-{period}", type=float, metavar="USD", help=f"spend limit per {period}"
        )
    p.add_argument(
        "--metadata", action="append", metavar="K=V", help="metadata (repeat; replaces it all)"
    )


def add_parsers(sub: Any, config_arg: Any) -> None:
    keys = sub.add_parser("keys", help="manage virtual keys in the database")
    ksub = keys.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = ksub.add_parser("create", help="create a key (its secret is printed this once)")
    _limit_args(create, key=True)
    listing = ksub.add_parser("list", help="list keys")
    listing.add_argument("--team")
    listing.add_argument("--revoked", action="store_true", help="include revoked keys")
    for action, text in (("show", "show a key"), ("rotate", "new secret"), ("revoke", "revoke")):
        ksub.add_parser(action, help=text).add_argument("id")
    update = ksub.add_parser("update", help="change a key")
    update.add_argument("id")
    _limit_args(update, key=True)
    for p in ksub.choices.values():
        config_arg(p)

    teams = sub.add_parser("teams", help="manage teams in the database")
    tsub = teams.add_subparsers(dest="action", metavar="ACTION", required=True)
    tcreate = tsub.add_parser("create", help="create a team")
    tcreate.add_argument("--id", help="its id (default: generated)")
    _limit_args(tcreate, key=False)
    tsub.add_parser("list", help="list teams")
    tsub.add_parser("show", help="show a team").add_argument("id")
    tupdate = tsub.add_parser("update", help="change a team")
    tupdate.add_argument("id")
    _limit_args(tupdate, key=False)
    for p in tsub.choices.values():
        config_arg(p)


def _fields(args: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name in ("id", "name", "rpm", "tpm"):
        value = getattr(args, name, None)
        if value is not None and not (name == "id" and args.action != "create"):
            fields[name] = value
    team = getattr(args, "team", None)
    if team is not None:
        fields["team"] = team or None
    models = getattr(args, "models", None)
    if models is not None:
        fields["models"] = (
            None if models in ("", "*") else [m.strip() for m in models.split(",") if m.strip()]
        )
    expires = getattr(args, "expires", None)
    if expires is not None:
        fields["expires_at"] = expires or None
    budget = {
        p: getattr(args, f"budget_{p}")
        for p in ("day", "month", "total")
        if getattr(args, f"budget_{p}") is not None
    }
    if budget:
        fields["budget"] = budget
    if args.metadata:
        pairs = [m.partition("=") for m in args.metadata]
        fields["metadata"] = {k: v for k, _, v in pairs}
    return fields


async def _run(args: argparse.Namespace, loaded: Loaded) -> Any:
    cfg = loaded.config
    db = connect_database(cfg.section("database"))
    await db.open()
    redis: RedisState | None = None
    try:
        if cfg.section("redis").url:
            redis = RedisState(cfg.section("redis"))
            await redis.open()
        cache = KeyCache(0.0, redis)
        store = KeyStore(db)
        if args.command == "keys":
            return await _keys(args, store, cache)
        return await _teams(args, store, cache)
    finally:
        if redis is not None:
            await redis.close()
        await db.close()


async def _keys(args: argparse.Namespace, store: KeyStore, cache: KeyCache) -> Any:
    action = args.action
    if action == "create":
        key, secret = await store.create_key(_fields(args))
        return {"key": key.to_json(), "secret": secret}
    if action == "list":
        return {"data": [k.to_json() for k in await store.keys(args.team, args.revoked)]}
    if action == "show":
        return (await store.key(args.id)).to_json()
    if action == "update":
        key = await store.update_key(args.id, _fields(args))
        await cache.changed(key.digest)
        return key.to_json()
    if action == "rotate":
        key, secret, old = await store.rotate_key(args.id)
        await cache.changed(old)
        return {"key": key.to_json(), "secret": secret}
    key = await store.revoke_key(args.id)
    await cache.changed(key.digest)
    return key.to_json()


async def _teams(args: argparse.Namespace, store: KeyStore, cache: KeyCache) -> Any:
    action = args.action
    if action == "create":
        return (await store.create_team(_fields(args))).to_json()
    if action == "list":
        return {"data": [t.to_json() for t in await store.teams()]}
    if action == "show":
        return (await store.team(args.id)).to_json()
    team = await store.update_team(args.id, _fields(args))
    await cache.changed(ALL)
    return team.to_json()


def run(args: argparse.Namespace, loaded: Loaded) -> int:
    """Run ``hookgate keys|teams ACTION``: prints JSON; 1 with a message when refused."""
    try:
        result = asyncio.run(_run(args, loaded))
    except GatewayError as err:
        print(f"hookgate {args.command} {args.action}: {err.message}", file=sys.stderr)
        return 1
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    return 0
