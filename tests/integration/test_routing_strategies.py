"""Strategies and affinity through the official OpenAI SDK: which target answers, and that a
session stays on one healthy target."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from support.faults import ANSWER, FaultUpstream


@pytest.fixture(scope="module")
def up() -> Iterator[FaultUpstream]:
    with FaultUpstream().running() as server:
        yield server


def routed(up: FaultUpstream, names: list[str], **options: Any) -> dict[str, Any]:
    return {
        "backends": {
            name: {"kind": "openai", "base_url": up.openai_url(name), "read_timeout": "2s"}
            for name in names
        },
        "models": {
            "m": {
                "targets": [{"backend": name, "upstream_model": name} for name in names],
                **options,
            }
        },
    }


async def ask(api: Any, **extra: Any) -> tuple[str, str]:
    raw = await api.chat.completions.with_raw_response.create(
        model="m", messages=[{"role": "user", "content": "hi"}], **extra
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == ANSWER and completion.model == "m"
    return raw.headers["x-hookgate-served-model"], raw.headers["x-hookgate-attempts"]


async def test_weighted_spreads_by_weight(make_gateway, sdk, up):
    names = ["w-a", "w-b"]
    for name in names:
        up.script(name)
    config = routed(up, names, strategy="weighted")
    config["models"]["m"]["targets"][0]["weight"] = 4
    api = sdk(await make_gateway(config))
    served = [(await ask(api))[0] for _ in range(100)]
    share = served.count("openai:w-a/w-a") / len(served)
    assert 0.6 < share < 0.95  # 4 / (4 + 1) = 0.8
    assert len(up.seen("w-a")) + len(up.seen("w-b")) == 100


async def test_latency_prefers_the_faster_target_once_both_are_measured(make_gateway, sdk, up):
    names = ["l-slow", "l-fast"]
    up.script("l-slow", "slow-first", "slow-first", "slow-first")
    up.script("l-fast")
    config = routed(up, names, strategy="latency")
    config["backends"]["l-slow"]["first_byte_timeout"] = "8s"
    api = sdk(await make_gateway(config))
    # Unmeasured targets go first, so each gets measured once.
    first = {(await ask(api))[0] for _ in range(2)}
    assert first == {"openai:l-slow/l-slow", "openai:l-fast/l-fast"}
    for _ in range(5):
        assert (await ask(api))[0] == "openai:l-fast/l-fast"
    assert len(up.seen("l-slow")) == 1


@pytest.mark.parametrize("strategy", ["weighted", "least-busy"])
async def test_affinity_keeps_a_session_on_one_target_and_moves_it_only_when_that_fails(
    make_gateway, sdk, up, strategy
):
    names = [f"a-{strategy}-{i}" for i in range(3)]
    for name in names:
        up.script(name)
    api = sdk(await make_gateway(routed(up, names, strategy=strategy, affinity="user")))
    homes = {}
    for user in ("ann", "bob", "cyd", "dan", "eve", "fay"):
        served = {(await ask(api, user=user))[0] for _ in range(4)}
        assert len(served) == 1, (user, served)  # every request of a session on one target
        homes[user] = served.pop()
    assert len(set(homes.values())) > 1  # sessions are spread over the targets
    # The target of the first session fails: that session moves (and says so); others stay.
    user = "ann"
    failing = homes[user].split(":")[1].split("/")[0]
    up.script(failing, "503")
    served, attempts = await ask(api, user=user)
    assert served != homes[user] and attempts == "2"
    for other, home in homes.items():
        if home != homes[user]:
            assert (await ask(api, user=other))[0] == home


async def test_a_session_keeps_only_the_answer_the_client_received(make_gateway, sdk, up):
    """A stream cut mid-answer and continued on the fallback: the session holds the one whole
    answer, once; the failed attempt leaves nothing behind."""
    up.script("s-p", "cut")
    up.script("s-f")
    config = routed(up, ["s-p", "s-f"])
    config["backends"]["s-f"] = {"kind": "anthropic", "base_url": up.anthropic_url("s-f")}
    client = await make_gateway(config)
    stream = await sdk(client).chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        extra_headers={"X-Session-Id": "routed"},
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == ANSWER
    session = await (await client.get("/v1/sessions/routed")).json()
    assert [(m["role"], m["content"]) for m in session["messages"]] == [
        ("user", "hi"),
        ("assistant", ANSWER),
    ]
