"""Request logs: a record per chat request to a JSON-lines file, the database or a Redis stream,
metadata always, bodies only when opted in and then redacted; bounded, off the request path."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import openai
import pytest
import redis
from support.configs import upstream_config
from support.waiting import until

from gateway import GATEWAY, ConfigError, create_app

SECRET_TEXT = "my key is sk-abcdefghijklmnop and Bearer abcdefghijkl1234"


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_file_sink_has_metadata_without_bodies(make_gateway, upstream, sdk, tmp_path):
    log = tmp_path / "logs" / "requests.jsonl"
    cfg = upstream_config(upstream)
    cfg["request_logs"] = {"sink": "file", "path": str(log)}
    cfg["auth"] = {"keys": [{"name": "ci", "key": "sk-ci-key-123456"}]}
    client = await make_gateway(cfg)
    api = sdk(client, api_key="sk-ci-key-123456")
    await api.chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": SECRET_TEXT}]
    )
    with pytest.raises(openai.APIStatusError):
        await api.chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": "STATUS:500"}]
        )
    await until(lambda: len(_lines(log)) == 2, 10, "two records")
    ok, failed = _lines(log)
    assert ok["status"] == "success" and ok["principal"] == "ci" and ok["model"] == "gpt-test"
    assert ok["target"] == "openai:up/up-model" and ok["usage"] == {
        "input_tokens": 11,
        "output_tokens": 7,
    }
    assert ok["latency_ms"] > 0 and "request" not in ok
    assert failed["status"] == "error" and failed["error"]["kind"] == "upstream"
    assert "sk-ci-key-123456" not in log.read_text() and "abcdefghijklmnop" not in log.read_text()


async def test_bodies_when_opted_in_are_redacted(make_gateway, upstream, sdk, tmp_path):
    log = tmp_path / "requests.jsonl"
    cfg = upstream_config(upstream)
    cfg["request_logs"] = {"sink": "file", "path": str(log), "bodies": True}
    client = await make_gateway(cfg)
    stream = await sdk(client).chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": SECRET_TEXT}], stream=True
    )
    assert [c async for c in stream]
    await until(lambda: len(_lines(log)) == 1, 10, "one record")
    (rec,) = _lines(log)
    asked = rec["request"]["messages"][0]["content"][0]["text"]
    assert asked == "my key is [redacted] and [redacted]"
    answered = rec["response"]["messages"][0]["content"][0]["text"]
    assert answered.startswith("upstream says: my key is [redacted]")
    assert "abcdefghijklmnop" not in log.read_text()


async def test_database_sink(make_gateway, upstream, sdk, tmp_path):
    cfg = upstream_config(upstream)
    cfg["request_logs"] = {"sink": "database"}
    cfg["database"] = {"data_dir": str(tmp_path)}
    client = await make_gateway(cfg)
    await sdk(client).chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "hi"}]
    )

    def rows() -> list[tuple[str, str]]:
        db = sqlite3.connect(tmp_path / "hookgate.db")
        try:
            return db.execute("SELECT request_id, record FROM hookgate_request_logs").fetchall()
        finally:
            db.close()

    await until(lambda: len(rows()) == 1, 10, "one row")
    ((request_id, text),) = rows()
    assert json.loads(text)["request_id"] == request_id


async def test_redis_stream_sink(make_gateway, upstream, sdk, redis_url, redis_prefix):
    cfg = upstream_config(upstream)
    cfg["request_logs"] = {"sink": "redis", "max_entries": 1000}
    cfg["redis"] = {"url": redis_url, "prefix": redis_prefix}
    client = await make_gateway(cfg)
    resp = await sdk(client).chat.completions.with_raw_response.create(
        model="gpt-test", messages=[{"role": "user", "content": "hi"}]
    )
    r = redis.Redis.from_url(redis_url)
    try:
        await until(lambda: r.xlen(redis_prefix + "request-logs") == 1, 10, "one entry")
        ((_, fields),) = r.xrange(redis_prefix + "request-logs")
        assert json.loads(fields[b"record"])["request_id"] == resp.headers["x-request-id"]
    finally:
        r.close()


async def test_a_stuck_sink_drops_and_counts(make_gateway, upstream, sdk, tmp_path):
    cfg = upstream_config(upstream)
    cfg["request_logs"] = {
        "sink": "fakes.sinks:StuckSink",
        "queue": 3,
        "batch": 1,
    }
    client = await make_gateway(cfg)
    api = sdk(client)
    for _ in range(10):
        await api.chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": "hi"}]
        )
    metrics = await (await client.get("/metrics")).text()
    dropped = next(
        line
        for line in metrics.splitlines()
        if line.startswith('hookgate_request_logs_total{outcome="dropped"}')
    )
    # One record is being written (it does not finish), three wait: the other six are dropped.
    assert float(dropped.split()[-1]) == 6
    gateway = client.server.app[GATEWAY]
    (sink,) = [f.sink for f in gateway.filters if f.name == "request_logs"]
    sink.release.set()
    await until(lambda: len(sink.written) == 4, 10, "the kept records written")


@pytest.mark.parametrize("bodies", [False, True])
def test_a_redact_pattern_that_is_no_regular_expression_is_a_configuration_error(
    upstream, tmp_path, bodies
):
    """Said as the configuration's error, naming the pattern (it was re's own exception, a
    traceback), whether or not bodies are logged yet."""
    cfg = upstream_config(upstream)
    cfg["request_logs"] = {
        "sink": "file",
        "path": str(tmp_path / "requests.jsonl"),
        "bodies": bodies,
        "redact": [r"sk-\w+", "(unclosed"],
    }
    with pytest.raises(ConfigError) as info:
        create_app(cfg, env={})
    (error,) = info.value.errors
    assert error.startswith("filters.request_logs (plugin 'request_logs'): redact: ")
    assert "'(unclosed' is not a regular expression" in error


async def test_a_file_sink_that_cannot_be_written_says_which_setting(upstream, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cfg = upstream_config(upstream)
    cfg["request_logs"] = {"sink": "file", "path": str(blocker / "requests.jsonl")}
    app = create_app(cfg, env={})
    (sink,) = [f.sink for f in app[GATEWAY].filters if f.name == "request_logs"]
    with pytest.raises(OSError) as info:
        await sink.start()
    assert "[request_logs] path" in str(info.value) and str(blocker) in str(info.value)
