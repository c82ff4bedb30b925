"""The systemd notify protocol's messages and the shipped unit file."""

from __future__ import annotations

import configparser
import socket

from support import ROOT

from gateway.config.sections import ServerConfig
from gateway.server import systemd

UNIT = ROOT / "config" / "hookgate.service"


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
