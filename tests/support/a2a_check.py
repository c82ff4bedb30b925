"""Helpers for the A2A tests: the official a2a-sdk client pointed at a gateway, and JSON-RPC."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
from a2a.client import ClientConfig, create_client
from a2a.helpers.proto_helpers import new_text_message
from a2a.types.a2a_pb2 import Role, SendMessageRequest, StreamResponse
from google.protobuf import json_format

from support.configs import upstream_config

TOOLS = ["fakes.tools:get_weather", "fakes.tools:get_time", "fakes.tools:explode"]
#: Keys of the A2A tests: two ordinary ones, and one that may use only the model gpt-test.
KEYS = {"auth": {"keys": ["sk-a", "sk-b", {"key": "sk-c", "models": ["gpt-test"]}]}}


def agent_config(upstream: Any, **extra: Any) -> dict[str, Any]:
    """The fake upstream as ``gpt-test``, and the agent ``helper`` thinking with it (with
    instructions, three tools and a description), for :data:`KEYS`."""
    cfg = upstream_config(upstream)
    cfg["agents"] = {
        "helper": {
            "model": "gpt-test",
            "system": "You help.",
            "tools": TOOLS,
            "description": "Helps with the weather.",
        }
    }
    return {**cfg, **KEYS, **extra}


def official_maker(made: list[Any]) -> Callable[..., Any]:
    """``await make(url, key=..., streaming=..., legacy=..., polling=...)``: an a2a-sdk client
    made by ``create_client`` from the card at ``url`` (the 0.3 card at ``/.well-known/agent.json``
    when ``legacy``). ``client.sent`` lists the ``(A2A-Version, method)`` of each JSON-RPC call
    it made. What it makes goes in ``made``, for the fixture to close."""

    async def make(
        url: str,
        key: str | None = None,
        *,
        streaming: bool = True,
        legacy: bool = False,
        polling: bool = False,
    ) -> Any:
        sent: list[tuple[str | None, str]] = []

        async def record(request: httpx.Request) -> None:
            if request.method == "POST":
                method = json.loads(request.content)["method"]
                sent.append((request.headers.get("A2A-Version"), method))

        http = httpx.AsyncClient(
            headers={"Authorization": f"Bearer {key}"} if key else None,
            event_hooks={"request": [record]},
            timeout=30,
        )
        config = ClientConfig(streaming=streaming, polling=polling, httpx_client=http)
        client = await create_client(
            url,
            client_config=config,
            relative_card_path="/.well-known/agent.json" if legacy else None,
        )
        client.sent = sent
        made.append((client, http))
        return client

    return make


def ask(text: str, **ids: str) -> SendMessageRequest:
    """A SendMessageRequest of one user text message (``context_id``, ``task_id``)."""
    return SendMessageRequest(message=new_text_message(text, role=Role.ROLE_USER, **ids))


async def collect(stream: AsyncIterator[StreamResponse]) -> list[dict[str, Any]]:
    """Every response of an a2a-sdk stream, as 1.0 JSON."""
    return [json_format.MessageToDict(r) async for r in stream]


async def head_of(stream: AsyncIterator[StreamResponse], n: int) -> list[dict[str, Any]]:
    """The first ``n`` responses of an a2a-sdk stream (1.0 JSON), then the stream is closed:
    a client that goes away."""
    head = []
    async for response in stream:
        head.append(json_format.MessageToDict(response))
        if len(head) == n:
            break
    await stream.aclose()  # type: ignore[attr-defined]
    return head


def fold(results: list[dict[str, Any]]) -> dict[str, Any]:
    """A task from its stream results: the first task, then status and artifact updates."""
    task: dict[str, Any] = {}
    for r in results:
        if "task" in r:
            task = dict(r["task"])
        elif "statusUpdate" in r:
            task["status"] = r["statusUpdate"]["status"]
        elif "artifactUpdate" in r:
            update = r["artifactUpdate"]
            artifacts = task.setdefault("artifacts", [])
            found = [a for a in artifacts if a["artifactId"] == update["artifact"]["artifactId"]]
            if found and update.get("append"):
                found[0]["parts"] = found[0]["parts"] + update["artifact"]["parts"]
            else:
                artifacts[:] = [a for a in artifacts if a not in found] + [update["artifact"]]
    return task


def answer(task: dict[str, Any]) -> str:
    """The text of a task's artifacts."""
    return "".join(p.get("text", "") for a in task.get("artifacts", []) for p in a["parts"])


def states(results: list[dict[str, Any]]) -> list[str]:
    """The states a stream went through, in order (the task's, then each status update's)."""
    out = []
    for r in results:
        if "task" in r:
            out.append(r["task"]["status"]["state"])
        elif "statusUpdate" in r:
            out.append(r["statusUpdate"]["status"]["state"])
    return out


async def rpc(
    client: Any, path: str, method: str, params: Any = None, *, status: int = 200, **kwargs: Any
) -> Any:
    """A raw JSON-RPC call through an aiohttp test client; returns the body, after checking the
    HTTP status (200: JSON-RPC errors travel in ordinary responses)."""
    body = {"jsonrpc": "2.0", "id": 7, "method": method}
    if params is not None:
        body["params"] = params
    headers = kwargs.pop("headers", {"A2A-Version": "1.0"})
    resp = await client.post(path, json=body, headers=headers, **kwargs)
    assert resp.status == status, await resp.text()
    return await resp.json()
