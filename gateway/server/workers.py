"""Several worker processes on one port.

``--workers N`` forks N processes, each running its own event loop and application on the same
address with ``SO_REUSEPORT`` (the kernel spreads connections between them). The supervisor:

- replaces a worker that dies (backing off when one keeps dying at startup);
- watches each worker's heartbeat (a byte on a pipe from its event loop every second) and kills
  one that has been silent for ``[server] worker_timeout``, which replaces it;
- on SIGHUP re-reads the configuration, and when it is valid, forwards SIGHUP to every worker
  (each reloads without dropping open streams) and forks later workers with it; an invalid one is
  logged and changes nothing;
- on SIGTERM/SIGINT tells every worker to drain, waits for all of them, and exits 0 when they did;
- makes the private directory where workers answer each other's ``/metrics`` (every scrape adds
  up every worker: :mod:`gateway.server.peers`);
- under systemd, says ``READY=1`` once every worker serves, and sends ``WATCHDOG=1`` while it
  runs (its own loop; hung workers are its business, as above).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import sys
import tempfile
import time
from typing import Any

from gateway.core.loading import Loaded
from gateway.errors import ConfigError
from gateway.server import systemd
from gateway.server.server import BEAT_READY, HANDLED_SIGNALS, Reread

log = logging.getLogger("gateway.server.workers")

#: A worker that dies sooner than this after starting counts as crashing; restarts back off.
_MIN_UPTIME = 5.0
#: Seconds a starting worker has to say it serves before it counts as hung.
_STARTUP = 60.0
#: Longest wait of the supervisor's loop (it wakes at once for signals and worker news).
_TICK = 0.5


def _worker(loaded: Loaded, reread: Reread, beat: int, inherited: list[int], peers: str) -> None:
    from gateway.server.server import run

    signal.set_wakeup_fd(-1)
    for sig in HANDLED_SIGNALS:  # blocked until the server's own handlers are installed
        signal.signal(sig, signal.SIG_DFL)
    systemd.forget()  # the supervisor speaks to systemd, not the workers
    for fd in inherited:
        with contextlib.suppress(OSError):
            os.close(fd)
    sys.exit(run(loaded, reread=reread, reuse_port=True, heartbeat=beat, peers=peers))


class _Worker:
    __slots__ = ("beat", "last_beat", "proc", "ready", "started")

    def __init__(self, proc: Any, beat: int) -> None:
        self.proc = proc
        self.beat = beat  # read end of the worker's heartbeat pipe
        self.started = self.last_beat = time.monotonic()
        self.ready = False


class Supervisor:
    def __init__(self, loaded: Loaded, reread: Reread) -> None:
        self.loaded = loaded
        self.reread = reread
        self.count = loaded.config.server.workers
        self.ctx = multiprocessing.get_context("fork")
        self.workers: dict[int, _Worker] = {}
        self.respawn: dict[int, float] = {}  # slot -> when to start it again
        self.backoff: dict[int, float] = {}
        self.stopping = False
        self.stop_deadline = 0.0
        self.status = 0
        self.notified_ready = False
        self.signals: list[int] = []
        self.wake_r, self.wake_w = os.pipe()
        for fd in (self.wake_r, self.wake_w):
            os.set_blocking(fd, False)
        #: Where the workers answer each other's /metrics (see gateway.server.peers).
        self.peers = tempfile.mkdtemp(prefix="hookgate-workers-")

    # -- workers

    def spawn(self, slot: int) -> None:
        beat_r, beat_w = os.pipe()
        os.set_blocking(beat_w, False)
        inherited = [self.wake_r, self.wake_w, beat_r, *(w.beat for w in self.workers.values())]
        proc = self.ctx.Process(
            target=_worker,
            args=(self.loaded, self.reread, beat_w, inherited, self.peers),
            name=f"hookgate-worker-{slot}",
        )
        # The worker starts with the signals it handles blocked, and unblocks them once its
        # handlers are installed: a SIGTERM sent while it starts is held for it, never fatal.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
        try:
            proc.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.close(beat_w)
        self.workers[slot] = _Worker(proc, beat_r)
        log.info("worker %d started (pid %d)", slot, proc.pid)

    def signal_all(self, sig: int) -> None:
        for w in self.workers.values():
            if w.proc.pid is not None and w.proc.exitcode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(w.proc.pid, sig)

    def reap(self, slot: int) -> None:
        w = self.workers.pop(slot)
        w.proc.join()
        os.close(w.beat)
        if self.stopping:
            if w.proc.exitcode != 0:
                log.warning("worker %d exited with status %s", slot, w.proc.exitcode)
                self.status = 1
            return
        uptime = time.monotonic() - w.started
        delay = 0.0
        if uptime < _MIN_UPTIME:
            delay = min(30.0, max(0.5, self.backoff.get(slot, 0.0) * 2))
        self.backoff[slot] = delay
        log.warning(
            "worker %d (pid %s) exited with status %s; starting a new one%s",
            slot,
            w.proc.pid,
            w.proc.exitcode,
            f" in {delay:.1f}s" if delay else "",
        )
        self.respawn[slot] = time.monotonic() + delay

    def read_beats(self, slot: int) -> None:
        w = self.workers[slot]
        try:
            data = os.read(w.beat, 4096)
        except BlockingIOError:
            return
        if data:
            w.last_beat = time.monotonic()
            if BEAT_READY in data and not w.ready:
                w.ready = True
                log.info("worker %d (pid %d) is serving", slot, w.proc.pid)

    def check_hung(self, timeout: float) -> None:
        now = time.monotonic()
        for slot, w in self.workers.items():
            # Starting (imports, building the app) may take longer than a beat's interval.
            allowed = timeout if w.ready else max(timeout, _STARTUP)
            if w.proc.exitcode is None and now - w.last_beat > allowed:
                log.error(
                    "worker %d (pid %s) has not answered for %.0fs; killing it",
                    slot,
                    w.proc.pid,
                    allowed,
                )
                with contextlib.suppress(ProcessLookupError):
                    os.kill(w.proc.pid, signal.SIGKILL)
                w.last_beat = now  # once; its exit replaces it

    # -- signals

    def on_signal(self, signum: int, _: Any) -> None:
        self.signals.append(signum)

    def handle_signals(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self.wake_r, 512):
                pass
        pending, self.signals = self.signals, []
        for sig in pending:
            if sig in (signal.SIGTERM, signal.SIGINT) and not self.stopping:
                drain = self.loaded.config.server.drain_timeout
                log.info("stopping: every worker drains for up to %gs", drain)
                systemd.notify("STOPPING=1", "STATUS=draining")
                self.stopping = True
                self.respawn.clear()
                # Workers end leftover streams at the deadline and cancel the rest a second
                # later; past that, they are killed.
                self.stop_deadline = time.monotonic() + drain + 5.0
                self.signal_all(signal.SIGTERM)
            elif sig == signal.SIGHUP and not self.stopping:
                self.reload()

    def reload(self) -> None:
        systemd.reloading()
        try:
            loaded = self.reread()
            from gateway.core.app import init_app

            init_app(loaded)  # what the workers will build, checked here first
        except ConfigError as exc:
            log.error(
                "reload refused, the running configuration stays: invalid configuration:\n  %s",
                "\n  ".join(exc.errors),
            )
        except Exception:
            log.exception("reload refused, the running configuration stays")
        else:
            if loaded.config.server.workers != self.count:
                log.warning("reload: [server] workers changed; it takes effect on restart")
            logging.getLogger().setLevel(loaded.config.server.log_level.upper())
            self.loaded = loaded
            log.info("reloading: the configuration is valid; telling every worker")
            self.signal_all(signal.SIGHUP)
        systemd.notify("READY=1", "STATUS=serving")

    # -- the loop

    def run(self) -> int:
        for sig in HANDLED_SIGNALS:
            signal.signal(sig, self.on_signal)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        try:
            for slot in range(self.count):
                self.spawn(slot)
            self.loop()
        finally:
            signal.set_wakeup_fd(-1)
            os.close(self.wake_r)
            os.close(self.wake_w)
            shutil.rmtree(self.peers, ignore_errors=True)
        log.info("all workers stopped")
        return self.status

    def loop(self) -> None:
        watchdog = systemd.watchdog_interval()
        next_watchdog = time.monotonic()
        timeout = self.loaded.config.server.worker_timeout
        while self.workers or (self.respawn and not self.stopping):
            now = time.monotonic()
            wait = _TICK
            if self.respawn:
                wait = min(wait, max(0.0, min(self.respawn.values()) - now))
            if watchdog is not None:
                wait = min(wait, max(0.0, next_watchdog - now))
            handles: dict[Any, tuple[str, int]] = {self.wake_r: ("wake", -1)}
            for slot, w in self.workers.items():
                handles[w.proc.sentinel] = ("exit", slot)
                handles[w.beat] = ("beat", slot)
            for ready in multiprocessing.connection.wait(list(handles), timeout=wait):
                what, slot = handles[ready]
                if what == "beat" and slot in self.workers:
                    self.read_beats(slot)
            # Exits are looked at after beats, so a worker's last bytes are read first.
            for slot in [s for s, w in self.workers.items() if w.proc.exitcode is not None]:
                self.reap(slot)
            self.handle_signals()
            now = time.monotonic()
            for slot, when in list(self.respawn.items()):
                if when <= now and not self.stopping:
                    del self.respawn[slot]
                    self.spawn(slot)
            if not self.stopping:
                self.check_hung(timeout)
                if (
                    not self.notified_ready
                    and self.workers
                    and all(w.ready for w in self.workers.values())
                ):
                    self.notified_ready = True
                    systemd.notify(
                        "READY=1", f"STATUS={self.count} workers serving", f"MAINPID={os.getpid()}"
                    )
            elif now > self.stop_deadline:
                log.error("workers still running after the drain deadline; killing them")
                self.signal_all(signal.SIGKILL)
                self.status = 1
                self.stop_deadline = float("inf")
            if watchdog is not None and now >= next_watchdog:
                systemd.notify("WATCHDOG=1")
                next_watchdog = now + watchdog


def supervise(loaded: Loaded, reread: Reread) -> int:
    """Run ``[server] workers`` processes until SIGTERM/SIGINT; returns the exit status."""
    if loaded.config.server.port == 0:
        log.error("--workers needs a fixed port: with port 0 every worker would get its own")
        return 2
    return Supervisor(loaded, reread).run()
