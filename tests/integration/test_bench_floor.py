"""The benchmark's floor (``bench/floor.py``, ``bench/run.py --floor``): each relay, started as
the benchmark starts it in front of the benchmark's mock upstream, answers the OpenAI SDK whole
and streamed as the upstream does."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import openai
import pytest
from support.bench import load_bench


@pytest.fixture(scope="module")
def bench():
    return load_bench("bench_run_floor")


@pytest.mark.parametrize("server", ["raw", "aiohttp"])
def test_a_floor_relays_answers_whole_and_streamed(bench, server, tmp_path: Path) -> None:
    assert server in bench.FLOORS
    port = bench.free_port()
    upstream = f"http://127.0.0.1:{port}"
    mock = [sys.executable, str(bench.BENCH / "mock_upstream.py"), "--port", str(port)]
    with contextlib.ExitStack() as stack:
        proc = stack.enter_context(bench.process(mock, tmp_path / "mock.log"))
        bench.wait_http(upstream + "/v1/models", proc)
        target = bench.start_floor(server, stack, tmp_path, upstream)
        assert target["name"] == f"floor {server}" and target["pid"] > 0
        client = openai.OpenAI(base_url=target["url"] + "/v1", api_key="none", max_retries=0)
        model = target["models"][bench.MODEL]
        messages = [{"role": "user", "content": "Say hello."}]
        whole = client.chat.completions.create(model=model, messages=messages)
        assert whole.choices[0].message.content == "Hello from the mock upstream."
        chunks = list(client.chat.completions.create(model=model, messages=messages, stream=True))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        # The mock's 50 frames (its default), the last a finish and its usage after them.
        assert text == "".join(f"tok{i} " for i in range(1, 49))
        assert chunks[-2].choices[0].finish_reason == "stop"
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 50
        # What the benchmark checks before it measures a target.
        for name in ("chat", "stream"):
            sc = bench.SCENARIOS[name]
            body = bench.ask_for(sc["body"], sc["model"], model)
            bench.check(target["url"] + sc["path"], body, sc["loose"], "", {})
