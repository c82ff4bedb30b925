"""``--workers N``: N processes on one port, replaced when they die or hang, reloaded and drained
together."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from support.configs import echo_config
from support.processes import (
    GatewayProcess,
    chat,
    children,
    gateway_process,
    open_stream,
    streamed_text,
)
from support.waiting import wait_until

WORDS = " ".join(f"w{i}" for i in range(20))


def listening_on(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds a socket listening on ``port`` (from /proc)."""
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            listening = fields[3] == "0A"
            if listening and int(fields[1].rsplit(":", 1)[1], 16) == port and fields[9] in inodes:
                return True
    return False


def serving_workers(gw: GatewayProcess, count: int) -> list[int]:
    """Wait until ``count`` workers run and each has told the supervisor that it serves; their
    pids."""

    def ready() -> list[int] | None:
        kids = children(gw.pid)
        if len(kids) == count and all(f"(pid {k}) is serving" in gw.output for k in kids):
            return kids
        return None

    return wait_until(ready, 30, f"{count} workers serving", gw.describe)


def test_workers_share_the_port_are_replaced_reload_and_drain_together(tmp_path: Path):
    config = echo_config("old: ", delay="50ms")
    with gateway_process("serve", "--workers", "2", config=config, directory=tmp_path) as gw:
        first = serving_workers(gw, 2)
        assert not listening_on(gw.pid, gw.port)  # only the workers accept
        assert {chat(gw.url, "hi") for _ in range(10)} == {"old: hi"}

        os.kill(first[0], signal.SIGKILL)
        gw.wait_log("starting a new one")
        second = serving_workers(gw, 2)
        assert first[0] not in second and first[1] in second
        assert chat(gw.url, "hi") == "old: hi"

        gw.config_file.write_text(echo_config("new: ", delay="50ms"))
        gw.signal(signal.SIGHUP)
        gw.wait_log("configuration reloaded", count=2)  # every worker, once each
        # Fresh connections are spread over both workers: all see the new configuration.
        assert {chat(gw.url, "hi") for _ in range(20)} == {"new: hi"}

        stream: dict = {}
        thread = open_stream(gw.url, WORDS, stream)
        assert stream["started"].wait(30)
        gw.signal(signal.SIGTERM)
        thread.join(30)
        assert "error" not in stream, stream
        assert streamed_text(stream["payloads"]) == "new: " + WORDS  # drained, not cut
        assert gw.stop() == 0
        assert "all workers stopped" in gw.output


def test_a_hung_worker_is_killed_and_replaced(tmp_path: Path):
    config = echo_config("", worker_timeout="3s")
    with gateway_process("serve", "--workers", "2", config=config, directory=tmp_path) as gw:
        first = serving_workers(gw, 2)
        os.kill(first[1], signal.SIGSTOP)  # its event loop stops answering
        gw.wait_log("has not answered")
        wait_until(
            lambda: first[1] not in children(gw.pid), 30, "the hung worker gone", gw.describe
        )
        second = serving_workers(gw, 2)
        assert first[1] not in second
        assert {chat(gw.url, "hi") for _ in range(10)} == {"hi"}
        assert gw.stop() == 0


def test_a_bad_reload_leaves_workers_serving(tmp_path: Path):
    config = echo_config("old: ")
    with gateway_process("serve", "--workers", "2", config=config, directory=tmp_path) as gw:
        serving_workers(gw, 2)
        gw.config_file.write_text(echo_config("new: ", drain_timeout="forever"))
        gw.signal(signal.SIGHUP)
        gw.wait_log("reload refused")
        assert {chat(gw.url, "hi") for _ in range(10)} == {"old: hi"}
        assert "configuration reloaded" not in gw.output
        assert gw.stop() == 0


def test_a_worker_timeout_not_above_the_heartbeat_is_refused_at_startup(tmp_path: Path):
    # Workers beat once a second: a timeout of one second would kill healthy ones.
    config = echo_config("", worker_timeout="1s")
    with gateway_process(
        "serve", "--workers", "2", config=config, directory=tmp_path, ready=False
    ) as gw:
        assert gw.wait() == 2
    assert "server.worker_timeout: must be more than the workers' heartbeat interval" in gw.output
    assert "worker 0 started" not in gw.output
