"""The official TypeScript client, @ag-ui/client's HttpAgent, runs agents on a real gateway."""

from __future__ import annotations

import json
import shutil
import subprocess

import orjson
from support import ROOT
from support.configs import agent_toml
from support.processes import gateway_process


def test_httpagent_runs_server_and_client_tools(agui_client, upstream_process, tmp_path):
    config = agent_toml(
        tmp_path / "hookgate.toml",
        upstream_process,
        '[auth]\nkeys = ["sk-browser"]\n',
        system='"You help."',
        tools='["fakes.tools:get_weather"]',
    )
    node = shutil.which("node")
    assert node, "node is needed for the @ag-ui/client test"
    env = {"PYTHONPATH": str(ROOT / "tests")}
    with gateway_process("serve", "--config", config, env=env) as gateway:
        done = subprocess.run(
            [node, str(agui_client / "run.mjs"), gateway.url, "sk-browser"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stdout + done.stderr + gateway.output
    out = json.loads(done.stdout)

    server = out["server"]
    assert server["types"][0] == "RUN_STARTED" and server["types"][-1] == "RUN_FINISHED"
    assert "TOOL_CALL_RESULT" in server["types"]
    roles = [m["role"] for m in server["messages"]]
    assert roles == ["user", "assistant", "tool", "assistant"]
    call = server["messages"][1]["toolCalls"][0]
    assert call["function"]["name"] == "get_weather"
    assert orjson.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert orjson.loads(server["messages"][2]["content"])["temperature"] == 21
    assert server["messages"][3]["content"].startswith("results: ")

    handoff = out["handoff"]
    assert handoff["types"][-1] == "RUN_FINISHED" and "TOOL_CALL_RESULT" not in handoff["types"]
    assert handoff["messages"][-1]["toolCalls"][0]["function"]["name"] == "confirm"
    resumed = out["resumed"]
    assert resumed["messages"][-1]["content"] == "results: yes"
