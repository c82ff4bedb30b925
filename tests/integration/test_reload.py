"""SIGHUP re-reads the configuration of a running gateway without dropping open streams."""

from __future__ import annotations

import json
import signal
import threading
import urllib.request
from pathlib import Path

from procs import Hookgate, chat, echo_config, streamed_text

WORDS = " ".join(f"w{i}" for i in range(20))


def open_stream(url: str, text: str, out: dict) -> threading.Thread:
    """Start a streamed chat in a thread; ``out["started"]`` is set at its first frame and
    ``out["payloads"]`` holds every data payload once it ends."""
    started = out["started"] = threading.Event()

    def consume() -> None:
        body = {"model": "echo", "stream": True, "messages": [{"role": "user", "content": text}]}
        req = urllib.request.Request(
            url + "/v1/chat/completions",
            data=json.dumps(body).encode(),
            headers={"content-type": "application/json"},
        )
        payloads = []
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                for line in resp:
                    if line.startswith(b"data: "):
                        payloads.append(line[6:].decode().strip())
                        started.set()
        except BaseException as exc:
            out["error"] = exc
        finally:
            out["payloads"] = payloads
            started.set()

    thread = threading.Thread(target=consume)
    thread.start()
    return thread


def test_reload_applies_a_good_config_keeps_streams_and_refuses_a_bad_one(tmp_path: Path):
    gw = Hookgate(tmp_path, echo_config("old: ", delay="100ms"))
    try:
        gw.wait_listening()
        assert chat(gw.url, "hi") == "old: hi"
        stream: dict = {}
        thread = open_stream(gw.url, WORDS, stream)
        assert stream["started"].wait(30)

        gw.config.write_text(echo_config("new: ", delay="0s"))
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

        gw.config.write_text(echo_config("bad: ", not_an_option=1))
        gw.signal(signal.SIGHUP)
        gw.wait_log("reload refused")
        assert chat(gw.url, "hi") == "new: hi"  # the old configuration keeps serving
        assert any("not_an_option" in line for line in gw.log)
        assert gw.stop() == 0
    finally:
        gw.kill()
