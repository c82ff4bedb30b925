"""The ``check`` command as a real process: errors with their TOML path, exit status 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from support import ROOT
from support.processes import hookgate_env


def test_check_command_reports_errors_and_exits_nonzero(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[backends.local]\nkind = "openai"\nbase_url = "nope"\n[models.m]\nbackend = "local"\n'
    )
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "check", "--config", str(bad)],
        capture_output=True,
        text=True,
        env=hookgate_env(),
        timeout=60,
    )
    assert out.returncode == 2
    assert "backends.local.base_url: not a URL: 'nope'" in out.stderr
    good = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "check",
            "--config",
            str(ROOT / "config" / "hookgate.toml"),
        ],
        capture_output=True,
        text=True,
        env=hookgate_env(),
        timeout=60,
    )
    assert good.returncode == 0, good.stderr
    assert "configuration OK" in good.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "gateway", "check", "--config", str(tmp_path / "none.toml")],
        capture_output=True,
        text=True,
        env=hookgate_env(),
        timeout=60,
    )
    assert missing.returncode == 2 and "no such configuration file" in missing.stderr
    broken = tmp_path / "broken.toml"
    broken.write_text("[server\n")
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "check", "--config", str(broken)],
        capture_output=True,
        text=True,
        env=hookgate_env(),
        timeout=60,
    )
    assert out.returncode == 2 and "not valid TOML" in out.stderr
