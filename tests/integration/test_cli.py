"""The hookgate command as a real process: serve, answer, drain on SIGTERM/SIGINT, exit 0."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import openai
import pytest
from support.processes import gateway_process, hookgate_env
from support.waiting import wait_until

from gateway.core.plugins import BUILTINS

SLOW_ECHO = '[backends.echo]\nkind = "echo"\ndelay = "{delay}"\n[models.echo]\nbackend = "echo"\n'


def _config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "hookgate.toml"
    path.write_text(text)
    return str(path)


def test_console_script_serves_with_no_configuration():
    exe = shutil.which("hookgate", path=str(Path(sys.executable).parent))
    assert exe, "the hookgate console script is installed next to the interpreter"
    with gateway_process(cmd=[exe, "serve"]) as gw:
        with openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0) as api:
            out = api.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
            )
        assert out.choices[0].message.content == "hi"
    assert gw.returncode == 0
    assert "echo backend" in gw.output and "OPEN" in gw.output
    assert f"listening on {gw.url}" in gw.output


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_drains_in_flight_stream_then_exits_zero(tmp_path: Path, sig):
    words = [f"w{i}" for i in range(30)]
    received: list[str] = []
    errors: list[BaseException] = []
    streaming = threading.Event()
    config = _config(tmp_path, SLOW_ECHO.format(delay="50ms"))
    with gateway_process("serve", "--config", config) as gw:

        def consume():
            try:
                with openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0) as api:
                    stream = api.chat.completions.create(
                        model="echo",
                        messages=[{"role": "user", "content": " ".join(words)}],
                        stream=True,
                    )
                    for chunk in stream:
                        received.append(chunk.choices[0].delta.content or "")
                        if len(received) >= 3:
                            streaming.set()
            except BaseException as exc:
                errors.append(exc)
            finally:
                streaming.set()

        thread = threading.Thread(target=consume)
        thread.start()
        assert streaming.wait(30)
        gw.stop(sig)
        thread.join(30)
    assert not errors, errors
    assert "".join(received) == " ".join(words)  # the stream was drained, not cut
    assert gw.returncode == 0, gw.output
    assert "draining" in gw.output
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(gw.url + "/health", timeout=2)


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_the_moment_the_port_accepts_drains_and_exits_zero(workers):
    # Signal handlers are installed before the sockets listen: a SIGTERM that arrives as soon
    # as a connection is accepted (before the application is up) drains, it never kills.
    with gateway_process("serve", "--workers", workers, ready=False) as gw:
        wait_until(
            lambda: _accepts(gw.port) or gw.returncode is not None,
            30,
            "the port accepting",
            gw.describe,
            pause=0.001,
        )
        gw.signal(signal.SIGTERM)
        assert gw.stop() == 0, gw.output
    assert "draining" in gw.output


def test_stopped_as_soon_as_it_serves_with_redis_it_exits_at_once(
    tmp_path, redis_url, redis_prefix
):
    # Background Redis readers (run cancellations) end when cancelled, however early: the drain
    # has nothing to wait for, so it takes far less than its 30s. A few times, as it was a race.
    config = f'[redis]\nurl = "{redis_url}"\nprefix = "{redis_prefix}"\n'
    for _ in range(3):
        with gateway_process(config=config, directory=tmp_path) as gw:
            assert gw.stop(timeout=10) == 0, gw.output


def test_drain_deadline_cuts_long_streams_with_an_error_frame(tmp_path: Path):
    config = _config(
        tmp_path, '[server]\ndrain_timeout = "300ms"\n' + SLOW_ECHO.format(delay="100ms")
    )
    with gateway_process("serve", "--config", config) as gw:
        body = {
            "model": "echo",
            "stream": True,
            "messages": [{"role": "user", "content": "word " * 100}],
        }
        request = urllib.request.Request(
            gw.url + "/v1/chat/completions",
            data=json.dumps(body).encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as resp:
            assert resp.readline().startswith(b"data: ")
            gw.signal(signal.SIGTERM)
            rest = [line.decode().strip() for line in resp]
        # let it exit on its own: a second SIGTERM could land after the loop closed (and its
        # handlers with it), killing the process as it exits
        assert gw.wait() == 0, gw.output
    data = [json.loads(x[6:]) for x in rest if x.startswith("data: {")]
    assert "error" in data[-1] and "shutting down" in data[-1]["error"]["message"]
    assert "data: [DONE]" not in rest
    assert gw.returncode == 0, gw.output


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.load(resp)


def _plugins(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "plugins", *args],
        env=hookgate_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_plugins_command_lists_builtins_and_disabled(tmp_path: Path):
    out = _plugins()
    assert out.returncode == 0
    header, *rows = out.stdout.splitlines()
    assert header.split()[:4] == ["NAME", "VERSION", "DISTRIBUTION", "STATE"]
    for name in BUILTINS:
        assert any(
            r.split()[0] == name and "hookgate" in r.split() and "enabled" in r for r in rows
        ), name
    out = _plugins("--config", _config(tmp_path, '[plugins]\ndisable = ["ops.metrics"]\n'))
    assert any(r.split()[0] == "ops.metrics" and "disabled" in r for r in out.stdout.splitlines())


def test_python_dash_m_gateway_serves_by_default():
    # `python -m gateway` with no command is `serve`; it reads its port from HOOKGATE_PORT
    with gateway_process(cmd=[sys.executable, "-m", "gateway"]) as gw:
        health = _get_json(gw.url + "/health")
    assert health["status"] == "ok"
    assert gw.returncode == 0


def test_port_in_use_fails_cleanly():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = subprocess.run(
            [sys.executable, "-m", "gateway", "serve", "--port", str(port)],
            env=hookgate_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert out.returncode == 1
    assert "cannot listen" in out.stderr
