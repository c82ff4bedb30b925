"""A toy protocol plugin for tests: ``POST /plain/{model}`` with the prompt as the body, the
answer as text, and errors as ``{"oops": message}``. It knows nothing of sessions or limits:
whatever works for it works through the canonical model for any protocol."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway import (
    EXCHANGE,
    ChatRequest,
    GatewayError,
    Message,
    ProtocolAdapter,
    TextPart,
    hookimpl,
)


class PlainProtocol(ProtocolAdapter):
    name = "plain"

    def setup(self, app: web.Application) -> None:
        self.gateway.add_route("POST", "/plain/{model}", self.handle, name="plain", protocol=self)

    def error_body(self, err: GatewayError) -> Any:
        return {"oops": err.message}

    async def handle(self, request: web.Request) -> web.Response:
        req = ChatRequest(
            model=request.match_info["model"],
            protocol=self.name,
            messages=[Message("user", [TextPart(await request.text())])],
        )
        resp = await self.pipeline.complete(req, request[EXCHANGE])
        return web.Response(text=resp.message.text())


class Plugin:
    @hookimpl
    def gateway_register_protocols(self, register: Any) -> None:
        register("plain", PlainProtocol)


PLUGIN = ("plain", Plugin())
