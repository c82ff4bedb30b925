"""Real processes under test: the gateway (``python -m gateway``) and the fake upstream, each
with its output collected line by line while it runs.

Every test that runs a gateway process uses :func:`gateway_process`: it starts the process on a
free port, waits until ``GET /health`` answers 200 (with ``--workers N``, until a worker answers),
and at the end of the block stops it (SIGTERM, unless the test already sent one) and kills
whatever is left, workers included. When the process exits or a wait times out first, the
error shows the process's output.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from signal import SIGINT, SIGKILL, SIGTERM
from typing import Any

from support import TESTS
from support.waiting import PAUSE


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hookgate_env(**extra: str) -> dict[str, str]:
    """The environment for a gateway subprocess: no HOOKGATE_* from the caller's shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKGATE_")}
    env.update(extra)
    return env


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (from /proc)."""
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            kids += [int(p) for p in (task / "children").read_text().split()]
    return kids


def children_running(program: bytes) -> list[int]:
    """This process's children whose command line holds ``program`` (``b"exporter.py"``)."""
    found = []
    # children() reads every thread's list, passing over a thread that ends meanwhile.
    for pid in children(os.getpid()):
        with contextlib.suppress(OSError):
            if program in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
    return found


def ended(pid: int) -> bool:
    """Whether ``pid`` has ended (gone, or a zombie not yet reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] == "Z"
    except OSError:
        return True


class Process:
    """A subprocess whose output (stdout and stderr together) is collected line by line."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.command = command
        self.proc = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        #: The output lines so far, without their line ends.
        self.log: list[str] = []
        #: Whether SIGTERM or SIGINT was sent (:meth:`stop` then sends nothing more).
        self.stopping = False
        self._changed = threading.Condition()
        self._ended = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.log.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    @property
    def output(self) -> str:
        """Everything the process wrote so far."""
        with self._changed:
            return "\n".join(self.log)

    def describe(self) -> str:
        """The command, how it ended (if it did), and its output: for failure messages."""
        status = "is running" if self.returncode is None else f"exited with {self.returncode}"
        return f"{' '.join(self.command)} {status}; its output:\n{self.output}"

    def wait_log(self, text: str, count: int = 1, timeout: float = 30.0) -> None:
        """Wait until ``count`` output lines contain ``text``."""

        def seen() -> bool:
            return sum(text in line for line in self.log) >= count

        with self._changed:
            if not self._changed.wait_for(lambda: seen() or self._ended, timeout):
                raise AssertionError(
                    f"no {count} line(s) with {text!r} after {timeout}s: {self.describe()}"
                )
            if seen():
                return
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        raise AssertionError(f"ended before {count} line(s) with {text!r}: {self.describe()}")

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the process."""
        if sig in (SIGTERM, SIGINT):
            self.stopping = True
        self.proc.send_signal(sig)

    def stop(self, sig: int = SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig`` (unless the process ended or was told to stop already), wait for it to
        exit, and return its exit status."""
        if self.proc.poll() is None and not self.stopping:
            self.signal(sig)
        return self.wait(timeout)

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for the process to exit (sending nothing) and return its exit status; past
        ``timeout`` kill it and fail with its output."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"did not exit within {timeout}s: {self.describe()}") from None
        self._reader.join(5)
        return code

    def kill(self) -> None:
        """Make sure the process and its own children (workers) are gone, and close its pipe;
        call it in ``finally`` (``gateway_process`` does)."""
        if self.proc.poll() is None:
            for pid in children(self.proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, SIGKILL)
            self.proc.kill()
            self.proc.wait()
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class GatewayProcess(Process):
    """``python -m gateway <args>`` (``serve`` when no args; or ``cmd``) on a free port.

    The port goes in ``HOOKGATE_PORT`` (and ``--port`` for ``serve``); the process gets no other
    HOOKGATE_* variable from the caller's shell, only ``env``. With ``config`` (TOML text) the
    file is written to ``directory/hookgate.toml`` (:attr:`config_file`, which a test may
    rewrite before a SIGHUP) and passed with ``--config``.
    """

    def __init__(
        self,
        *args: str,
        cmd: list[str] | None = None,
        config: str | None = None,
        directory: Path | None = None,
        port: int | None = None,
        env: dict[str, str] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.port = port or free_port()
        #: What a client trusts the gateway's certificate with, when it serves HTTPS.
        self.tls = tls
        self.url = f"{'https' if tls is not None else 'http'}://127.0.0.1:{self.port}"
        command = list(cmd or [sys.executable, "-m", "gateway", *(args or ("serve",))])
        self.config_file: Path | None = None
        if config is not None:
            if directory is None:
                raise ValueError("config text needs a directory to write hookgate.toml in")
            self.config_file = directory / "hookgate.toml"
            self.config_file.write_text(config)
            command += ["--config", str(self.config_file)]
        if "serve" in command and "--port" not in command:
            command += ["--port", str(self.port)]
        super().__init__(command, hookgate_env(HOOKGATE_PORT=str(self.port), **(env or {})))

    def wait_ready(self, timeout: float = 30.0) -> GatewayProcess:
        """Wait until ``GET /health`` answers 200 (a port that accepts is not enough: a worker
        may listen before it serves); fail at once, with the output, if the process exits."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                self._reader.join(5)
                raise AssertionError(f"exited before it was ready: {self.describe()}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"/health did not answer within {timeout}s: {self.describe()}")
            try:
                with urllib.request.urlopen(
                    self.url + "/health", timeout=min(left, 5), context=self.tls
                ) as resp:
                    if resp.status == 200:
                        return self
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(PAUSE)


@contextlib.contextmanager
def gateway_process(
    *args: str,
    cmd: list[str] | None = None,
    config: str | None = None,
    directory: Path | None = None,
    port: int | None = None,
    env: dict[str, str] | None = None,
    ready: bool = True,
    tls: ssl.SSLContext | None = None,
) -> Iterator[GatewayProcess]:
    """Run a :class:`GatewayProcess` for the block: ready (unless ``ready`` is false) when the
    block starts; stopped with SIGTERM (unless the test stopped it) and cleaned up after it.
    ``returncode`` and ``output`` tell afterwards how it ended."""
    gw = GatewayProcess(
        *args, cmd=cmd, config=config, directory=directory, port=port, env=env, tls=tls
    )
    try:
        if ready:
            gw.wait_ready()
        yield gw
    finally:
        try:
            gw.stop()
        finally:
            gw.kill()


@contextlib.contextmanager
def fake_upstream_process() -> Iterator[str]:
    """Run the fake OpenAI upstream (``fakes/openai_upstream.py``) as a process of its own until
    the block ends; yields its ``/v1`` base URL once it serves."""
    port = free_port()
    fake = Process(
        [sys.executable, str(TESTS / "fakes" / "openai_upstream.py"), str(port)], dict(os.environ)
    )
    try:
        fake.wait_log("ready")
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        try:
            fake.stop()
        finally:
            fake.kill()


# --- talking to a gateway process without an SDK (fresh connections, from threads) --------------


def chat(url: str, text: str, *, stream: bool = False, timeout: float = 30.0) -> Any:
    """One chat request to model ``echo`` on a fresh connection; the reply text (non-streamed)
    or the list of SSE data payloads (streamed)."""
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
    """The text of a streamed chat's data payloads; an error frame fails the test."""
    out = []
    for p in payloads:
        if p == "[DONE]":
            continue
        obj = json.loads(p)
        if "error" in obj:
            raise AssertionError(f"error frame: {obj}")
        out += [c["delta"].get("content") or "" for c in obj["choices"]]
    return "".join(out)


def open_stream(url: str, text: str, out: dict[str, Any]) -> threading.Thread:
    """Start a streamed chat with model ``echo`` in a thread; ``out["started"]`` is set at its
    first frame and ``out["payloads"]`` holds every data payload once it ends (``out["error"]``
    what it failed with)."""
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
