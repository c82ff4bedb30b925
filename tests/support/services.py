"""Local services the integration tests use: Redis and NATS, the shared ones on their standard
ports when they answer, else servers of the test run's own on free ports."""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator

from support.processes import free_port
from support.waiting import wait_until

SHARED_REDIS_PORT = 6379
SHARED_NATS_PORT = 4222


def redis_answers(port: int) -> bool:
    """Whether a Redis server on 127.0.0.1:``port`` answers PING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def nats_answers(port: int) -> bool:
    """Whether a NATS server on 127.0.0.1:``port`` greets with INFO."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
            return s.recv(5).startswith(b"INFO ")
    except OSError:
        return False


class RedisServer:
    """A ``redis-server`` process of a test's own on a free port (no persistence), which the
    test may stop and start again on the same port."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise AssertionError("redis-server is not installed (scripts/test installs it)")
        self.binary = binary
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        proc = self.proc = subprocess.Popen(
            [
                *(self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""),
                *("--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(
            lambda: redis_answers(self.port) or proc.poll() is not None,
            20,
            f"redis-server answering on port {self.port}",
        )
        if proc.poll() is not None:
            raise AssertionError(f"redis-server exited with {proc.returncode} on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a test may have frozen it (SIGSTOP)
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


@contextlib.contextmanager
def nats_server() -> Iterator[str]:
    """A ``nats-server`` of the test run's own on a free port until the block ends; its URL."""
    binary = shutil.which("nats-server")
    if binary is None:
        raise AssertionError("nats-server is not installed (scripts/test installs it)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "-a", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(
            lambda: nats_answers(port) or proc.poll() is not None,
            20,
            f"nats-server answering on port {port}",
        )
        if proc.poll() is not None:
            raise AssertionError(f"nats-server exited with {proc.returncode} on port {port}")
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
