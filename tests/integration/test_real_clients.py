"""Real clients against hookgate and a scripted upstream (``fakes/agent_upstream.py``), each
relayed (the upstream speaks the client's protocol) and translated (it speaks the other):

- Claude Code (``claude -p``, headless, from the npm package ``@anthropic-ai/claude-code``),
  with its default model and a tool loop: it reads a file with its ``Read`` tool and answers
  with what the file says. Loopback only: ``ANTHROPIC_BASE_URL`` points at the gateway and
  its non-essential traffic (telemetry, updates, error reports) is off;
- the Vercel AI SDK (``ai`` + ``@ai-sdk/openai``): ``streamText`` with a tool after
  reasoning, over two steps, and ``generateObject``;
- LangChain's ``with_structured_output``, the OpenAI Agents SDK's ``output_type`` and
  pydantic-ai's ``NativeOutput``.

The Node packages are installed once per machine from ``tests/clients/package-lock.json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
from pathlib import Path

import httpx
import openai
import orjson
import pydantic
import pytest
from fakes import agent_upstream

KEY = "sk-real-client"
SECRET = "the eagle lands at noon"


@pytest.fixture
async def agent_server(aiohttp_server):
    return await aiohttp_server(agent_upstream.make_app())


def gateway_config(server, kind: str) -> dict:
    base = str(server.make_url("")).rstrip("/")
    return {
        "auth": {"keys": [KEY]},
        "backends": {
            "up": {
                "kind": kind,
                "base_url": base + ("/v1" if kind == "openai" else ""),
                "api_key": "upstream-secret",
            }
        },
        "models": {"*": {"backend": "up"}},
    }


def claude_binary(clients: Path) -> Path:
    """The platform's Claude Code executable, as the package's optional dependency ships it
    (its ``postinstall`` copies it to ``bin/``; npm may not run install scripts)."""
    arch = {"x86_64": "x64", "aarch64": "arm64", "arm64": "arm64"}[platform.machine()]
    return clients / "node_modules" / "@anthropic-ai" / f"claude-code-linux-{arch}" / "claude"


async def run(cmd: list[str], cwd: Path, env: dict[str, str], limit: float = 150) -> str:
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(limit):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, (
        f"{cmd[0]} failed ({proc.returncode}):\n{out.decode()}\n{err.decode()}"
    )
    return out.decode()


def loopback_env(home: Path, **extra: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "NO_PROXY": "127.0.0.1,localhost",
        **extra,
    }
    return env


@pytest.mark.parametrize("kind", ["anthropic", "openai"], ids=["relayed", "translated"])
async def test_claude_code_reads_a_file_through_the_gateway(
    make_gateway, agent_server, node_clients, tmp_path, kind
):
    gateway = await make_gateway(gateway_config(agent_server, kind))
    (tmp_path / "note.txt").write_text(SECRET + "\n")
    env = loopback_env(
        tmp_path,
        ANTHROPIC_BASE_URL=str(gateway.make_url("")).rstrip("/"),
        ANTHROPIC_API_KEY=KEY,
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        DISABLE_AUTOUPDATER="1",
        DISABLE_TELEMETRY="1",
        DISABLE_ERROR_REPORTING="1",
    )
    out = await run(
        [
            str(claude_binary(node_clients)),
            "-p",
            f"read {tmp_path / 'note.txt'} and tell me what it says",
            "--output-format",
            "json",
        ],
        tmp_path,
        env,
    )
    result = json.loads(out)
    assert result["is_error"] is False
    assert result["result"].startswith("The file says: ") and SECRET in result["result"]
    requests = agent_server.app[agent_upstream.REQUESTS]
    # the tool loop: a request whose history carries the Read tool's result
    history = [orjson.dumps(r.get("messages")).decode() for r in requests]
    assert any(SECRET in h for h in history)
    # Claude Code's own default model, through the "*" route
    assert any(str(r.get("model", "")).startswith("claude-") for r in requests)
    # its first request has a system message inside "messages" (the first failure):
    # relayed, it reaches the upstream as it came; translated, it joins the system prompt
    roles = [m["role"] for m in requests[0]["messages"]]
    if kind == "anthropic":
        assert "system" in roles[1:]
    else:
        assert roles == ["system", "user"]
        assert requests[0]["reasoning_effort"]  # Claude Code asks for adaptive thinking


@pytest.mark.parametrize(
    ("api", "kind"),
    [
        ("chat", "openai"),
        ("chat", "anthropic"),
        ("responses", "openai"),
        ("responses", "anthropic"),
    ],
    ids=["chat-relayed", "chat-translated", "responses-to-chat", "responses-to-anthropic"],
)
async def test_vercel_ai_sdk_tools_after_reasoning_and_objects(
    make_gateway, agent_server, node_clients, tmp_path, api, kind
):
    gateway = await make_gateway(gateway_config(agent_server, kind))
    (tmp_path / "note.txt").write_text(SECRET)
    node = shutil.which("node")
    assert node, "node is needed to run the AI SDK"
    out = await run(
        [
            node,
            str(node_clients / "ai_sdk.mjs"),
            str(gateway.make_url("/v1")),
            KEY,
            "gpt-5-mini",
            str(tmp_path / "note.txt"),
            api,
        ],
        tmp_path,
        loopback_env(tmp_path),
    )
    result = json.loads(out.strip().splitlines()[-1])
    assert result["steps"] == 2 and result["calls"] == ["read_file"]
    assert result["text"] == "The file says: " + SECRET
    assert result["object"] == {"city": "Paris", "temperature": 21}
    requests = agent_server.app[agent_upstream.REQUESTS]
    if kind == "anthropic":  # reasoning_effort became a thinking budget
        assert requests[0]["thinking"] == {"type": "enabled", "budget_tokens": 2048}
        if api == "responses":  # the signed thinking came back with the tool result
            turn = requests[1]["messages"][1]
            assert requests[1]["thinking"]["type"] == "enabled"
            assert turn["content"][0]["signature"] == agent_upstream.SIGNATURE
    else:
        assert requests[0]["reasoning_effort"] == "low"


class Weather(pydantic.BaseModel):
    city: str
    temperature: int


PARIS = Weather(city="Paris", temperature=21)


def sent_schema(server, kind: str) -> dict:
    """The JSON schema the upstream was asked to answer in (its own protocol's field)."""
    last = agent_server_requests(server)[-1]
    if kind == "openai":
        return last["response_format"]["json_schema"]["schema"]
    return last["output_config"]["format"]["schema"]


def agent_server_requests(server) -> list[dict]:
    return server.app[agent_upstream.REQUESTS]


@pytest.mark.parametrize("kind", ["openai", "anthropic"], ids=["relayed", "translated"])
async def test_langchain_with_structured_output(make_gateway, agent_server, kind):
    from langchain_openai import ChatOpenAI

    gateway = await make_gateway(gateway_config(agent_server, kind))
    async with httpx.AsyncClient() as http:
        model = ChatOpenAI(
            model="gpt-4.1-mini",
            base_url=str(gateway.make_url("/v1")),
            api_key=KEY,
            max_retries=0,
            http_async_client=http,
        )
        answer = await model.with_structured_output(Weather).ainvoke("weather in Paris?")
    assert answer == PARIS
    assert sent_schema(agent_server, kind)["properties"].keys() == {"city", "temperature"}


@pytest.mark.parametrize("kind", ["openai", "anthropic"], ids=["relayed", "translated"])
async def test_openai_agents_sdk_output_type(make_gateway, agent_server, kind):
    from agents import Agent, OpenAIChatCompletionsModel, Runner, set_tracing_disabled

    set_tracing_disabled(True)  # loopback only: no traces sent anywhere
    gateway = await make_gateway(gateway_config(agent_server, kind))
    client = openai.AsyncOpenAI(base_url=str(gateway.make_url("/v1")), api_key=KEY, max_retries=0)
    agent = Agent(
        name="forecaster",
        instructions="Answer with the weather.",
        model=OpenAIChatCompletionsModel(model="gpt-4.1-mini", openai_client=client),
        output_type=Weather,
    )
    result = await Runner.run(agent, "weather in Paris?")
    await client.close()
    assert result.final_output == PARIS
    assert sent_schema(agent_server, kind)["properties"].keys() >= {"city", "temperature"}


@pytest.mark.parametrize("kind", ["openai", "anthropic"], ids=["relayed", "translated"])
async def test_pydantic_ai_native_output(make_gateway, agent_server, kind):
    from pydantic_ai import Agent, NativeOutput
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    gateway = await make_gateway(gateway_config(agent_server, kind))
    client = openai.AsyncOpenAI(base_url=str(gateway.make_url("/v1")), api_key=KEY, max_retries=0)
    provider = OpenAIProvider(openai_client=client)
    agent = Agent(
        OpenAIChatModel("gpt-4.1-mini", provider=provider), output_type=NativeOutput(Weather)
    )
    result = await agent.run("weather in Paris?")
    await client.close()
    assert result.output == PARIS
    assert sent_schema(agent_server, kind)["properties"].keys() == {"city", "temperature"}
