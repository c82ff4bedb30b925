"""The benchmark's wait for a quiet machine between measurements (bench/run.py ``quiet``), on
real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from support.bench import load_bench


def test_a_measurement_waits_for_the_processes_to_be_idle() -> None:
    """``quiet`` returns once the run's processes, and theirs, use no CPU: here a grandchild
    that works through half a second of CPU time, then sleeps."""
    bench = load_bench("bench_run_quiet")
    busy = (
        "import time\n"
        "while time.process_time() < 0.5: pass\n"
        "time.sleep(60)\n"
    )  # fmt: skip
    script = (
        "import subprocess, sys, time\n"
        f"subprocess.Popen([sys.executable, '-c', {busy!r}])\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script])
    try:
        # The grandchild is up when the parent has it among its children.
        deadline = time.monotonic() + 10
        while len(bench._tree(parent.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        parent_pid, worker = bench._tree(parent.pid)
        assert parent_pid == parent.pid
        bench.quiet([parent.pid])
        # (/proc counts in clock ticks: a tick or so under what the process counts itself.)
        assert bench.cpu_seconds(worker, children=False) >= 0.45
        # Idle now: the next wait is a window or two.
        assert bench.quiet([parent.pid]) < 4 * bench.QUIET_WINDOW
    finally:
        for pid in bench._tree(parent.pid)[::-1]:
            os.kill(pid, signal.SIGKILL)
        parent.wait()
