"""SIGHUP re-reads the configuration of a running gateway without dropping open streams."""

from __future__ import annotations

import signal
import urllib.request
from pathlib import Path

from support.configs import echo_config
from support.processes import chat, gateway_process, open_stream, streamed_text

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
