"""Local services the integration tests use: Redis, NATS and PostgreSQL, the shared ones on their
standard ports when they answer, else servers of the test run's own on free ports."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

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


# --- PostgreSQL ---------------------------------------------------------------------------------

SHARED_POSTGRES_PORT = 5432


def postgres_answers(port: int) -> bool:
    """Whether a PostgreSQL server on 127.0.0.1:``port`` accepts the ``postgres`` user without
    a password (trust authentication, as the test machines set it up)."""
    psql = shutil.which("psql")
    if psql is None:
        return False
    try:
        done = subprocess.run(
            [psql, *_psql_target(port), "-tAc", "SELECT 1"],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and done.stdout.strip() == b"1"


def _psql_target(port: int) -> list[str]:
    return ["-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", "postgres", "-w"]


def psql(port: int, sql: str) -> None:
    """Run ``sql`` as the ``postgres`` user (creating and dropping test databases)."""
    done = subprocess.run(
        ["psql", *_psql_target(port), "-v", "ON_ERROR_STOP=1", "-qc", sql],
        capture_output=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"psql {sql!r} failed: {done.stderr.decode(errors='replace')}")


def _postgres_binary(name: str) -> str:
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / name).exists():
            return str(folder / name)
    found = shutil.which(name)
    if found is None:
        raise AssertionError(f"{name} is not installed (scripts/test installs postgresql)")
    return found


class PostgresServer:
    """A PostgreSQL cluster of the test run's own (``initdb`` in a temporary folder, trust
    authentication) on a free port. PostgreSQL refuses to run as root, so as root it runs as the
    ``postgres`` user the Debian package creates."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            self.as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(folder, "postgres")

    def _run(self, *command: str) -> None:
        done = subprocess.run(
            [*self.as_user, *command], capture_output=True, timeout=120, check=False
        )
        if done.returncode != 0:
            output = (done.stdout + done.stderr).decode(errors="replace")
            raise AssertionError(f"{command[0]} failed: {output}")

    def start(self) -> None:
        self._run(
            _postgres_binary("initdb"),
            *("-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync"),
        )
        self._run(
            _postgres_binary("pg_ctl"),
            *("-D", str(self.data), "-l", str(self.folder / "log"), "-w", "start"),
            "-o",
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off",
        )
        wait_until(lambda: postgres_answers(self.port), 30, f"PostgreSQL on port {self.port}")

    def stop(self) -> None:
        self._run(_postgres_binary("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
