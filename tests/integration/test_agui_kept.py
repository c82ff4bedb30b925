"""What the Redis run store keeps of finished AG-UI runs is bounded as in memory: bytes per key
and in all, and runs in all, counted in Redis for every instance; the oldest go first (a key
over its share loses its own)."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from ag_ui.core import RunAgentInput, UserMessage
from support.agui_check import checked, events_of, types_of
from support.waiting import until

from gateway.auth.keys import digest
from gateway.config.sections import RedisConfig, RedisUrl
from gateway.runs import Run
from gateway.runs.log import EVENT_OVERHEAD
from gateway.runs.redis import RedisRunStore
from gateway.state.redis import RedisState

TOKENS = ("sk-a", "sk-b", "sk-c")
OWNERS = {t: "key-" + digest(t).hex()[:16] for t in TOKENS}
TEXT = " ".join(f"word{i}" for i in range(200))


def config(redis_url, prefix, **agui):
    return {
        "redis": {"url": redis_url, "prefix": prefix},
        "agui": {"store": "redis", **agui},
        "backends": {"echo": {"kind": "echo"}},
        "models": {"echo": {"backend": "echo"}},
        "agents": {"talker": {"model": "echo"}},
        "auth": {"keys": list(TOKENS)},
    }


def body(run_id: str) -> dict:
    return RunAgentInput(
        thread_id="thread-k",
        run_id=run_id,
        messages=[UserMessage(id="m1", role="user", content=TEXT)],
        tools=[],
        context=[],
        state={},
        forwarded_props={},
    ).model_dump(by_alias=True, exclude_none=True)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Kept:
    """The store's accounting in Redis, read directly."""

    def __init__(self, direct: aioredis.Redis, prefix: str) -> None:
        self.direct = direct
        self.prefix = prefix

    def key(self, owner: str, part: str) -> str:
        return f"{self.prefix}agui:{{{owner}}}:{part}"

    async def runs(self, token: str | None = None) -> set[str]:
        owner = "*" if token is None else OWNERS[token]
        return {m.decode() for m in await self.direct.zrange(self.key(owner, "kept"), 0, -1)}

    async def size(self, token: str, run_id: str) -> int:
        return int(await self.direct.hget(self.key(OWNERS[token], "sizes"), run_id))

    async def total(self, token: str, *run_ids: str) -> int:
        """The bytes of these runs of ``token``'s as counted, each about one run's."""
        return sum([await self.size(token, r) for r in run_ids])

    async def bytes(self, token: str | None = None) -> int:
        owner = "*" if token is None else OWNERS[token]
        return int(await self.direct.get(self.key(owner, "bytes")) or 0)


async def _finish(client, token: str, run_id: str, kept: Kept) -> None:
    """A run through the gateway, to its end; then until the store counted it."""
    resp = await client.post("/agui/agents/talker/runs", json=body(run_id), headers=auth(token))
    assert resp.status == 200, await resp.text()
    assert types_of(checked(await resp.read()))[-1] == "RUN_FINISHED"
    member = f"{OWNERS[token]}\n{run_id}"
    await until(lambda: _has(kept, member), what=f"run {run_id} counted")


async def _has(kept: Kept, member: str) -> bool:
    return member in await kept.runs()


async def _status(client, token: str, run_id: str) -> int:
    resp = await client.get("/agui/ws", params={"run_id": run_id}, headers=auth(token))
    if resp.status == 200:
        events = events_of(await resp.read())
        assert events[0]["runId"] == run_id and types_of(events)[-1] == "RUN_FINISHED"
    return resp.status


async def _gone(client, token: str, run_id: str) -> bool:
    return await _status(client, token, run_id) == 404


async def test_kept_bytes_are_bounded_per_key_and_in_all_across_instances(
    make_gateway, redis_url, redis_prefix
):
    direct = aioredis.Redis.from_url(redis_url)
    try:
        # One run's size, as the store counts it (every run below is the same but for its id).
        measure = Kept(direct, redis_prefix + "m:")
        await _finish(await make_gateway(config(redis_url, measure.prefix)), "sk-a", "r0", measure)
        size = await measure.size("sk-a", "r0")
        assert size > len(TEXT)
        kept = Kept(direct, redis_prefix)
        cfg = config(
            redis_url,
            redis_prefix,
            max_kept_bytes_per_key=size * 5 // 2,
            max_kept_bytes=size * 7 // 2,
        )
        one, two = await make_gateway(cfg), await make_gateway(cfg)
        await _finish(one, "sk-a", "a1", kept)
        await _finish(two, "sk-a", "a2", kept)
        assert await kept.bytes("sk-a") == await kept.total("sk-a", "a1", "a2")
        # a third run of a's: a holds more than its share, so its own oldest goes
        await _finish(one, "sk-a", "a3", kept)
        await until(lambda: _gone(two, "sk-a", "a1"), what="a1 forgotten")
        assert await _status(two, "sk-a", "a2") == 200 and await _status(one, "sk-a", "a3") == 200
        assert await kept.runs("sk-a") == {"a2", "a3"}
        assert await kept.bytes("sk-a") == await kept.total("sk-a", "a2", "a3")
        await _finish(two, "sk-b", "b1", kept)
        assert len(await kept.runs()) == 3  # within the bound in all
        # a fourth run in all: over the bound in all, the oldest of anyone goes (a's a2)
        await _finish(one, "sk-c", "c1", kept)
        await until(lambda: _gone(one, "sk-a", "a2"), what="a2 forgotten")
        for token, run_id in (("sk-a", "a3"), ("sk-b", "b1"), ("sk-c", "c1")):
            assert await _status(two, token, run_id) == 200
        assert await kept.runs() == {
            f"{OWNERS[t]}\n{r}" for t, r in (("sk-a", "a3"), ("sk-b", "b1"), ("sk-c", "c1"))
        }
        everyone = [
            await kept.total(t, r) for t, r in (("sk-a", "a3"), ("sk-b", "b1"), ("sk-c", "c1"))
        ]
        assert await kept.bytes() == sum(everyone)
        assert await kept.runs("sk-a") == {"a3"} and await kept.bytes("sk-a") == everyone[0]
        # another key's runs are not even acknowledged; a forgotten run's id is free again
        assert await _status(one, "sk-b", "a3") == 404
        await _finish(two, "sk-a", "a1", kept)
    finally:
        await direct.aclose()


@pytest.fixture
async def redis_state(redis_url, redis_prefix):
    state = RedisState(RedisConfig(url=RedisUrl(redis_url), prefix=redis_prefix))
    await state.open()
    yield state
    await state.close()


async def _stored(store: RedisRunStore, owner: str, run_id: str, size: int) -> Run:
    run = Run(run_id, "t", owner)
    assert await store.reserve(run)
    store.record(run)
    run.append(b'{"type":"RUN_FINISHED","x":"' + b"x" * (size - EVENT_OVERHEAD - 30) + b'"}')
    assert run.size == size
    run.close()
    await store.finish(run)
    return run


async def test_the_redis_store_bounds_kept_runs_as_the_memory_store(redis_state):
    store = RedisRunStore(redis_state, ttl=60, max_kept=2, max_owner_bytes=1500)
    await _stored(store, "owner", "r0", 500)
    await _stored(store, "owner", "r1", 500)
    await _stored(store, "owner", "r2", 500)  # a third run in all: the oldest goes
    assert await store.lookup("owner", "r0") is None
    assert await store.lookup("owner", "r1") is not None and await store.lookup("owner", "r2")
    assert await store.reserve(Run("r0", "t", "owner"))  # its id is free again
    # a run larger than its owner's share is not kept at all
    await _stored(store, "big", "huge", 2000)
    assert await store.lookup("big", "huge") is None
    kept = Kept(redis_state.client, redis_state.prefix)
    assert await kept.runs() == {"owner\nr1", "owner\nr2"}  # "big" lost only its own
    assert await redis_state.client.exists(kept.key("big", "e:huge")) == 0
    # unbounded (A2A's logs): nothing counted
    free = RedisRunStore(redis_state, ttl=60, space="a2a")
    await _stored(free, "owner", "t1", 500)
    assert await redis_state.client.exists(f"{redis_state.prefix}a2a:{{owner}}:kept") == 0
