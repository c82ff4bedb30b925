"""A hookgate process under test: started with a config file, its log collected as it runs."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import free_port, hookgate_env, wait_for_port


def echo_config(prefix: str, delay: str = "0s", **server: Any) -> str:
    lines = ["[server]", *(f"{k} = {json.dumps(v)}" for k, v in server.items())]
    lines += [
        "[backends.echo]",
        'kind = "echo"',
        f"prefix = {json.dumps(prefix)}",
        f'delay = "{delay}"',
        "[models.echo]",
        'backend = "echo"',
    ]
    return "\n".join(lines) + "\n"


class Hookgate:
    """``python -m gateway serve`` on a free port; ``log`` holds its output lines so far."""

    def __init__(self, tmp: Path, config: str, *args: str, **env: str) -> None:
        self.port = free_port()
        self.config = tmp / "hookgate.toml"
        self.config.write_text(config)
        cmd = [sys.executable, "-m", "gateway", "serve", "--config", str(self.config)]
        cmd += ["--port", str(self.port), *args]
        self.proc = subprocess.Popen(
            cmd,
            env=hookgate_env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.log: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.log.append(line.rstrip("\n"))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_listening(self) -> Hookgate:
        wait_for_port(self.port, None, timeout=30)
        return self

    def wait_log(self, text: str, count: int = 1, timeout: float = 30.0) -> None:
        wait_until(
            lambda: sum(text in line for line in self.log) >= count,
            timeout,
            f"{count} log line(s) with {text!r}",
            self,
        )

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30.0, *, signal_it: bool = True) -> int:
        """SIGTERM (unless ``signal_it`` is false: one was sent already) and the exit status."""
        if signal_it and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        self._reader.join(5)
        return code

    def kill(self) -> None:
        """Make sure the process (and its workers) are gone; always call it (``finally``)."""
        if self.proc.poll() is None:
            for pid in children(self.proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.proc.kill()
            self.proc.wait()
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def output(self) -> str:
        return "\n".join(self.log)


def wait_until(
    cond: Callable[[], Any], timeout: float, what: str, gw: Hookgate | None = None
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.02)
    log = f"\nlog:\n{gw.output()}" if gw is not None else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}{log}")


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (from /proc)."""
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            kids += [int(p) for p in (task / "children").read_text().split()]
    return kids


def chat(url: str, text: str, *, stream: bool = False, timeout: float = 30.0) -> Any:
    """One chat request with a fresh connection; the reply text (non-streamed) or the list of
    SSE data payloads (streamed)."""
    body = {"model": "echo", "stream": stream, "messages": [{"role": "user", "content": text}]}
    req = urllib.request.Request(
        url + "/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", "connection": "close"},
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        if not stream:
            return json.load(resp)["choices"][0]["message"]["content"]
        return [line[6:].decode().strip() for line in resp if line.startswith(b"data: ")]


def streamed_text(payloads: list[str]) -> str:
    out = []
    for p in payloads:
        if p == "[DONE]":
            continue
        obj = json.loads(p)
        if "error" in obj:
            raise AssertionError(f"error frame: {obj}")
        out += [c["delta"].get("content") or "" for c in obj["choices"]]
    return "".join(out)
