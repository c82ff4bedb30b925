"""Several gateway processes on one Redis behave as one gateway: a conversation started through
one continues through another, and a key's rate limit holds for all of them together."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import openai
from support.processes import gateway_process

CONFIG = """
[server]
workers = {workers}

[redis]
url = "{redis_url}"
prefix = "{prefix}"

[sessions]
store = "redis"

[auth]
keys = [{{ name = "chat", key = "sk-chat" }}, {{ name = "limited", key = "sk-limited", rpm = 3 }}]

[backends.up]
kind = "openai"
base_url = "{upstream}"

[models.gpt-test]
backend = "up"
upstream_model = "up-model"
"""


@contextmanager
def gateways(
    tmp_path: Path, count: int, redis_url: str, prefix: str, upstream: str, workers: int = 1
) -> Iterator[list[str]]:
    """``count`` separate gateway processes (``python -m gateway serve``) with one configuration
    on one Redis; yields their base URLs, and checks that each stopped cleanly."""
    config = tmp_path / "hookgate.toml"
    config.write_text(
        CONFIG.format(workers=workers, redis_url=redis_url, prefix=prefix, upstream=upstream)
    )
    with ExitStack() as stack:
        procs = [
            stack.enter_context(gateway_process("serve", "--config", str(config)))
            for _ in range(count)
        ]
        yield [f"{proc.url}/v1" for proc in procs]
    for proc in procs:
        assert proc.returncode == 0, proc.output


def _ask(base_url: str, key: str, text: str, session: str | None = None) -> str | int:
    """One request on a fresh connection: the answer's text, or 429."""
    with openai.OpenAI(base_url=base_url, api_key=key, max_retries=0) as api:
        try:
            out = api.chat.completions.create(
                model="gpt-test",
                messages=[{"role": "user", "content": text}],
                extra_headers={"X-Session-Id": session} if session else None,
            )
        except openai.RateLimitError:
            return 429
    return out.choices[0].message.content or ""


def _last_upstream_messages(upstream: str) -> list[str]:
    with urllib.request.urlopen(upstream.removesuffix("/v1") + "/_requests", timeout=10) as r:
        return [m["content"] for m in json.load(r)[-1]["messages"]]


def test_two_processes_share_conversations_and_limits(
    tmp_path, redis_url, redis_prefix, upstream_process
):
    with gateways(tmp_path, 2, redis_url, redis_prefix, upstream_process) as (one, two):
        words = ["I am Ada", "I like tea", "I live in Paris", "who am I?"]
        for i, text in enumerate(words):
            _ask((one, two)[i % 2], "sk-chat", text, session="trip")
        # The last request went through the second process and carried all three turns made
        # through both of them.
        assert _last_upstream_messages(upstream_process) == [
            "I am Ada",
            "upstream says: I am Ada",
            "I like tea",
            "upstream says: I like tea",
            "I live in Paris",
            "upstream says: I live in Paris",
            "who am I?",
        ]
        with openai.OpenAI(base_url=one, api_key="sk-chat", max_retries=0) as api:
            page = api.get("/sessions/trip", cast_to=object)
        assert page["message_count"] == 8

        # rpm = 3 for this key: 3 answers in total across both processes, not 3 each.
        results = [_ask((one, two)[i % 2], "sk-limited", "hi") for i in range(8)]
        assert sum(r != 429 for r in results) == 3
        assert results.count(429) == 5


def test_workers_share_state_through_redis(tmp_path, redis_url, redis_prefix, upstream_process):
    with gateways(tmp_path, 1, redis_url, redis_prefix, upstream_process, workers=2) as [url]:
        for text in ("one", "two", "three", "four"):
            _ask(url, "sk-chat", text, session="w")  # each on a new connection, any worker
        assert _last_upstream_messages(upstream_process)[::2] == ["one", "two", "three", "four"]
        results = [_ask(url, "sk-limited", "hi") for _ in range(6)]
        assert sum(r != 429 for r in results) == 3
