"""Shared fixtures: a gateway app under test, fake upstreams, and official SDK clients."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
import redis
from aiohttp.test_utils import TestClient, TestServer
from fakes import anthropic_upstream, openai_upstream

from gateway import create_app

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent

MakeGateway = Callable[..., Awaitable[TestClient]]


@pytest.fixture
def make_gateway(aiohttp_client: Any) -> MakeGateway:
    """``await make_gateway(config, plugins=[...])``: a running gateway (installed plugins ignored)."""

    async def make(
        config: dict[str, Any] | None = None,
        *,
        plugins: Any = (),
        env: dict[str, str] | None = None,
    ) -> TestClient:
        app = create_app(config or {}, plugins=plugins, env=env or {})
        return await aiohttp_client(app)

    return make


@pytest.fixture
async def upstream(aiohttp_server: Any) -> TestServer:
    """A scripted OpenAI-compatible upstream (see ``fakes/openai_upstream.py``)."""
    return await aiohttp_server(openai_upstream.make_app())


def upstream_config(server: TestServer | str, **backend: Any) -> dict[str, Any]:
    """A configuration with one ``openai`` backend ``up`` at ``server`` and model ``gpt-test``
    routed to upstream model ``up-model``."""
    base = server if isinstance(server, str) else str(server.make_url("/v1"))
    return {
        "backends": {
            "up": {"kind": "openai", "base_url": base, "api_key": "upstream-secret", **backend}
        },
        "models": {"gpt-test": {"backend": "up", "upstream_model": "up-model"}},
    }


@pytest.fixture
async def claude_upstream(aiohttp_server: Any) -> TestServer:
    """A scripted Anthropic upstream (see ``fakes/anthropic_upstream.py``)."""
    return await aiohttp_server(anthropic_upstream.make_app())


def claude_config(server: TestServer | str, **backend: Any) -> dict[str, Any]:
    """A configuration with one ``anthropic`` backend ``claude`` at ``server`` and model
    ``claude-test`` routed to upstream model ``up-claude``."""
    base = server if isinstance(server, str) else str(server.make_url("")).rstrip("/")
    return {
        "backends": {
            "claude": {"kind": "anthropic", "base_url": base, "api_key": "claude-secret", **backend}
        },
        "models": {"claude-test": {"backend": "claude", "upstream_model": "up-claude"}},
    }


def both_config(openai_server: TestServer, claude_server: TestServer) -> dict[str, Any]:
    """Both fake upstreams: ``gpt-test`` (OpenAI kind) and ``claude-test`` (Anthropic kind)."""
    cfg = upstream_config(openai_server)
    other = claude_config(claude_server)
    cfg["backends"].update(other["backends"])
    cfg["models"].update(other["models"])
    return cfg


def recorded(server: TestServer) -> list[dict[str, Any]]:
    """The request bodies a fake upstream (either kind) received."""
    key = openai_upstream.REQUESTS if openai_upstream.REQUESTS in server.app else None
    return server.app[key or anthropic_upstream.REQUESTS]


@pytest.fixture
async def sdk() -> AsyncIterator[Callable[..., openai.AsyncOpenAI]]:
    """``sdk(client, api_key=...)``: the official async OpenAI client pointed at a gateway under
    test (closed after the test)."""
    made: list[openai.AsyncOpenAI] = []

    def make(client: TestClient, api_key: str = "unused", **kwargs: Any) -> openai.AsyncOpenAI:
        api = openai.AsyncOpenAI(
            base_url=str(client.make_url("/v1")), api_key=api_key, max_retries=0, **kwargs
        )
        made.append(api)
        return api

    yield make
    for api in made:
        await api.close()


@pytest.fixture
async def claude_sdk() -> AsyncIterator[Callable[..., anthropic.AsyncAnthropic]]:
    """``claude_sdk(client, api_key=...)``: the official async Anthropic client pointed at a
    gateway under test (closed after the test)."""
    made: list[anthropic.AsyncAnthropic] = []

    def make(
        client: TestClient, api_key: str = "unused", **kwargs: Any
    ) -> anthropic.AsyncAnthropic:
        api = anthropic.AsyncAnthropic(
            base_url=str(client.make_url("")).rstrip("/"), api_key=api_key, max_retries=0, **kwargs
        )
        made.append(api)
        return api

    yield make
    for api in made:
        await api.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(
    port: int, proc: subprocess.Popen[Any] | None = None, timeout: float = 20.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"process exited with {proc.returncode} before listening:\n{out}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port} after {timeout}s")


def hookgate_env(**extra: str) -> dict[str, str]:
    """The environment for a gateway subprocess: no HOOKGATE_* from the caller's shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKGATE_")}
    env.update(extra)
    return env


class GatewayProcess:
    """A ``python -m gateway`` subprocess (see :func:`gateway_process`)."""

    def __init__(self, proc: subprocess.Popen[str], port: int) -> None:
        self.proc = proc
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.output = ""
        self.signalled = False

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def send(self, sig: int = signal.SIGTERM) -> None:
        """Send ``sig`` now (once stopping, :meth:`stop` sends nothing more)."""
        self.signalled = True
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Send ``sig`` (unless already signalled or gone), wait, keep the output; returns the
        exit status."""
        if self.proc.poll() is None and not self.signalled:
            self.send(sig)
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        self.output += out or ""
        return self.proc.returncode


@contextlib.contextmanager
def gateway_process(
    *args: str,
    cmd: list[str] | None = None,
    port: int | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[GatewayProcess]:
    """Run ``python -m gateway <args>`` (or ``cmd``) on a free port until the block ends, then
    SIGTERM it.

    The port goes in ``HOOKGATE_PORT`` (and ``--port`` for ``serve``); the process gets no other
    HOOKGATE_* variable from the caller's shell, only ``env``. After the block, ``returncode`` and
    ``output`` tell how it ended.
    """
    port = port or free_port()
    command = list(cmd or [sys.executable, "-m", "gateway", *args])
    if "serve" in command and "--port" not in command:
        command += ["--port", str(port)]
    proc = subprocess.Popen(
        command,
        env=hookgate_env(HOOKGATE_PORT=str(port), **(env or {})),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    running = GatewayProcess(proc, port)
    try:
        wait_for_port(port, proc)
        yield running
    finally:
        running.stop()


@pytest.fixture
def upstream_process() -> Iterator[str]:
    """The fake upstream as a separate real process; yields its ``/v1`` base URL."""
    with fake_upstream_process() as url:
        yield url


@contextlib.contextmanager
def fake_upstream_process() -> Iterator[str]:
    """Run the fake upstream as a process of its own until the block ends; yields its ``/v1``
    base URL (for fixtures of a wider scope than ``upstream_process``)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(TESTS / "fakes" / "openai_upstream.py"), str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout:
            proc.stdout.close()


# --- Redis: a real server for shared state ------------------------------------------------------

SHARED_REDIS_PORT = 6379


def redis_answers(port: int) -> bool:
    """Whether a Redis server on 127.0.0.1:``port`` answers PING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
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
        self.proc: subprocess.Popen[Any] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                *(self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""),
                *("--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while not redis_answers(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The Redis server tests share: 127.0.0.1:6379 when it answers, else one started on a free
    port for this test run (and stopped after). Tests isolate themselves with ``redis_prefix``;
    other test runs may use the same server, so nothing may ever flush it."""
    if redis_answers(SHARED_REDIS_PORT):
        yield f"redis://127.0.0.1:{SHARED_REDIS_PORT}/0"
        return
    server = RedisServer()
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards (by prefix only)."""
    prefix = f"hookgate-test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.unlink(*keys)
    finally:
        client.close()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A private Redis server (running), for tests that stop and restart it."""
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["memory", "redis"])
def store_config(request: pytest.FixtureRequest) -> Callable[..., dict[str, Any]]:
    """``store_config(section, **options)``: ``[section] store`` set to the store under test (the
    test runs once with "memory" and once with "redis"), and for Redis, ``[redis]`` pointed at
    the test server under a key prefix of the test's own."""

    def make(section: str, **options: Any) -> dict[str, Any]:
        cfg: dict[str, Any] = {section: {"store": request.param, **options}}
        if request.param == "redis":
            cfg["redis"] = {
                "url": request.getfixturevalue("redis_url"),
                "prefix": request.getfixturevalue("redis_prefix"),
            }
        return cfg

    return make


def agent_toml(path: Path, upstream: str, head: str = "", **agent: str) -> str:
    """Write a configuration file with the fake upstream at ``upstream`` as model ``gpt-test``
    and an agent ``helper`` thinking with it (``agent``: its TOML values, as TOML text), after
    the tables in ``head``; returns the path, for ``--config``."""
    lines = [f"{key} = {value}" for key, value in agent.items()]
    path.write_text(
        f"""{head}
[backends.up]
kind = "openai"
base_url = "{upstream}"

[models.gpt-test]
backend = "up"

[agents.helper]
model = "gpt-test"
"""
        + "\n".join(lines)
        + "\n"
    )
    return str(path)


@pytest.fixture(scope="session")
def agui_client() -> Path:
    """A directory with the official ``@ag-ui/client`` (pinned by ``agui_client/package-lock.json``)
    installed by npm, and ``run.mjs`` beside it. The install is cached outside the repository,
    keyed by the lockfile, so only the first run on a machine downloads it."""
    src = TESTS / "agui_client"
    lock = (src / "package-lock.json").read_bytes()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hookgate-tests"
    target = cache / f"agui-client-{hashlib.sha256(lock).hexdigest()[:16]}"
    if not (target / "node_modules" / "@ag-ui" / "client" / "package.json").exists():
        building = cache / f"{target.name}.{os.getpid()}"
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir(parents=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(src / name, building / name)
        npm = shutil.which("npm")
        assert npm, "npm is needed to install @ag-ui/client for the AG-UI client test"
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=building,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
        try:
            building.rename(target)
        except OSError:  # another test run installed it meanwhile
            shutil.rmtree(building, ignore_errors=True)
    shutil.copy(src / "run.mjs", target / "run.mjs")
    return target


# --- NATS: a real server for the nats listener ---------------------------------------------------

SHARED_NATS_PORT = 4222


def nats_answers(port: int) -> bool:
    """Whether a NATS server on 127.0.0.1:``port`` greets with INFO."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
            return s.recv(5).startswith(b"INFO ")
    except OSError:
        return False


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    """The NATS server tests use: 127.0.0.1:4222 when it answers, else a ``nats-server`` started
    on a free port for this test run (and stopped after). Tests use subjects of their own."""
    if nats_answers(SHARED_NATS_PORT):
        yield f"nats://127.0.0.1:{SHARED_NATS_PORT}"
        return
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
        deadline = time.monotonic() + 20
        while not nats_answers(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"nats-server did not start on port {port}")
            time.sleep(0.02)
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
async def official() -> AsyncIterator[Callable[..., Any]]:
    """``await official(url, key=..., streaming=..., legacy=..., polling=...)``: the official
    a2a-sdk client for the agent card at ``url`` (see ``a2a_check.official_maker``)."""
    from a2a_check import official_maker

    made: list[Any] = []
    yield official_maker(made)
    for client, http in made:
        await client.close()
        await http.aclose()
