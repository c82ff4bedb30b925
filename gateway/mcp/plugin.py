"""The built-in ``mcp`` plugin: ``[mcp.servers.<name>]`` become tool sources agents use, and
the gateway serves ``/mcp``.

The ``mcp`` SDK is imported only when something needs it (a configured server, or the
endpoint), so a gateway without the ``mcp`` extra starts as before.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway import ConfigError, hookimpl
from gateway.mcp.config import MCPConfig
from gateway.mcp.metrics import ToolCallMetrics

if TYPE_CHECKING:
    from gateway import Gateway
    from gateway.mcp.upstream import MCPUpstream

log = logging.getLogger(__name__)

EXTRA = "the mcp extra is not installed (pip install 'hookgate[mcp]')"


def sdk_installed() -> bool:
    return importlib.util.find_spec("mcp") is not None


@hookimpl
def gateway_config_sections(register: Any) -> None:
    register("mcp", MCPConfig)


# First, so the servers are tool sources before the agents plugin builds the agents.
@hookimpl(tryfirst=True)
def gateway_configure_app(app: web.Application, gateway: Gateway) -> None:
    cfg: MCPConfig = gateway.config.section("mcp")
    errors = cfg.problems()
    installed = sdk_installed()
    if cfg.servers and not installed:
        errors.append(f"mcp.servers: {EXTRA}")
    if cfg.serve and not installed:
        errors.append(f"mcp.serve: {EXTRA}")
    if errors:
        raise ConfigError(errors)
    upstreams: dict[str, MCPUpstream] = {}
    serving = cfg.serve or (cfg.serve is None and installed)
    if not cfg.servers and not serving:
        return
    metrics = ToolCallMetrics.of(gateway.metrics.registry)
    if cfg.servers:
        from gateway.mcp.upstream import MCPUpstream

        upstreams = {name: MCPUpstream(name, s, cfg, metrics) for name, s in cfg.servers.items()}
        gateway.tool_sources.update(upstreams)
        app.cleanup_ctx.append(_lifespan(upstreams, float(cfg.startup_timeout)))
    if serving:
        from gateway.mcp.routes import serve

        serve(gateway, cfg, upstreams, metrics)


def _lifespan(upstreams: dict[str, MCPUpstream], startup_timeout: float) -> Any:
    async def lifespan(app: web.Application) -> AsyncIterator[None]:
        """Connect every server, waiting at most ``startup_timeout`` for all of them; a slower
        one goes on connecting in the background and its tools appear when it is up."""
        for upstream in upstreams.values():
            upstream.start()
        waits = [asyncio.ensure_future(u.connected.wait()) for u in upstreams.values()]
        try:
            await asyncio.wait(waits, timeout=startup_timeout)
        finally:
            for wait in waits:
                wait.cancel()
        slow = [u for u in upstreams.values() if not u.connected.is_set()]
        for upstream in slow:
            log.warning(
                "mcp %s: not connected within startup_timeout (%gs); starting without its "
                "tools, which appear once it connects",
                upstream.name,
                startup_timeout,
            )
        try:
            yield
        finally:
            await asyncio.gather(*(u.stop() for u in upstreams.values()))

    return lifespan
