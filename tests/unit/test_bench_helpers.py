"""The benchmark's pure helpers (bench/run.py): how other gateways are asked, how the cost
figures are derived from the rows. No figure is asserted here: only the arithmetic and text."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest
from support.bench import load_bench


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_bench()


def test_every_scenario_names_what_it_needs(bench: ModuleType) -> None:
    for name, sc in bench.SCENARIOS.items():
        if sc.get("idle"):
            continue
        assert sc["path"].startswith("/"), name
        if sc.get("model"):  # other gateways are measured on it: they need a looser check
            assert sc["loose"] in sc["expect"], name
            assert f'"model":"{sc["model"]}"' in sc["body"], name


def test_the_big_body_is_100_kb(bench: ModuleType) -> None:
    size = len(bench.SCENARIOS["body100k"]["body"].encode())
    assert 100_000 <= size < 100_200


def test_agui_runs_get_an_id_of_their_own_from_wrk(bench: ModuleType) -> None:
    run = json.loads(bench.SCENARIOS["agui"]["body"])
    assert "@ID@" in run["runId"] and "@ID@" in run["threadId"]


def test_ask_for_renames_the_model_only(bench: ModuleType) -> None:
    body = bench.SCENARIOS["long"]["body"]
    asked = bench.ask_for(body, "bench-long", "mock-long")
    assert json.loads(asked)["model"] == "mock-long"
    assert json.loads(asked)["messages"] == json.loads(body)["messages"]
    # "bench" is a prefix of "bench-long": the whole name must match.
    assert bench.ask_for(body, "bench", "other") == body


def test_litellm_relays_each_bench_model_to_the_mock(bench: ModuleType) -> None:
    text = bench.litellm_config("http://127.0.0.1:9100")
    assert "  - model_name: bench\n" in text and "model: openai/mock-model" in text
    assert "  - model_name: bench-long\n" in text and "model: openai/mock-long" in text
    assert text.count("api_base: http://127.0.0.1:9100/v1") == 2


def test_per_chunk_divides_the_added_p50_of_the_fewest_connections(bench: ModuleType) -> None:
    report = {
        "settings": {"long_chunks": 1000},
        "added": [
            {"scenario": "long", "target": "hookgate", "connections": 1, "added_p50_ms": 2.0},
            {"scenario": "long", "target": "nginx", "connections": 1, "added_p50_ms": 0.1},
            {"scenario": "long", "target": "hookgate", "connections": 32, "added_p50_ms": 40.0},
            {"scenario": "chat", "target": "hookgate", "connections": 1, "added_p50_ms": 0.5},
        ],
    }
    [line] = bench.per_chunk(report)
    assert "1 connection" in line
    assert "hookgate 2.00 us" in line and "nginx 0.10 us" in line
    assert "40.00" not in line
    assert bench.per_chunk({"settings": {"long_chunks": 1000}, "added": []}) == []


def test_idle_line_gives_memory_per_stream_and_the_canary(bench: ModuleType) -> None:
    canary = {"p50_ms": 0.2, "p99_ms": 1.0, "rps": 3000.0, "errors": 0}
    idle = {
        "streams": 10,
        "opened": 10,
        "failed": 0,
        "open_s": 1.0,
        "rss_before_mb": 50.0,
        "rss_open_mb": 51.0,
        "rss_busy_mb": 51.5,
        "kb_per_stream": 102.4,
        "canary_quiet": canary,
        "canary_busy": {**canary, "p50_ms": 0.3},
    }
    line = bench.idle_line(idle)
    assert "10 of 10 open" in line and "102.4 KB per open stream (51.5 MB after" in line
    assert "p50 0.200 -> 0.300 ms" in line


def test_the_idle_scenario_configures_room_for_its_streams(
    bench: ModuleType, tmp_path: Path
) -> None:
    from gateway.core.loading import load
    from gateway.core.plugins import builtin_plugins

    path = tmp_path / "hookgate.toml"
    path.write_text(bench.hookgate_config("http://127.0.0.1:9100", {"openai"}, idle=10_000))
    cfg = load(path, env={}, plugins=builtin_plugins(), autoload=False).config
    assert cfg.section("limits").max_requests == 11_024  # every stream is a request in progress
    idle = cfg.backends["mock-idle"]
    assert idle.max_connections == 10_064 and idle.read_timeout == 3600.0
    assert idle.first_byte_timeout == 3600.0 and cfg.models["bench-idle"].backend == "mock-idle"
    assert cfg.backends["mock"].max_connections == 256  # the other scenarios' pool as it was
    plain = bench.hookgate_config("http://127.0.0.1:9100", {"openai"})
    assert "[limits]" not in plain and "bench-idle" not in plain


def test_rounds_report_the_median_measurement_whole(bench: ModuleType) -> None:
    samples = [
        {"rps": 900.0, "p50_ms": 3.0, "errors": 0, "cpu_us": 90.0},
        {"rps": 500.0, "p50_ms": 9.0, "errors": 1, "cpu_us": 200.0},
        {"rps": 700.0, "p50_ms": 5.0, "errors": 0, "cpu_us": 120.0},
    ]
    r = bench.median_of(samples)
    # The median's own latency and CPU, not figures of different rounds mixed.
    assert (r["rps"], r["p50_ms"], r["cpu_us"]) == (700.0, 5.0, 120.0)
    assert r["rounds_rps"] == [900.0, 500.0, 700.0]
    assert r["errors"] == 1
    # An even count takes the lower middle; one round is reported as it is.
    assert bench.median_of(samples[:2])["rps"] == 500.0
    assert bench.median_of(samples[:1]) is samples[0]


def test_paired_ratios_are_taken_round_by_round(bench: ModuleType) -> None:
    def r(target: str, rounds: list[float], scenario: str = "chat") -> dict:
        return {"scenario": scenario, "target": target, "connections": 32, "rounds_rps": rounds}

    results = [
        r("direct", [9000.0, 9000.0, 9000.0]),
        r("nginx", [1000.0, 2000.0, 1000.0]),
        r("hookgate", [300.0, 500.0, 400.0]),
        r("hookgate+team", [270.0, 300.0, 360.0]),
        r("hookgate x2", [600.0, 800.0, 640.0]),
        r("litellm", [10.0, 20.0, 10.0]),
        # A scenario measured without nginx: nothing to pair hookgate with.
        r("hookgate", [300.0, 300.0, 300.0], "stream"),
    ]
    got = {(p["target"], p["scenario"]): p for p in bench.paired(results)}
    assert set(got) == {
        ("hookgate", "chat"),
        ("hookgate+team", "chat"),
        ("hookgate x2", "chat"),
        ("litellm", "chat"),
    }
    # The median of the rounds' ratios, not the ratio of the medians (400 / 1000 = 0.4).
    assert got["hookgate", "chat"]["ratios"] == [0.3, 0.25, 0.4]
    assert got["hookgate", "chat"]["median"] == 0.3
    team = got["hookgate+team", "chat"]
    assert team["reference"] == "hookgate" and team["ratios"] == [0.9, 0.6, 0.9]
    assert team["median"] == 0.9
    assert got["hookgate x2", "chat"]["ratios"] == [2.0, 1.6, 1.6]
    assert got["litellm", "chat"]["reference"] == "nginx"
    # Two rounds: the mean of the middle two.
    two = bench.paired([r("nginx", [100.0, 100.0]), r("hookgate", [30.0, 20.0])])
    assert two[0]["median"] == 0.25
    lines = bench.paired_lines({"paired": bench.paired(results)})
    assert "  chat        c=32  hookgate+team / hookgate: 0.90  (0.90 0.60 0.90)" in lines
