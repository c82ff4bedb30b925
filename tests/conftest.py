"""Fixtures every test may ask for, and the rules that keep unit tests apart (see README.md).

- ``make_gateway``: a gateway app under test behind ``aiohttp_client``, served as ``hookgate
  serve`` serves it (:mod:`gateway.server.http`); ``upstream`` and
  ``claude_upstream``: the scripted fake upstreams in-process; ``upstream_process``: the fake
  upstream as a real process.
- ``sdk`` and ``claude_sdk``: the official OpenAI and Anthropic clients pointed at a gateway;
  ``official``: the official a2a-sdk client; ``agui_client``: the official ``@ag-ui/client``.
- ``redis_url`` and ``redis_prefix``: the shared Redis and a key prefix of the test's own;
  ``own_redis``: a private Redis the test may stop; ``store_config``: memory and Redis in turn;
  ``nats_url``: a NATS server; ``postgres_url``: an empty PostgreSQL database of the test's
  own.

Helpers that are not fixtures live in ``support/`` (gateway processes, configurations, waiting)
and ``fakes/`` (upstreams, tools and handlers that configurations name).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import inspect
import os
import shutil
import subprocess
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
from support import TESTS
from support import pki as certificates
from support.npm import installed
from support.processes import fake_upstream_process
from support.services import (
    SHARED_NATS_PORT,
    SHARED_POSTGRES_PORT,
    SHARED_REDIS_PORT,
    PostgresServer,
    RedisServer,
    nats_answers,
    nats_server,
    postgres_answers,
    psql,
    redis_answers,
)

from gateway import create_app
from gateway.server.http import Runner

UNIT = TESTS / "unit"

MakeGateway = Callable[..., Awaitable[TestClient]]


# --- unit tests apart ----------------------------------------------------------------------------


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test ``unit`` or ``integration`` by its folder; a unit test may open no network
    socket (pytest-socket's ``disable_socket``; the event loop's own Unix sockets are allowed)."""
    for item in items:
        if item.path.is_relative_to(UNIT):
            item.add_marker(pytest.mark.unit)
            item.add_marker(pytest.mark.disable_socket)
        else:
            item.add_marker(pytest.mark.integration)


# --- no test hangs the run ----------------------------------------------------------------------

#: An async test's own body may take this long; then it is cancelled where it waits and fails
#: with that place in its traceback, and the run goes on. pytest-timeout (pyproject.toml, a
#: longer limit, the thread method) is the backstop for what this cannot cancel, a fixture's
#: teardown or a blocked thread: it prints every thread's stack and ends the run. Its signal
#: method could not be that: raised inside an event loop's callback, its exception is only
#: logged by the loop, and the test goes on waiting.
TEST_BODY_TIMEOUT = float(os.environ.get("HOOKGATE_TEST_BODY_TIMEOUT", "150"))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    if isinstance(item, pytest.Function) and inspect.iscoroutinefunction(item.obj):
        item.obj = _bounded(item.obj)


def _bounded(test: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    @functools.wraps(test)
    async def body(*args: Any, **kwargs: Any) -> None:
        async with asyncio.timeout(TEST_BODY_TIMEOUT):
            await test(*args, **kwargs)

    return body


class _NoProcess(subprocess.Popen):  # type: ignore[type-arg]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("a unit test starts no process: move it to tests/integration")


@pytest.fixture(autouse=True)
def _unit_tests_start_no_process(request: pytest.FixtureRequest, monkeypatch: Any) -> None:
    if request.node.get_closest_marker("unit"):
        monkeypatch.setattr(subprocess, "Popen", _NoProcess)


@pytest.fixture(autouse=True)
def _garbage_of_its_own(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each integration test, collect its garbage: a resource it leaked (a socket, a
    transport, a client left open) is then reported in that test, as a ResourceWarning that
    fails it, not in whichever later test the collector happens to run during. What survives
    is frozen, so the next collection looks only at what the next test made: about a
    millisecond a test, where a full collection of the suite's heap takes a second or more."""
    yield
    if not request.node.get_closest_marker("unit"):
        gc.collect()
        gc.freeze()


# --- the gateway under test, fake upstreams, official clients -----------------------------------


class GatewayTestServer(TestServer):
    """aiohttp's test server with the gateway's own connections (see gateway.server.http)."""

    async def _make_runner(self, **kwargs: Any) -> Runner:
        return Runner(self.app, **kwargs)


@pytest.fixture
def make_gateway(aiohttp_client: Any) -> MakeGateway:
    """``await make_gateway(config, plugins=[...])``: a running gateway (installed plugins ignored)."""

    async def make(
        config: dict[str, Any] | None = None,
        *,
        plugins: Any = (),
        env: dict[str, str] | None = None,
    ) -> TestClient:
        app = create_app(patient(config or {}), plugins=plugins, env=env or {})
        return await aiohttp_client(GatewayTestServer(app))

    return make


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A throwaway certificate authority's PEM files (``support.pki.issue``): ``ca``,
    ``server`` (127.0.0.1) and ``client`` ("ada")."""
    return certificates.issue(tmp_path_factory.mktemp("pki"))


#: How long a gateway under test waits for Redis, unless its test says otherwise.
TEST_REDIS_TIMEOUT = "5s"


def patient(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with :data:`TEST_REDIS_TIMEOUT` as its ``[redis] timeout`` when it has a Redis
    and sets no timeout. The default (1 s) is what a gateway in production should wait before
    it answers 503; a test shares its machine, its event loop and Redis with everything else
    the suite runs, and on a loaded machine a read can wait longer than that without anything
    being wrong. Tests about a slow Redis set their own timeouts."""
    shared = config.get("redis")
    if not isinstance(shared, dict) or not shared.get("url") or "timeout" in shared:
        return config
    return {**config, "redis": {**shared, "timeout": TEST_REDIS_TIMEOUT}}


@pytest.fixture
async def upstream(aiohttp_server: Any) -> TestServer:
    """A scripted OpenAI-compatible upstream (see ``fakes/openai_upstream.py``)."""
    return await aiohttp_server(openai_upstream.make_app())


@pytest.fixture
async def claude_upstream(aiohttp_server: Any) -> TestServer:
    """A scripted Anthropic upstream (see ``fakes/anthropic_upstream.py``)."""
    return await aiohttp_server(anthropic_upstream.make_app())


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


@pytest.fixture
def upstream_process() -> Iterator[str]:
    """The fake upstream as a separate real process; yields its ``/v1`` base URL."""
    with fake_upstream_process() as url:
        yield url


# --- Redis: a real server for shared state ------------------------------------------------------


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


# --- PostgreSQL: a real server for the database ------------------------------------------------


@pytest.fixture(scope="session")
def postgres_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The port of the PostgreSQL server tests share: 5432 when it answers (trust auth for the
    ``postgres`` user), else a cluster started for this test run (and stopped after)."""
    if postgres_answers(SHARED_POSTGRES_PORT):
        yield SHARED_POSTGRES_PORT
        return
    server = PostgresServer(tmp_path_factory.mktemp("postgres"))
    server.start()
    try:
        yield server.port
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_port: int) -> Iterator[str]:
    """A fresh, empty database of this test's own (dropped afterwards); its URL."""
    name = f"hookgate_test_{uuid.uuid4().hex[:12]}"
    psql(postgres_port, f"CREATE DATABASE {name}")
    try:
        yield f"postgresql://postgres@127.0.0.1:{postgres_port}/{name}"
    finally:
        psql(postgres_port, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


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


@pytest.fixture(scope="session")
def agui_client() -> Path:
    """A directory with the official ``@ag-ui/client`` (pinned by ``agui_client/package-lock.json``)
    installed by npm, and ``run.mjs`` beside it. The install is cached outside the repository,
    keyed by the lockfile, so only the first run on a machine downloads it."""
    target = installed("agui_client", "node_modules/@ag-ui/client/package.json", "agui-client")
    shutil.copy(TESTS / "agui_client" / "run.mjs", target / "run.mjs")
    return target


@pytest.fixture(scope="session")
def mcp_ts_client() -> Path:
    """A directory with the official MCP TypeScript SDK (``@modelcontextprotocol/sdk``, pinned by
    ``mcp_ts_client/package-lock.json``) installed by npm, and ``run.mjs`` beside it."""
    target = installed(
        "mcp_ts_client", "node_modules/@modelcontextprotocol/sdk/package.json", "mcp-ts-client"
    )
    shutil.copy(TESTS / "mcp_ts_client" / "run.mjs", target / "run.mjs")
    return target


@pytest.fixture(scope="session")
def node_clients() -> Path:
    """A directory with the real Node clients of ``tests/clients`` installed (Claude Code, the
    Vercel AI SDK; pinned by its ``package-lock.json``) and the scripts that drive them beside
    them."""
    target = installed("clients", "node_modules/ai/package.json")
    for script in (TESTS / "clients").glob("*.mjs"):
        shutil.copy(script, target / script.name)
    return target


# --- NATS: a real server for the nats listener ---------------------------------------------------


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    """The NATS server tests use: 127.0.0.1:4222 when it answers, else a ``nats-server`` started
    on a free port for this test run (and stopped after). Tests use subjects of their own."""
    if nats_answers(SHARED_NATS_PORT):
        yield f"nats://127.0.0.1:{SHARED_NATS_PORT}"
        return
    with nats_server() as url:
        yield url


@pytest.fixture
async def official() -> AsyncIterator[Callable[..., Any]]:
    """``await official(url, key=..., streaming=..., legacy=..., polling=...)``: the official
    a2a-sdk client for the agent card at ``url`` (see ``support.a2a_check.official_maker``)."""
    from support.a2a_check import official_maker

    made: list[Any] = []
    yield official_maker(made)
    for client, http in made:
        await client.close()
        await http.aclose()
