"""Running the application: the event loop, the listening socket, signals and the drain.

On SIGTERM or SIGINT the gateway stops accepting connections, lets in-flight requests and streams
finish for up to ``[server] drain_timeout``, cancels what is left (streams get an error frame),
closes its upstream clients, and exits with status 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from aiohttp import web

from gateway.app import GATEWAY, init_app
from gateway.loader import Loaded

log = logging.getLogger("gateway.server")


def new_event_loop_policy() -> None:
    """Use uvloop when it is installed (it is a dependency on CPython/Linux)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - platform without uvloop
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def run(
    loaded: Loaded, *, reuse_port: bool = False, on_ready: Callable[[int], None] | None = None
) -> int:
    """Serve until SIGTERM/SIGINT, then drain; returns the exit status."""
    new_event_loop_policy()
    return asyncio.run(serve(loaded, reuse_port=reuse_port, on_ready=on_ready))


async def serve(
    loaded: Loaded, *, reuse_port: bool = False, on_ready: Callable[[int], None] | None = None
) -> int:
    cfg = loaded.config.server
    app = init_app(loaded)
    runner = web.AppRunner(
        app,
        handle_signals=False,
        handler_cancellation=True,
        access_log=logging.getLogger("gateway.access") if cfg.access_log else None,
        keepalive_timeout=cfg.keepalive_timeout,
        # The gateway ends its own streams at the deadline (with an error frame); aiohttp's
        # forced close comes a moment later for anything else still running.
        shutdown_timeout=cfg.drain_timeout + 1.0,
    )
    await runner.setup()
    site = web.TCPSite(runner, cfg.host, cfg.port, backlog=1024, reuse_port=reuse_port or None)
    try:
        await site.start()
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", cfg.host, cfg.port, exc.strerror)
        await runner.cleanup()
        return 1
    port = next((addr[1] for addr in runner.addresses if isinstance(addr, tuple)), cfg.port)
    log.info(
        "hookgate listening on http://%s:%d (backends: %s)",
        cfg.host,
        port,
        ", ".join(b.label for b in app[GATEWAY].backends.values()) or "none",
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if on_ready is not None:
        on_ready(port)
    await stop.wait()
    log.info("shutting down: draining in-flight requests for up to %gs", cfg.drain_timeout)
    deadline = loop.call_later(cfg.drain_timeout, app[GATEWAY].end_streams)
    await runner.cleanup()
    deadline.cancel()
    log.info("stopped")
    return 0
