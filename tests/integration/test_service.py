"""Running under systemd, as a real process: readiness, reload, watchdog and stop notified; the
unit file accepted by systemd-analyze."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import ROOT
from support.configs import echo_config
from support.processes import chat, gateway_process
from support.waiting import wait_until

UNIT = ROOT / "config" / "hookgate.service"


class FakeManager:
    """A unix datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[dict[str, str]] = []

    def wait_for(
        self, key: str, value: str | None = None, count: int = 1, timeout: float = 30.0
    ) -> list[dict[str, str]]:
        """Receive notifications until ``count`` of them say ``key`` (``=value``); those."""
        deadline = time.monotonic() + timeout
        while True:
            hits = [m for m in self.messages if key in m and value in (None, m[key])]
            if len(hits) >= count:
                return hits
            self.sock.settimeout(max(0.001, deadline - time.monotonic()))
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                raise AssertionError(
                    f"no {count} notification(s) {key}={value} within {timeout}s: {self.messages}"
                ) from None
            self.messages.append(dict(line.split("=", 1) for line in data.decode().splitlines()))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[FakeManager]:
    m = FakeManager(tmp_path / "notify.sock")
    yield m
    m.close()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_ready_watchdog_reload_and_stop_are_notified(tmp_path: Path, manager, workers):
    env = {"NOTIFY_SOCKET": str(manager.path), "WATCHDOG_USEC": "200000"}
    config = echo_config("old: ")
    with gateway_process(
        "serve", "--workers", workers, config=config, directory=tmp_path, env=env
    ) as gw:
        (ready,) = manager.wait_for("READY", "1")
        assert ready["MAINPID"] == str(gw.pid)
        assert chat(gw.url, "hi") == "old: hi"  # ready means serving
        manager.wait_for("WATCHDOG", "1", count=3)  # every 0.1s, half of WATCHDOG_USEC

        gw.config_file.write_text(echo_config("new: "))
        gw.signal(signal.SIGHUP)
        manager.wait_for("RELOADING", "1")
        manager.wait_for("READY", "1", count=2)
        reloading = next(m for m in manager.messages if "RELOADING" in m)
        assert int(reloading["MONOTONIC_USEC"]) > 0
        wait_until(lambda: chat(gw.url, "hi") == "new: hi", 30, "the new config", gw.describe)

        gw.signal(signal.SIGTERM)
        manager.wait_for("STOPPING", "1")
        assert gw.stop() == 0
    # Workers never speak to the manager themselves (NotifyAccess=main would refuse them).
    assert all(m.get("MAINPID", str(gw.pid)) == str(gw.pid) for m in manager.messages)


def test_unit_file_passes_systemd_analyze_verify(tmp_path: Path):
    analyze = shutil.which("systemd-analyze")
    assert analyze, (
        "systemd-analyze is missing: install systemd (scripts/test does with apt-get) to check "
        "config/hookgate.service"
    )
    exe = shutil.which("hookgate", path=str(Path(sys.executable).parent))
    assert exe
    unit = tmp_path / "hookgate.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/hookgate", exe))
    out = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and not out.stdout.strip() and not out.stderr.strip(), (
        out.stdout + out.stderr
    )
