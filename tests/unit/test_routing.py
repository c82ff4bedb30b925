"""Routing's parts on their own: failure classification, target order and affinity, the circuit
kept in memory, and the configuration of targets."""

from __future__ import annotations

from typing import Any

import pytest

from gateway import ConfigError, load
from gateway.errors import BadRequest, GatewayError, RateLimited, UpstreamError, UpstreamTimeout
from gateway.routing.circuit import CLOSED, HALF_OPEN, OPEN, Breaker, Health, MemoryCircuits
from gateway.routing.failures import classify
from gateway.routing.targets import Target, order, prefer


def upstream(err: GatewayError, status: int | None = None, code: str | None = None) -> Any:
    err.upstream_status = status
    err.upstream_code = code
    return err


@pytest.mark.parametrize(
    ("err", "reason"),
    [
        (upstream(RateLimited("slow down"), 429), "rate_limit"),
        (upstream(UpstreamError("upstream error (500): boom"), 500), "server"),
        (upstream(UpstreamTimeout("did not answer"), None), "timeout"),
        (upstream(UpstreamError("upstream error (401): bad key"), 401), "auth"),
        (
            upstream(BadRequest("This model's maximum context length is 8192 tokens."), 400),
            "context_length",
        ),
        (
            upstream(BadRequest("Too long", code="x"), 400, "context_length_exceeded"),
            "context_length",
        ),
        (
            upstream(BadRequest("prompt is too long: 210000 tokens > 200000 maximum"), 400),
            "context_length",
        ),
        (upstream(BadRequest("Rejected by our safety system."), 400), "content_policy"),
        (upstream(BadRequest("no", code="x"), 400, "content_policy_violation"), "content_policy"),
        (upstream(BadRequest("temperature must be at most 2"), 400), "client"),
    ],
)
def test_failures_are_classified_from_status_code_and_message(err: GatewayError, reason: str):
    assert classify(err) == reason


def test_the_transport_says_what_it_knows():
    err = UpstreamError("closed")
    err.failure = "reset"
    assert classify(err) == "reset"


class FakeBackend:
    def __init__(self, name: str) -> None:
        self.name = name
        self.label = f"openai:{name}"
        self.config = None


def targets(*weights: int) -> list[Target]:
    return [
        Target(FakeBackend(f"b{i}"), None, w, 0, f"m/{i}:b{i}")  # type: ignore[arg-type]
        for i, w in enumerate(weights)
    ]


def test_open_circuits_are_left_out_and_fallback_keeps_the_order():
    ts = targets(1, 1, 1)
    planned = order("fallback", ts, [Health(), Health(OPEN), Health(HALF_OPEN)])
    assert [t for t, _ in planned] == [ts[0], ts[2]]


def test_weighted_picks_in_proportion_to_weight():
    ts = targets(3, 1)
    firsts = [order("weighted", ts, [Health(), Health()])[0][0] for _ in range(4000)]
    share = firsts.count(ts[0]) / len(firsts)
    assert 0.7 < share < 0.8  # 3 / (3 + 1)


def test_least_busy_and_latency_order():
    ts = targets(1, 1, 1)
    ts[0].inflight, ts[1].inflight, ts[2].inflight = 5, 0, 2
    assert [t for t, _ in order("least-busy", ts, [Health()] * 3)] == [ts[1], ts[2], ts[0]]
    ts[0].observe_latency(0.2)
    ts[1].observe_latency(0.9)
    # An unmeasured target goes first (so it gets measured), then the fastest.
    assert [t for t, _ in order("latency", ts, [Health()] * 3)] == [ts[2], ts[0], ts[1]]


def test_affinity_keeps_a_session_on_one_healthy_target_and_moves_only_its_sessions():
    ts = targets(1, 1, 1)
    healthy = [(t, Health()) for t in ts]
    homes = {key: prefer(key, healthy)[0][0] for key in (f"session-{i}" for i in range(300))}
    assert {t.key for t in homes.values()} == {t.key for t in ts}  # spread over all
    for key, home in homes.items():
        assert prefer(key, list(reversed(healthy)))[0][0] is home  # whatever the order
    # One target fails: only its sessions move.
    failing = ts[1]
    rest = [(t, Health(OPEN) if t is failing else Health()) for t in ts]
    for key, home in homes.items():
        now = prefer(key, rest)[0][0]
        assert now is home or home is failing


async def test_memory_circuit_opens_cools_down_probes_once_and_closes():
    circuits = MemoryCircuits()
    now = [1000.0]
    circuits.clock = lambda: now[0]
    breaker = Breaker(allowed_fails=2, window=10.0, cooldown=30.0)
    assert not await circuits.failure("t", breaker)
    assert (await circuits.health(["t"], breaker))[0] == Health(CLOSED, 1)
    assert await circuits.failure("t", breaker)  # the second failure opens it
    assert (await circuits.health(["t"], breaker))[0].state == OPEN
    now[0] += 31
    (seen,) = await circuits.health(["t"], breaker)
    assert seen.state == HALF_OPEN
    assert await circuits.probe("t", breaker)
    assert not await circuits.probe("t", breaker)  # one probe at a time
    assert await circuits.failure("t", breaker)  # the probe failed: open again
    assert (await circuits.health(["t"], breaker))[0].state == OPEN
    now[0] += 31
    assert await circuits.probe("t", breaker)
    await circuits.success("t", seen, breaker)
    assert (await circuits.health(["t"], breaker))[0] == Health()


async def test_failures_outside_the_window_do_not_add_up():
    circuits = MemoryCircuits()
    now = [0.0]
    circuits.clock = lambda: now[0]
    breaker = Breaker(allowed_fails=2, window=10.0, cooldown=30.0)
    await circuits.failure("t", breaker)
    now[0] += 11
    assert not await circuits.failure("t", breaker)


def models(**table: Any) -> dict[str, Any]:
    return {"backends": {"a": {"kind": "echo"}, "b": {"kind": "echo"}}, "models": {"m": table}}


def test_targets_or_backend_but_one_of_them():
    with pytest.raises(ConfigError, match=r"models\.m: give either backend"):
        load(data=models(backend="a", targets=[{"backend": "b"}]), env={})
    with pytest.raises(ConfigError, match=r"models\.m: give either backend"):
        load(data=models(), env={})
    with pytest.raises(ConfigError, match=r"models.m.targets\[1\].backend: no backend named 'c'"):
        load(data=models(targets=[{"backend": "a"}, {"backend": "c"}]), env={})


def test_unknown_failure_reasons_and_strategies_are_startup_errors():
    with pytest.raises(ConfigError, match="unknown failure reason 'flaky'"):
        load(data=models(backend="a", retry_on=["flaky"]), env={})
    with pytest.raises(ConfigError, match=r"models\.m\.strategy"):
        load(data=models(backend="a", strategy="random"), env={})
    loaded = load(
        data=models(targets=[{"backend": "a", "weight": 3, "retries": 2}, {"backend": "b"}]),
        env={},
    )
    (first, second) = loaded.config.models["m"].target_list()
    assert (first.weight, first.retries, second.weight, second.retries) == (3, 2, 1, None)
