"""Several worker processes on one port.

``--workers N`` forks N processes, each running its own event loop and application on the same
address with ``SO_REUSEPORT`` (the kernel spreads connections between them). The supervisor
replaces a worker that dies, forwards SIGHUP, and on SIGTERM/SIGINT tells every worker to drain
and waits for all of them.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time
from typing import Any

from gateway.loader import Loaded

log = logging.getLogger("gateway.workers")

#: A worker that dies sooner than this after starting counts as crashing; restarts back off.
_MIN_UPTIME = 5.0


def _worker(loaded: Loaded) -> None:
    from gateway.server import run

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    sys.exit(run(loaded, reuse_port=True))


def supervise(loaded: Loaded) -> int:
    """Run ``[server] workers`` processes until SIGTERM/SIGINT; returns the exit status."""
    count = loaded.config.server.workers
    if loaded.config.server.port == 0:
        log.error("--workers needs a fixed port: with port 0 every worker would get its own")
        return 2
    ctx = multiprocessing.get_context("fork")
    procs: dict[int, Any] = {}
    started: dict[int, float] = {}
    backoff: dict[int, float] = {}
    stopping = False

    def spawn(slot: int) -> None:
        proc = ctx.Process(target=_worker, args=(loaded,), name=f"hookgate-worker-{slot}")
        proc.start()
        procs[slot] = proc
        started[slot] = time.monotonic()
        log.info("worker %d started (pid %d)", slot, proc.pid)

    def on_stop(signum: int, _: Any) -> None:
        nonlocal stopping
        stopping = True
        for proc in procs.values():
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signal.SIGTERM)

    def on_hup(signum: int, _: Any) -> None:
        for proc in procs.values():
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signal.SIGHUP)

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_hup)
    for slot in range(count):
        spawn(slot)
    status = 0
    while procs:
        sentinels = {proc.sentinel: slot for slot, proc in procs.items()}
        for ready in multiprocessing.connection.wait(list(sentinels), timeout=1.0):
            slot = sentinels[ready]  # type: ignore[index]
            proc = procs.pop(slot)
            proc.join()
            if stopping:
                if proc.exitcode not in (0, None):
                    status = 1
                continue
            uptime = time.monotonic() - started[slot]
            delay = 0.0
            if uptime < _MIN_UPTIME:
                delay = min(30.0, max(0.5, backoff.get(slot, 0.0) * 2))
            backoff[slot] = delay
            log.warning(
                "worker %d (pid %s) exited with status %s; starting a new one%s",
                slot,
                proc.pid,
                proc.exitcode,
                f" in {delay:.1f}s" if delay else "",
            )
            if delay:
                time.sleep(delay)
            if not stopping:
                spawn(slot)
    log.info("all workers stopped")
    return status
