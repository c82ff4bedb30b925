"""Spend: the cost of each request (configured prices and genai-prices) in a header and the
metrics, budgets that hold under concurrency across instances, and the spend ledger."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
import redis
from genai_prices import Usage as LibraryUsage
from genai_prices import calc_price
from support.processes import children_running, ended, gateway_process
from support.waiting import until

MESSAGES = [{"role": "user", "content": "hi"}]
ADMIN = {"authorization": "Bearer adm-secret"}
# The fake upstream reports 11 prompt and 7 completion tokens for every answer.
PRICE = {"input": 2.0, "output": 10.0, "request": 0.001}
COST = (11 * 2.0 + 7 * 10.0) / 1e6 + 0.001


def config(upstream: Any, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    base = str(upstream.make_url("/v1"))
    return {
        "admin": {"keys": ["adm-secret"]},
        "database": {"data_dir": str(tmp_path)},
        "backends": {"up": {"kind": "openai", "base_url": base}},
        "models": {
            "priced": {"backend": "up", "upstream_model": "self-hosted", "price": PRICE},
            "mini": {"backend": "up", "upstream_model": "gpt-4o-mini"},
            "unknown": {"backend": "up", "upstream_model": "no-such-model-anywhere"},
        },
        **extra,
    }


async def new_key(client: Any, **fields: Any) -> tuple[str, str]:
    resp = await client.post("/admin/keys", json={"name": "k", **fields}, headers=ADMIN)
    assert resp.status == 201, await resp.text()
    made = await resp.json()
    return made["secret"], made["key"]["id"]


async def test_cost_in_header_and_metrics(make_gateway, upstream, tmp_path):
    client = await make_gateway(config(upstream, tmp_path))
    secret, _ = await new_key(client)
    headers = {"authorization": f"Bearer {secret}"}
    costs = {}
    for model in ("priced", "mini", "unknown"):
        resp = await client.post(
            "/v1/chat/completions", json={"model": model, "messages": MESSAGES}, headers=headers
        )
        assert resp.status == 200
        costs[model] = resp.headers.get("x-hookgate-cost")
        assert float(resp.headers["x-hookgate-overhead-ms"]) >= 0
    assert float(costs["priced"]) == pytest.approx(COST)
    library = calc_price(LibraryUsage(input_tokens=11, output_tokens=7), model_ref="gpt-4o-mini")
    assert float(costs["mini"]) == pytest.approx(float(library.total_price))
    assert costs["unknown"] is None  # no price known: no made-up cost

    metrics = await (await client.get("/metrics")).text()
    assert f'hookgate_cost_usd_total{{model="priced"}} {COST}' in metrics
    assert "hookgate_gateway_overhead_seconds_bucket" in metrics


async def test_budget_refuses_in_the_client_protocol(make_gateway, upstream, tmp_path, sdk):
    client = await make_gateway(config(upstream, tmp_path))
    # The reservation is the estimate at max_tokens; two requests' worth of budget.
    secret, _ = await new_key(client, budget={"day": 2.5 * COST})
    api = sdk(client, api_key=secret)
    for _ in range(2):
        await api.chat.completions.create(model="priced", messages=MESSAGES, max_tokens=7)
    with pytest.raises(openai.RateLimitError) as refused:
        await api.chat.completions.create(model="priced", messages=MESSAGES, max_tokens=7)
    assert refused.value.code == "budget_exceeded"
    assert "daily budget" in refused.value.message
    assert int(refused.value.response.headers["retry-after"]) >= 1

    # A team's budget binds its keys together.
    await client.post(
        "/admin/teams", json={"id": "eng", "name": "Eng", "budget": {"total": COST}}, headers=ADMIN
    )
    first, _ = await new_key(client, team="eng")
    second, _ = await new_key(client, team="eng")
    await sdk(client, api_key=first).chat.completions.create(
        model="priced", messages=MESSAGES, max_tokens=7
    )
    with pytest.raises(openai.RateLimitError) as refused:
        await sdk(client, api_key=second).chat.completions.create(
            model="priced", messages=MESSAGES, max_tokens=7
        )
    assert "team 'eng'" in refused.value.message


async def test_a_request_refused_before_routing_has_a_row_with_nothing_served(
    make_gateway, upstream, tmp_path, sdk
):
    """A budget's refusal leaves its ledger row (an error that cost nothing) naming no target:
    the request never reached a backend."""
    client = await make_gateway(config(upstream, tmp_path))
    secret, key_id = await new_key(client, budget={"day": COST / 2})
    with pytest.raises(openai.RateLimitError) as refused:
        await sdk(client, api_key=secret).chat.completions.create(
            model="priced", messages=MESSAGES, max_tokens=7
        )
    assert refused.value.code == "budget_exceeded"

    async def refused_row() -> list[dict[str, Any]]:
        resp = await client.get("/admin/spend", params={"group_by": "key"}, headers=ADMIN)
        return [r for r in (await resp.json())["data"] if r["failed"] == 1]

    rows = await until(refused_row, 10, "the refused request's ledger row")
    assert rows[0]["key"] == key_id and rows[0]["cost"] == 0
    db = sqlite3.connect(tmp_path / "hookgate.db")
    try:
        row = db.execute("SELECT model, target, status, cost FROM hookgate_spend").fetchall()
    finally:
        db.close()
    assert row == [("priced", "", "error", 0.0)]


async def test_ledger_rows_and_spend_summary(make_gateway, upstream, tmp_path, sdk):
    client = await make_gateway(config(upstream, tmp_path))
    await client.post("/admin/teams", json={"id": "eng", "name": "Eng"}, headers=ADMIN)
    a, a_id = await new_key(client, team="eng")
    b, b_id = await new_key(client)
    await sdk(client, api_key=a).chat.completions.create(model="priced", messages=MESSAGES)
    await sdk(client, api_key=a).chat.completions.create(model="mini", messages=MESSAGES)
    stream = await sdk(client, api_key=b).chat.completions.create(
        model="priced", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    assert [c async for c in stream]
    with pytest.raises(openai.APIStatusError):
        await sdk(client, api_key=b).chat.completions.create(
            model="priced", messages=[{"role": "user", "content": "STATUS:500"}]
        )

    async def spend(**query: str) -> list[dict[str, Any]]:
        resp = await client.get("/admin/spend", params=query, headers=ADMIN)
        assert resp.status == 200
        return (await resp.json())["data"]

    async def all_four() -> bool:
        return sum(r["requests"] for r in await spend()) == 4

    await until(all_four, 10, "four ledger rows")
    by_key = {r["key"]: r for r in await spend(group_by="key")}
    assert by_key[a_id]["requests"] == 2 and by_key[b_id]["requests"] == 2
    assert by_key[b_id]["failed"] == 1
    assert by_key[b_id]["cost"] == pytest.approx(COST)  # the stream; the failure cost nothing
    assert by_key[a_id]["input_tokens"] == 22 and by_key[a_id]["output_tokens"] == 14
    assert {r["team"]: r["requests"] for r in await spend(group_by="team")} == {None: 2, "eng": 2}
    by_model = {r["model"]: r["requests"] for r in await spend(group_by="model")}
    assert by_model == {"priced": 3, "mini": 1}
    assert len(await spend(group_by="day")) == 1
    assert [r["requests"] for r in await spend(team="eng")] == [2]
    assert await spend(since="2999-01-01") == []
    bad = await client.get("/admin/spend?group_by=colour", headers=ADMIN)
    assert bad.status == 400
    # A day that is no day is refused, not read as one that matches nothing.
    for name, value in (("since", "yesterday"), ("until", "2026-13-01"), ("since", "20261101")):
        bad = await client.get("/admin/spend", params={name: value}, headers=ADMIN)
        assert bad.status == 400
        error = (await bad.json())["error"]
        assert error["param"] == name and "YYYY-MM-DD" in error["message"]

    db = sqlite3.connect(tmp_path / "hookgate.db")
    target = db.execute("SELECT target FROM hookgate_spend WHERE model = 'mini'").fetchone()
    assert target == ("openai:up/gpt-4o-mini",)
    db.close()


async def test_a_stuck_database_drops_ledger_rows_and_counts_them(make_gateway, upstream, tmp_path):
    cfg = config(upstream, tmp_path, spend={"queue": 2, "batch": 1})
    cfg["database"]["timeout"] = "300ms"
    client = await make_gateway(cfg)
    secret, _ = await new_key(client)
    lock = sqlite3.connect(tmp_path / "hookgate.db", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # every write now waits, then fails
    try:
        headers = {"authorization": f"Bearer {secret}"}
        for _ in range(8):
            resp = await client.post(
                "/v1/chat/completions",
                json={"model": "priced", "messages": MESSAGES},
                headers=headers,
            )
            assert resp.status == 200  # the answer never waits for the ledger
        metrics = await (await client.get("/metrics")).text()
        dropped = next(
            line
            for line in metrics.splitlines()
            if line.startswith('hookgate_spend_rows_total{outcome="dropped"}')
        )
        assert float(dropped.split()[-1]) >= 5
    finally:
        lock.execute("ROLLBACK")
        lock.close()


def _admin(url: str, method: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url + path, data=data, method=method, headers={**ADMIN, "content-type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


async def test_fifty_concurrent_requests_on_a_budget_for_ten(
    tmp_path, upstream_process, postgres_url, redis_url, redis_prefix
):
    """Two gateway processes on one PostgreSQL and one Redis; 50 requests at once, spread over
    both, against a budget that allows 10: exactly 10 are answered, 40 refused."""
    toml = f"""
[admin]
keys = ["adm-secret"]

[database]
url = "{postgres_url}"

[redis]
url = "{redis_url}"
prefix = "{redis_prefix}"

[backends.up]
kind = "openai"
base_url = "{upstream_process}"

[models.flat]
backend = "up"
price = {{ request = 0.1 }}
"""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with ExitStack() as stack:
        gws = [
            stack.enter_context(gateway_process(config=toml, directory=tmp_path / d))
            for d in ("a", "b")
        ]
        made = _admin(gws[0].url, "POST", "/admin/keys", {"name": "b", "budget": {"total": 1.0}})
        headers = {"authorization": f"Bearer {made['secret']}"}

        async def one(session: aiohttp.ClientSession, i: int) -> tuple[int, str | None]:
            body = {"model": "flat", "messages": [{"role": "user", "content": "SLOW:0.2"}]}
            async with session.post(
                gws[i % 2].url + "/v1/chat/completions", json=body, headers=headers
            ) as resp:
                payload = await resp.json()
                return resp.status, (payload.get("error") or {}).get("code")

        async with aiohttp.ClientSession() as session:
            results = await asyncio.gather(*(one(session, i) for i in range(50)))
        assert sum(1 for status, _ in results if status == 200) == 10
        assert sorted(set(results) - {(200, None)}) == [(429, "budget_exceeded")]

        # Both instances' ledgers land in the one PostgreSQL: 50 rows, 10 of them paid for.
        def ledger() -> dict[str, Any]:
            rows = _admin(gws[1].url, "GET", "/admin/spend?group_by=key")["data"]
            return rows[0] if rows else {}

        await until(lambda: ledger().get("requests") == 50, 10, "50 ledger rows")
        row = ledger()
        assert row["requests"] == 50 and row["failed"] == 40
        assert row["cost"] == pytest.approx(1.0)


async def test_budget_counters_lost_by_redis_are_made_again_from_the_ledger(
    own_redis, make_gateway, upstream, tmp_path, sdk
):
    cfg = config(upstream, tmp_path, redis={"url": own_redis.url, "prefix": "hg:"})
    client = await make_gateway(cfg)
    team = {"id": "eng", "name": "Eng", "budget": {"month": 100.0}}
    assert (await client.post("/admin/teams", json=team, headers=ADMIN)).status == 201
    # Two requests' worth of a day budget, in a team with a month budget.
    secret, key_id = await new_key(client, team="eng", budget={"day": 2.5 * COST})
    api = sdk(client, api_key=secret)
    for _ in range(2):
        await api.chat.completions.create(model="priced", messages=MESSAGES, max_tokens=7)

    async def two_rows() -> bool:
        resp = await client.get("/admin/spend", params={"key": key_id}, headers=ADMIN)
        return [r["requests"] for r in (await resp.json())["data"]] == [2]

    await until(two_rows, 10, "two ledger rows")
    store = redis.Redis.from_url(own_redis.url)
    try:
        store.flushdb()  # mid-period: every budget counter is gone
        # Made again from the ledger, the day's counter still holds two requests: a third
        # does not fit.
        with pytest.raises(openai.RateLimitError) as refused:
            await api.chat.completions.create(model="priced", messages=MESSAGES, max_tokens=7)
        assert refused.value.code == "budget_exceeded" and "daily budget" in refused.value.message
        (day,) = store.keys(f"hg:budget:*key:vk-{key_id}:day:*")
        assert int(store.get(day)) == round(2 * COST * 1_000_000)
        assert store.ttl(day) > 86400  # kept as long as a day counter is
        # The team's month, made again when a request reaches it: the two before, and this one.
        other, _ = await new_key(client, team="eng")
        await sdk(client, api_key=other).chat.completions.create(
            model="priced", messages=MESSAGES, max_tokens=7
        )
        (month,) = store.keys("hg:budget:*team:eng:month:*")
        assert int(store.get(month)) == round(3 * COST * 1_000_000)
    finally:
        store.close()


def _writer_processes() -> list[int]:
    """This process's children writing the SQLite ledger."""
    return children_running(b"writer.py")


def _rows(metrics: str, outcome: str) -> float:
    name = f'hookgate_spend_rows_total{{outcome="{outcome}"}}'
    return float(next(line for line in metrics.splitlines() if line.startswith(name)).split()[-1])


@pytest.mark.parametrize(
    ("priority", "policy"), [(None, os.SCHED_IDLE), ("normal", os.SCHED_OTHER)]
)
async def test_a_process_of_its_own_writes_the_sqlite_ledger(
    make_gateway, upstream, tmp_path, priority, policy
):
    spend = {"writer_priority": priority} if priority else {}
    client = await make_gateway(config(upstream, tmp_path, spend=spend))
    secret, _ = await new_key(client)
    headers = {"authorization": f"Bearer {secret}"}

    async def ask() -> None:
        resp = await client.post(
            "/v1/chat/completions", json={"model": "priced", "messages": MESSAGES}, headers=headers
        )
        assert resp.status == 200

    async def counted(outcome: str, rows: int) -> bool:
        return _rows(await (await client.get("/metrics")).text(), outcome) >= rows

    for _ in range(3):
        await ask()
    await until(lambda: counted("written", 3), 10, "three rows written")
    db = sqlite3.connect(tmp_path / "hookgate.db")
    assert db.execute("SELECT COUNT(*), SUM(input_tokens) FROM hookgate_spend").fetchone() == (
        3,
        33,
    )
    db.close()
    (pid,) = _writer_processes()
    # Started at ordinary priority, it takes the idle class once a batch came in time. On a
    # busy machine the first batches may have waited in the pipe while the process still
    # started: then a later request's batch is the one that comes in time.
    written = 3

    async def in_class_or_another_batch() -> bool:
        nonlocal written
        if os.sched_getscheduler(pid) == policy:
            return True
        await ask()
        written += 1
        await until(lambda: counted("written", written), 10, "the request's row written")
        return False

    await until(in_class_or_another_batch, 30, "the writer's class")
    # The process gone, requests are answered as before; their rows are dropped and counted.
    os.kill(pid, signal.SIGKILL)
    await until(lambda: pid not in _writer_processes() or ended(pid), 10, "the writer's end")
    for _ in range(4):
        await ask()
    await until(lambda: counted("dropped", 4), 10, "four rows dropped")
    metrics = await (await client.get("/metrics")).text()
    assert _rows(metrics, "written") == written and _rows(metrics, "failed") == 0
    assert "hookgate_spend_queue 0.0" in metrics
