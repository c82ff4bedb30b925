"""Running under systemd: the notify protocol (readiness, reload, watchdog, stop) and the unit."""

from __future__ import annotations

import configparser
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from procs import Hookgate, chat, echo_config, wait_until

from gateway.config.types import ServerConfig
from gateway.server import systemd

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "config" / "hookgate.service"


class FakeManager:
    """A unix datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.05)
        self.messages: list[dict[str, str]] = []

    def receive(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                return
            self.messages.append(dict(line.split("=", 1) for line in data.decode().splitlines()))

    def wait_for(self, key: str, value: str | None = None, count: int = 1) -> list[dict[str, str]]:
        def seen() -> list[dict[str, str]] | None:
            self.receive()
            hits = [m for m in self.messages if key in m and value in (None, m[key])]
            return hits if len(hits) >= count else None

        return wait_until(seen, 30, f"{count} notification(s) {key}={value}")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[FakeManager]:
    m = FakeManager(tmp_path / "notify.sock")
    yield m
    m.close()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_ready_watchdog_reload_and_stop_are_notified(tmp_path: Path, manager, workers):
    gw = Hookgate(
        tmp_path,
        echo_config("old: "),
        "--workers",
        workers,
        NOTIFY_SOCKET=str(manager.path),
        WATCHDOG_USEC="200000",
    )
    try:
        (ready,) = manager.wait_for("READY", "1")
        assert ready["MAINPID"] == str(gw.proc.pid)
        assert chat(gw.url, "hi") == "old: hi"  # ready means serving
        manager.wait_for("WATCHDOG", "1", count=3)  # every 0.1s, half of WATCHDOG_USEC

        gw.config.write_text(echo_config("new: "))
        gw.signal(signal.SIGHUP)
        manager.wait_for("RELOADING", "1")
        manager.wait_for("READY", "1", count=2)
        reloading = next(m for m in manager.messages if "RELOADING" in m)
        assert int(reloading["MONOTONIC_USEC"]) > 0
        wait_until(lambda: chat(gw.url, "hi") == "new: hi", 30, "the new configuration", gw)

        gw.signal(signal.SIGTERM)
        manager.wait_for("STOPPING", "1")
        assert gw.stop(signal_it=False) == 0
    finally:
        gw.kill()
    # Workers never speak to the manager themselves (NotifyAccess=main would refuse them).
    assert all(m.get("MAINPID", str(gw.proc.pid)) == str(gw.proc.pid) for m in manager.messages)


def test_notify_reaches_abstract_sockets_and_is_quiet_without_a_manager(monkeypatch):
    name = f"hookgate-test-{id(monkeypatch)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert systemd.notify("READY=1", "STATUS=up")
        assert sock.recv(100) == b"READY=1\nSTATUS=up"
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not systemd.notify("READY=1")
    monkeypatch.setenv("WATCHDOG_USEC", "3000000")
    assert systemd.watchdog_interval() == 1.5
    monkeypatch.setenv("WATCHDOG_PID", "1")  # another process's watchdog
    assert systemd.watchdog_interval() is None


def test_unit_file_declares_notify_watchdog_reload_and_drain():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(UNIT)
    service = unit["Service"]
    assert service["Type"] == "notify" and service["NotifyAccess"] == "main"
    assert int(service["WatchdogSec"]) > 0
    assert "-HUP $MAINPID" in service["ExecReload"]
    assert service["KillSignal"] == "SIGTERM"
    drain = ServerConfig().drain_timeout
    assert int(service["TimeoutStopSec"]) > drain + 5  # room to drain and close
    assert "hookgate serve" in service["ExecStart"]


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
