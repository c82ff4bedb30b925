"""SIGHUP re-reads the configuration of a running gateway without dropping open streams or any
request on a keep-alive connection; a drain refuses new connections at once."""

from __future__ import annotations

import signal
import socket
import urllib.request
from pathlib import Path

import pytest
from support.configs import echo_config
from support.load import Load
from support.processes import chat, gateway_process, open_stream, streamed_text
from support.waiting import wait_until

WORDS = " ".join(f"w{i}" for i in range(20))


def test_reload_applies_a_good_config_keeps_streams_and_refuses_a_bad_one(tmp_path: Path):
    with gateway_process(config=echo_config("old: ", delay="100ms"), directory=tmp_path) as gw:
        assert chat(gw.url, "hi") == "old: hi"
        stream: dict = {}
        thread = open_stream(gw.url, WORDS, stream)
        assert stream["started"].wait(30)

        gw.config_file.write_text(echo_config("new: ", delay="0s"))
        gw.signal(signal.SIGHUP)
        gw.wait_log("configuration reloaded")
        assert chat(gw.url, "hi") == "new: hi"  # new requests see the new configuration
        assert thread.is_alive(), "the open stream is still running on the old configuration"
        thread.join(30)
        assert "error" not in stream, stream
        assert streamed_text(stream["payloads"]) == "old: " + WORDS  # whole, not cut
        assert stream["payloads"][-1] == "[DONE]"
        with urllib.request.urlopen(gw.url + "/metrics", timeout=10) as resp:
            metrics = resp.read().decode()
        # Counters carry on across the reload: two requests before it and one after.
        assert (
            'hookgate_requests_total{model="echo",route="chat_completions",status="200"} 3.0'
            in metrics
        )

        gw.config_file.write_text(echo_config("bad: ", not_an_option=1))
        gw.signal(signal.SIGHUP)
        gw.wait_log("reload refused")
        assert chat(gw.url, "hi") == "new: hi"  # the old configuration keeps serving
        assert any("not_an_option" in line for line in gw.log)
        assert gw.stop() == 0


@pytest.mark.parametrize("workers", [1, 2])
def test_reloads_under_load_lose_no_request(tmp_path: Path, workers: int):
    """Thousands of requests on 32 keep-alive connections (some streamed) across five reloads:
    every one answered whole, none hung; each reload's configuration answers after it."""
    with gateway_process(
        "serve", "--workers", str(workers), config=echo_config("v0: "), directory=tmp_path
    ) as gw:
        with Load(gw.url, connections=32) as load:
            wait_until(lambda: load.ok >= 500 or load.failures, 60, "the first answers")
            for n in range(1, 6):
                gw.config_file.write_text(echo_config(f"v{n}: "))
                gw.signal(signal.SIGHUP)
                gw.wait_log("configuration reloaded", count=n * workers, timeout=60)
                wait_until(
                    lambda n=n: load.prefixes[f"v{n}:"] >= 500 or load.failures,
                    60,
                    f"answers of configuration v{n}",
                )
        assert load.failures == [], load.failures[:10]
        assert load.ok >= 3000
        assert all(load.prefixes[f"v{n}:"] for n in range(6)), load.prefixes
        assert gw.stop() == 0


@pytest.mark.parametrize("workers", [1, 2])
def test_a_drain_refuses_new_connections_at_once(tmp_path: Path, workers: int):
    """While a stream drains after SIGTERM, a new connection is refused, not queued unanswered;
    the stream still ends whole."""
    with gateway_process(
        "serve",
        "--workers",
        str(workers),
        config=echo_config("old: ", delay="100ms"),
        directory=tmp_path,
    ) as gw:
        stream: dict = {}
        thread = open_stream(gw.url, WORDS, stream)
        assert stream["started"].wait(30)
        gw.signal(signal.SIGTERM)
        gw.wait_log("shutting down", count=workers)

        def attempt() -> str:
            try:
                with socket.create_connection(("127.0.0.1", gw.port), timeout=2) as conn:
                    conn.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
                    conn.settimeout(2)
                    return "answered" if conn.recv(100) else "closed"
            except ConnectionRefusedError:
                return "refused"
            except ConnectionResetError:
                return "reset"
            except TimeoutError:
                return "hung"

        # (the sockets close right after the line is logged)
        wait_until(lambda: attempt() == "refused", 10, "a new connection refused")
        assert thread.is_alive(), "the stream still drains"
        thread.join(30)
        assert "error" not in stream, stream
        assert streamed_text(stream["payloads"]) == "old: " + WORDS
        assert gw.wait() == 0
