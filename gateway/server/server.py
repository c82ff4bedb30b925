"""Running the application: sockets, signals, readiness, reloads and the drain.

The server owns its listening sockets and serves them with a *generation*: one application
built from one configuration, with its own runner. On SIGHUP it re-reads the configuration and,
when it is valid, starts a new generation on the same sockets before the old one stops
accepting; the old generation then finishes the requests and streams it has (however long they
take) and closes. A configuration that does not load or start is refused, logged, and the old
generation keeps serving.

A retiring generation never closes a keep-alive connection under a client that may be sending
on it: every response it sends from then on says ``Connection: close`` (so does the one in
progress when its headers are not sent yet), and a connection closes after such a response.
One that stays idle closes at its keep-alive timeout, as it would have anyway. So a reload loses
no request, whatever the connections are doing.

On SIGTERM or SIGINT the listening sockets close at once (the kernel refuses new connections, so
a load balancer or a client's retry goes to another instance), every generation lets in-flight
requests and streams finish for up to ``[server] drain_timeout``, each with ``Connection:
close``, ends what is left (streams get an error frame), closes idle connections and its
upstream clients, and the process exits with status 0. The signal handlers are in place
before the sockets listen, so a signal that comes while the server starts is no exception.

Under systemd (``Type=notify``) the server says ``READY=1`` once it listens, ``RELOADING=1`` and
``READY=1`` around a reload, ``STOPPING=1`` when it drains, and ``WATCHDOG=1`` from its event loop
while the manager asks for it. As a worker of :mod:`gateway.server.workers` it writes the same news as
single bytes to its supervisor's pipe instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
from collections.abc import Callable

from aiohttp import web

from gateway.config.sections import server_tls
from gateway.config.types import HEARTBEAT
from gateway.core.app import GATEWAY, Gateway, init_app
from gateway.core.loading import Loaded
from gateway.errors import ConfigError
from gateway.server import systemd
from gateway.server.http import Runner
from gateway.server.logs import ACCESS, ACCESS_LOGGERS, http_logger
from gateway.server.peers import Peers

log = logging.getLogger("gateway.server.server")

#: Hung peers: the kernel aborts a connection whose sent data stays unacknowledged this long.
_USER_TIMEOUT_MS = 120_000
#: What a worker writes to its supervisor's pipe.
BEAT_READY, BEAT_ALIVE = b"R", b"."
#: The signals a server (and the supervisor of workers) handles: stop, stop, reload.
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
#: How often a retiring generation looks whether its connections have all closed.
_CONNECTIONS_POLL = 0.1

Reread = Callable[[], Loaded]


def new_event_loop_policy() -> None:
    """Use uvloop when it is installed (it is a dependency on CPython/Linux)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - platform without uvloop
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def raise_open_files_limit() -> None:
    """Raise this process's soft limit on open files to its hard limit.

    Every connection is a file: a soft limit of 1024 (a common default) would have the gateway
    refuse connections past about a thousand, slow readers and idle keep-alive connections
    included, long before memory or CPU run short; the hard limit is the operator's choice
    (``LimitNOFILE=`` under systemd, ``ulimit -Hn``). Accepting fails when even that is reached
    (the kernel's ``EMFILE``), so set it to what the process may hold at once.
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - not a Unix
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if target == resource.RLIM_INFINITY:
        target = 1 << 20  # Linux's default fs.nr_open: "unlimited" is not a settable soft limit
    if soft != resource.RLIM_INFINITY and soft >= target:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        log.warning("cannot raise the open files limit from %d to %d: %s", soft, target, exc)
        return
    log.debug("open files limit raised from %d to %d", soft, target)


def run(
    loaded: Loaded,
    *,
    reread: Reread | None = None,
    reuse_port: bool = False,
    heartbeat: int | None = None,
    peers: str | None = None,
) -> int:
    """Serve until SIGTERM/SIGINT, then drain; returns the exit status.

    ``reread`` loads the configuration again for SIGHUP (without it, SIGHUP is ignored);
    ``heartbeat`` is the supervisor's pipe and ``peers`` the directory of the workers' metrics
    sockets (see :mod:`gateway.server.peers`) when running as a worker.
    """
    new_event_loop_policy()
    raise_open_files_limit()
    server = Server(loaded, reread=reread, reuse_port=reuse_port, heartbeat=heartbeat, peers=peers)
    return asyncio.run(server.serve())


#: Allocations between young-generation collections (CPython's default is 700). A request makes
#: a few hundred short-lived objects, nearly all freed by reference counting; collecting every
#: couple of requests cost about 4% of a proxied request's instructions.
GC_YOUNG_THRESHOLD = 10_000


def tune_gc() -> None:
    """Once the application is up: move what startup made (modules, configuration, plugins) out
    of the collector's sight, and collect young objects less often."""
    gc.collect()
    gc.freeze()
    young, older, oldest = gc.get_threshold()
    gc.set_threshold(max(GC_YOUNG_THRESHOLD, young), older, oldest)


def bind(host: str, port: int, *, reuse_port: bool, backlog: int = 1024) -> list[socket.socket]:
    """Listening sockets for every address ``host`` resolves to (one port for all)."""
    infos = socket.getaddrinfo(
        host or None, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    sockets: list[socket.socket] = []
    seen = set()
    try:
        for family, kind, proto, _, address in infos:
            if (family, address[0]) in seen:
                continue
            seen.add((family, address[0]))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if hasattr(socket, "TCP_USER_TIMEOUT"):  # inherited by accepted connections
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, _USER_TIMEOUT_MS)
            if port == 0 and len(sockets) > 1:
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class Generation:
    """One application built from one configuration, and the runner that serves it."""

    def __init__(self, loaded: Loaded, previous: Generation | None = None) -> None:
        self.loaded = loaded
        self.app = init_app(loaded, metrics=previous.gateway.metrics if previous else None)
        self.gateway: Gateway = self.app[GATEWAY]
        cfg = loaded.config.server
        self.runner = Runner(
            self.app,
            handle_signals=False,
            handler_cancellation=True,
            access_log=logging.getLogger(ACCESS) if cfg.access_log else None,
            access_log_class=ACCESS_LOGGERS[cfg.access_log_format],
            logger=http_logger(),
            keepalive_timeout=cfg.keepalive_timeout,
            # In-flight requests may take as long as they need; the drain deadline is ours
            # (see set_deadline), so a reload never cuts an open stream.
            shutdown_timeout=0,
        )
        self.sites: list[web.SockSite] = []
        #: Set once this generation accepts no more connections (see :meth:`retire`).
        self.closed_to_new = asyncio.Event()
        #: Once set, every response says ``Connection: close``.
        self.retiring = False
        #: Set when the process stops: a retiring generation waits no more for idle connections.
        self.hurry = asyncio.Event()
        self._timers: list[asyncio.TimerHandle] = []

    async def start(self, sockets: list[socket.socket]) -> None:
        """Start the app (its backends) and accept on ``sockets`` (alongside any generation
        already accepting on them), over TLS when ``[server] tls_cert`` says so (its files read
        for this generation: a reload serves a renewed certificate)."""
        await self.runner.setup()
        tls = server_tls(self.loaded.config.server)
        for sock in sockets:
            # A duplicate of the socket: when this generation stops it closes its own
            # descriptor, and the listening socket lives on for the next generation.
            site = web.SockSite(self.runner, sock.dup(), backlog=1024, ssl_context=tls)
            await site.start()
            self.sites.append(site)

    def set_deadline(self, when: float) -> None:
        """At ``when`` (loop time) end open streams with an error frame; a second later,
        cancel whatever is still running."""
        loop = asyncio.get_running_loop()
        self._timers += [
            loop.call_at(when, self.gateway.end_streams),
            loop.call_at(when + 1.0, self.gateway.cancel_requests),
        ]

    async def retire(self, *, linger: bool) -> None:
        """Stop accepting and answer with ``Connection: close`` from now on; with ``linger``
        (a reload), wait until every connection has closed by itself (after such an answer, or
        at its keep-alive timeout); then let in-flight requests finish, close idle connections
        and the app."""
        try:
            self.retiring = True
            self.gateway.closing = True  # every response from now on: Connection: close
            for site in self.sites:
                await site.stop()
            self.closed_to_new.set()
            server = self.runner.server
            while linger and server is not None and server.connections:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_CONNECTIONS_POLL):
                        await self.hurry.wait()
                if self.hurry.is_set():
                    break
            await self.runner.cleanup()
        finally:
            self.closed_to_new.set()
            for timer in self._timers:
                timer.cancel()


class Server:
    """One process serving the gateway: see the module's description."""

    def __init__(
        self,
        loaded: Loaded,
        *,
        reread: Reread | None = None,
        reuse_port: bool = False,
        heartbeat: int | None = None,
        peers: str | None = None,
    ) -> None:
        self.loaded = loaded
        self.reread = reread
        self.reuse_port = reuse_port
        self.heartbeat = heartbeat
        self.peers_dir = peers
        self.peers: Peers | None = None
        self.sockets: list[socket.socket] = []
        self.current: Generation | None = None
        self.retiring: dict[Generation, asyncio.Task[None]] = {}
        self.reload_task: asyncio.Task[bool] | None = None
        self.stopping = False
        self._reread_pending = False
        self._tick: asyncio.TimerHandle | None = None

    async def serve(self) -> int:
        cfg = self.loaded.config.server
        loop = asyncio.get_running_loop()
        # The handlers come first: once a socket listens, a client or a supervisor may act on
        # it, and a SIGTERM must then drain the process, not kill it.
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._on_hup)
        # A worker starts with these signals blocked (see Supervisor.spawn); one that came
        # meanwhile is delivered now, to the handlers above.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
        try:
            self.sockets = bind(cfg.host, cfg.port, reuse_port=self.reuse_port)
        except OSError as exc:
            log.error("cannot listen on %s:%s: %s", cfg.host, cfg.port, exc.strerror or exc)
            return 1
        try:
            return await self._serve(stop)
        finally:
            for sock in self.sockets:
                sock.close()
            if self.peers is not None:
                await self.peers.close()

    async def _serve(self, stop: asyncio.Event) -> int:
        gen = Generation(self.loaded)
        await gen.start(self.sockets)
        self.current = gen
        tune_gc()
        if self.peers_dir is not None:
            peers = Peers(self.peers_dir, self._exposition)
            try:
                await peers.start()
            except OSError as exc:  # /metrics then shows this worker alone; serving goes on
                log.warning("cannot share metrics with the other workers: %s", exc)
            else:
                self.peers = peers
                gen.gateway.metrics.peers = peers.others  # reloads carry it on with the counts
        cfg = self.loaded.config.server
        port = self.sockets[0].getsockname()[1]
        log.info(
            "hookgate listening on %s://%s:%d (backends: %s)",
            "https" if cfg.tls_cert else "http",
            cfg.host,
            port,
            ", ".join(b.label for b in gen.gateway.backends.values()) or "none",
        )
        loop = asyncio.get_running_loop()
        if not stop.is_set():  # else told to stop while starting: straight to the drain
            self._ready(f"serving on port {port}")
            self._start_beating(loop)
            if self._reread_pending:
                self._on_hup()
            await stop.wait()
        self.stopping = True

        drain = self.current.loaded.config.server.drain_timeout
        log.info("shutting down: draining in-flight requests for up to %gs", drain)
        systemd.notify("STOPPING=1", "STATUS=draining")
        if self._tick is not None:
            self._tick.cancel()
        if self.reload_task is not None:
            self.reload_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reload_task
        deadline = loop.time() + drain
        generations = [self.current, *self.retiring]
        for gen in generations:
            gen.set_deadline(deadline)
            gen.hurry.set()
        # New connections go elsewhere from now on: the current generation stops accepting (on
        # its duplicates of the sockets), then the sockets themselves close, so the kernel
        # refuses new connections instead of queueing them for no one.
        current = loop.create_task(self.current.retire(linger=False))
        await self.current.closed_to_new.wait()
        for sock in self.sockets:
            sock.close()
        await asyncio.gather(current, *self.retiring.values())
        log.info("stopped")
        return 0

    def _exposition(self) -> bytes:
        assert self.current is not None
        return self.current.gateway.metrics.exposition()

    # -- readiness and liveness

    def _ready(self, status: str) -> None:
        systemd.notify("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")
        self._beat(BEAT_READY)

    def _beat(self, what: bytes) -> None:
        if self.heartbeat is None:
            return
        with contextlib.suppress(BlockingIOError, BrokenPipeError):
            os.write(self.heartbeat, what)

    def _start_beating(self, loop: asyncio.AbstractEventLoop) -> None:
        """Prove the event loop runs: ``WATCHDOG=1`` to systemd, a byte to the supervisor."""
        watchdog = systemd.watchdog_interval()
        if watchdog is None and self.heartbeat is None:
            return
        every = watchdog or HEARTBEAT
        if self.heartbeat is not None:
            every = min(every, HEARTBEAT)

        def tick() -> None:
            if watchdog is not None:
                systemd.notify("WATCHDOG=1")
            self._beat(BEAT_ALIVE)
            self._tick = loop.call_later(every, tick)

        tick()

    # -- reloads

    def _on_hup(self) -> None:
        if self.stopping:
            log.warning("SIGHUP while shutting down; ignored")
            return
        if self.reread is None:
            log.warning("SIGHUP: no configuration to re-read; ignored")
            return
        if self.current is None:
            log.info("SIGHUP while starting: the configuration is re-read once serving")
            self._reread_pending = True
            return
        self._reread_pending = False
        if self.reload_task is not None and not self.reload_task.done():
            log.warning("SIGHUP: a reload is already running; ignored")
            return
        self.reload_task = asyncio.get_running_loop().create_task(self.reload())

    async def reload(self) -> bool:
        """Re-read the configuration and serve it; on any failure keep the current one."""
        assert self.reread is not None and self.current is not None
        systemd.reloading()
        log.info("reloading the configuration")
        try:
            gen = await self._next_generation(self.reread)
        finally:
            status = "serving" if self.current is not None else "failed"
            systemd.notify("READY=1", f"STATUS={status}")
        if gen is None:
            return False
        old, self.current = self.current, gen
        self.loaded = gen.loaded
        self.retiring[old] = task = asyncio.get_running_loop().create_task(old.retire(linger=True))

        def retired(_: asyncio.Task[None]) -> None:
            self.retiring.pop(old, None)
            # What the old configuration made was frozen with the rest (see tune_gc): it can be
            # collected now, and the new one's is frozen in turn.
            gc.unfreeze()
            tune_gc()

        task.add_done_callback(retired)
        # Once this is logged, every new connection gets the new configuration.
        await old.closed_to_new.wait()
        log.info(
            "configuration reloaded (backends: %s); the previous one finishes %d open request(s)",
            ", ".join(b.label for b in gen.gateway.backends.values()) or "none",
            len(old.gateway.inflight),
        )
        return True

    async def _next_generation(self, reread: Reread) -> Generation | None:
        loop = asyncio.get_running_loop()
        try:
            loaded = await loop.run_in_executor(None, reread)
            keep = self.loaded.config.server
            new = loaded.config.server
            for name in ("host", "port", "workers"):
                if getattr(new, name) != getattr(keep, name):
                    log.warning(
                        "reload: [server] %s changed (%r -> %r); it takes effect on restart",
                        name,
                        getattr(keep, name),
                        getattr(new, name),
                    )
            logging.getLogger().setLevel(new.log_level.upper())
            gen = Generation(loaded, self.current)
        except ConfigError as exc:
            log.error(
                "reload refused, the running configuration stays: invalid configuration:\n  %s",
                "\n  ".join(exc.errors),
            )
            return None
        except Exception:
            log.exception("reload refused, the running configuration stays")
            return None
        try:
            await gen.start(self.sockets)
        except Exception as exc:
            log.error("reload refused, the new configuration failed to start: %s", exc)
            await gen.retire(linger=False)
            return None
        return gen
