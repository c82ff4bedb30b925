"""``GET /metrics``: Prometheus text exposition of the gateway's metrics.

Open by default (the gateway listens on localhost unless told otherwise); set
``[metrics] require_key = true`` to ask for an API key like the model routes do. Under
``--workers`` the worker that answers adds up every worker's metrics (see
:mod:`gateway.server.peers`).
"""

from __future__ import annotations

from typing import Any

import attrs
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from gateway import hookimpl


@attrs.frozen
class MetricsConfig:
    """``[metrics]``."""

    enabled: bool = True
    path: str = "/metrics"
    require_key: bool = False


@hookimpl
def gateway_config_sections(register: Any) -> None:
    register("metrics", MetricsConfig)


@hookimpl
def gateway_configure_app(app: web.Application, gateway: Any) -> None:
    cfg: MetricsConfig = gateway.config.section("metrics")
    if not cfg.enabled:
        return

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(
            body=await gateway.metrics.scrape(), headers={"content-type": CONTENT_TYPE_LATEST}
        )

    gateway.add_route("GET", cfg.path, metrics, name="metrics", auth=cfg.require_key)
