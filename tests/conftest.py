"""Shared fixtures: a gateway app under test, fake upstreams, and official SDK clients."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from aiohttp.test_utils import TestClient, TestServer
from fakes import openai_upstream

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


def recorded(server: TestServer) -> list[dict[str, Any]]:
    return server.app[openai_upstream.REQUESTS]


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


@pytest.fixture
def upstream_process() -> Iterator[str]:
    """The fake upstream as a separate real process; yields its ``/v1`` base URL."""
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
