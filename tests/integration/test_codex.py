"""The Codex CLI (``codex exec`` from the npm package ``@openai/codex``, pinned in
``tests/codex_cli``) pointed at the gateway on loopback, with a tool loop: the scripted model
asks for a shell command, Codex runs it and sends the output back, and the model's last answer
reads it. Codex speaks the Responses API with its own tools (``exec_command`` and the others as
functions, sub-agent tools as a ``namespace``, a hosted ``web_search``); the gateway relays it to
a Responses upstream and translates it for a Chat Completions upstream and for an Anthropic one.

Codex needs no network to start: only its npm install does (once per machine, cached).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import orjson
import pytest
from fakes import responses_upstream
from support.configs import both_config, recorded
from support.npm import installed

KEY = "sk-codex"


@pytest.fixture(scope="module")
def codex() -> Path:
    root = installed("codex_cli", "node_modules/@openai/codex/package.json")
    return root / "node_modules" / ".bin" / "codex"


@pytest.fixture
async def responder(aiohttp_server):
    return await aiohttp_server(responses_upstream.make_app())


@pytest.fixture
async def gateway(make_gateway, upstream, claude_upstream, responder):
    cfg = both_config(upstream, claude_upstream)
    cfg["backends"]["resp"] = {
        "kind": "openai_responses",
        "base_url": str(responder.make_url("/v1")),
        "api_key": "responses-secret",
    }
    cfg["models"]["gpt-resp"] = {"backend": "resp"}
    cfg["auth"] = {"keys": [KEY]}
    return await make_gateway(cfg)


async def codex_exec(codex: Path, base_url: str, model: str, prompt: str, tmp: Path) -> str:
    """Run ``codex exec`` once against the gateway; its last message."""
    home, work = tmp / "codex-home", tmp / "work"
    home.mkdir()
    work.mkdir()
    (home / "config.toml").write_text(
        f"""model = "{model}"
model_provider = "hookgate"

[model_providers.hookgate]
name = "hookgate"
base_url = "{base_url}"
env_key = "HOOKGATE_CODEX_KEY"
wire_api = "responses"
"""
    )
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "CODEX_HOME": str(home),
        "HOOKGATE_CODEX_KEY": KEY,
    }
    last = tmp / "last.txt"
    proc = await asyncio.create_subprocess_exec(
        str(codex),
        "exec",
        "--skip-git-repo-check",
        "--sandbox",
        "danger-full-access",
        "--output-last-message",
        str(last),
        prompt,
        cwd=work,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(proc.communicate(), 180)
    assert proc.returncode == 0, output.decode(errors="replace")
    return last.read_text()


async def test_codex_runs_a_tool_through_a_chat_upstream(codex, gateway, upstream, tmp_path):
    command = {"cmd": "echo codex-ran-this > proof.txt && cat proof.txt"}
    prompt = "CALL exec_command " + orjson.dumps(command).decode()
    answer = await codex_exec(codex, str(gateway.make_url("/v1")), "gpt-test", prompt, tmp_path)
    assert (tmp_path / "work" / "proof.txt").read_text() == "codex-ran-this\n"
    assert answer.startswith("results: ") and "codex-ran-this" in answer

    first, second = recorded(upstream)[-2:]
    names = [t["function"]["name"] for t in first["tools"]]
    assert "exec_command" in names
    assert any(n.startswith("multi_agent_v1__") for n in names)  # Codex's namespace tools
    assert "web_search" not in names  # hosted: no backend here runs it
    call = second["messages"][-2]["tool_calls"][0]
    assert call["function"]["name"] == "exec_command"
    assert orjson.loads(call["function"]["arguments"]) == command
    assert "codex-ran-this" in second["messages"][-1]["content"]


async def test_codex_runs_a_tool_through_an_anthropic_upstream(
    codex, gateway, claude_upstream, tmp_path
):
    command = {"cmd": "echo via-claude > proof.txt && cat proof.txt"}
    prompt = "CALL exec_command " + orjson.dumps(command).decode()
    answer = await codex_exec(codex, str(gateway.make_url("/v1")), "claude-test", prompt, tmp_path)
    assert (tmp_path / "work" / "proof.txt").read_text() == "via-claude\n"
    assert answer == "results: 1"

    first, second = recorded(claude_upstream)[-2:]
    tools = [t["name"] for t in first["tools"]]
    assert "exec_command" in tools and any(t.startswith("multi_agent_v1__") for t in tools)
    assert first["system"]  # Codex's developer instructions, as Anthropic's system prompt
    use = next(b for b in second["messages"][-2]["content"] if b["type"] == "tool_use")
    assert (use["name"], use["input"]) == ("exec_command", command)
    (result,) = [b for b in second["messages"][-1]["content"] if b["type"] == "tool_result"]
    assert result["tool_use_id"] == use["id"] and "via-claude" in str(result["content"])


async def test_codex_is_relayed_to_a_responses_upstream(codex, gateway, responder, tmp_path):
    command = {"cmd": "echo relayed > proof.txt && cat proof.txt"}
    prompt = "CALL exec_command " + orjson.dumps(command).decode()
    answer = await codex_exec(codex, str(gateway.make_url("/v1")), "gpt-resp", prompt, tmp_path)
    assert (tmp_path / "work" / "proof.txt").read_text() == "relayed\n"
    assert answer.startswith("results: ") and "relayed" in answer

    first, second = responder.app[responses_upstream.REQUESTS][-2:]
    # Codex's request as it sent it: its namespace and hosted tools, its own fields
    assert {t["type"] for t in first["tools"]} >= {"function", "namespace", "web_search"}
    assert first["include"] == ["reasoning.encrypted_content"] and "client_metadata" in first
    call, output = second["input"][-2:]
    assert (call["type"], call["name"]) == ("function_call", "exec_command")
    assert orjson.loads(call["arguments"]) == command
    assert output["type"] == "function_call_output" and output["call_id"] == call["call_id"]
    assert "relayed" in str(output["output"])
