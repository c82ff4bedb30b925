"""A plugin packaged as its own distribution is found through its entry point and used, with no
change to hookgate: build and pip-install ``plugins/hookgate-example``, then serve through it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import openai
from support import ROOT
from support.processes import gateway_process, hookgate_env

CONFIG = """
[backends.rev]
kind = "reverse"

[models.rev]
backend = "rev"
"""


def test_installed_plugin_distribution_serves_requests(tmp_path: Path):
    source = tmp_path / "src"
    shutil.copytree(
        ROOT / "plugins" / "hookgate-example", source
    )  # builds leave files: not in the repo
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(source),
        ],
        check=True,
        timeout=300,
    )
    env = hookgate_env(PYTHONPATH=str(site))

    listing = subprocess.run(
        [sys.executable, "-m", "gateway", "plugins", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    import json

    rows = {r["name"]: r for r in json.loads(listing.stdout)}
    assert rows["example"]["distribution"] == "hookgate-example"
    assert rows["example"]["version"] == "0.1.0" and rows["example"]["enabled"]
    assert {"gateway_register_backends", "gateway_register_filters"} <= set(
        rows["example"]["hooks"]
    )

    config = tmp_path / "hookgate.toml"
    config.write_text(CONFIG)
    with (
        gateway_process("serve", "--config", str(config), env={"PYTHONPATH": str(site)}) as gw,
        openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0) as api,
    ):
        out = api.chat.completions.create(
            model="rev", messages=[{"role": "user", "content": "hello plugin"}]
        )
        # the filter upper-cased the prompt, the backend reversed it
        assert out.choices[0].message.content == "NIGULP OLLEH"
        stream = api.chat.completions.create(
            model="rev", messages=[{"role": "user", "content": "abc"}], stream=True
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream) == "CBA"
    assert gw.returncode == 0, gw.output

    # disabled by name, it is listed as disabled and its section and kind are gone
    config.write_text(CONFIG + '\n[plugins]\ndisable = ["example"]\n')
    listing = subprocess.run(
        [sys.executable, "-m", "gateway", "plugins", "--config", str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listing.returncode == 2 and "unknown backend kind 'reverse'" in listing.stderr
