"""The hookgate command as a real process: serve, answer, drain on SIGTERM/SIGINT, exit 0."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import openai
import pytest
from conftest import free_port, hookgate_env, wait_for_port

from gateway.plugins import BUILTINS


def _start(args, tmp_path: Path, config: str | None = None, **env):
    cmd = [sys.executable, "-m", "gateway", *args]
    if config is not None:
        path = tmp_path / "hookgate.toml"
        path.write_text(config)
        cmd += ["--config", str(path)]
    return subprocess.Popen(
        cmd, env=hookgate_env(**env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def test_console_script_serves_with_no_configuration():
    exe = shutil.which("hookgate", path=str(Path(sys.executable).parent))
    assert exe, "the hookgate console script is installed next to the interpreter"
    port = free_port()
    proc = subprocess.Popen(
        [exe, "serve", "--port", str(port)],
        env=hookgate_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_port(port, proc)
        with openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0
        ) as api:
            out = api.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
            )
        assert out.choices[0].message.content == "hi"
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert (
        "echo backend" in output
        and "OPEN" in output
        and f"listening on http://127.0.0.1:{port}" in output
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_drains_in_flight_stream_then_exits_zero(tmp_path: Path, sig):
    port = free_port()
    config = '[backends.echo]\nkind = "echo"\ndelay = "50ms"\n[models.echo]\nbackend = "echo"\n'
    proc = _start(["serve", "--port", str(port)], tmp_path, config)  # `python -m gateway serve`
    words = [f"w{i}" for i in range(30)]
    received: list[str] = []
    errors: list[BaseException] = []

    def consume():
        try:
            with openai.OpenAI(
                base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0
            ) as api:
                stream = api.chat.completions.create(
                    model="echo",
                    messages=[{"role": "user", "content": " ".join(words)}],
                    stream=True,
                )
                for chunk in stream:
                    received.append(chunk.choices[0].delta.content or "")
        except BaseException as exc:
            errors.append(exc)

    try:
        wait_for_port(port, proc)
        thread = threading.Thread(target=consume)
        thread.start()
        while len(received) < 3 and thread.is_alive():
            time.sleep(0.01)
        proc.send_signal(sig)
        thread.join(30)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not errors, errors
    assert "".join(received) == " ".join(words)  # the stream was drained, not cut
    assert proc.returncode == 0, output
    assert "draining" in output
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)


def test_drain_deadline_cuts_long_streams_with_an_error_frame(tmp_path: Path):
    port = free_port()
    config = (
        '[server]\ndrain_timeout = "300ms"\n[backends.echo]\nkind = "echo"\ndelay = "100ms"\n'
        '[models.echo]\nbackend = "echo"\n'
    )
    proc = _start(["serve", "--port", str(port)], tmp_path, config)
    try:
        wait_for_port(port, proc)
        body = {
            "model": "echo",
            "stream": True,
            "messages": [{"role": "user", "content": "word " * 100}],
        }
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            data=json.dumps(body).encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as resp:
            assert resp.readline().startswith(b"data: ")
            proc.send_signal(signal.SIGTERM)
            rest = [line.decode().strip() for line in resp]
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    data = [json.loads(x[6:]) for x in rest if x.startswith("data: {")]
    assert "error" in data[-1] and "shutting down" in data[-1]["error"]["message"]
    assert "data: [DONE]" not in rest
    assert proc.returncode == 0, output


def test_plugins_command_lists_builtins_and_disabled(tmp_path: Path):
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "plugins"],
        env=hookgate_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0
    header, *rows = out.stdout.splitlines()
    assert header.split()[:4] == ["NAME", "VERSION", "DISTRIBUTION", "STATE"]
    for name in BUILTINS:
        assert any(
            r.split()[0] == name and "hookgate" in r.split() and "enabled" in r for r in rows
        ), name
    cfg = tmp_path / "c.toml"
    cfg.write_text('[plugins]\ndisable = ["ops.metrics"]\n')
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "plugins", "--config", str(cfg)],
        env=hookgate_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert any(r.split()[0] == "ops.metrics" and "disabled" in r for r in out.stdout.splitlines())


def test_python_dash_m_gateway_serves_by_default(tmp_path: Path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway"],
        env=hookgate_env(HOOKGATE_PORT=str(port)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_port(port, proc)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as resp:
            assert json.load(resp)["status"] == "ok"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_port_in_use_fails_cleanly(tmp_path: Path):
    import socket

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
