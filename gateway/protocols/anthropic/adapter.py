"""The Anthropic protocol: ``POST /v1/messages`` and ``POST /v1/messages/count_tokens``.

Keys arrive as ``x-api-key`` (older SDKs) or ``Authorization: Bearer`` (SDK 2.x); the auth
middleware reads both. Any ``anthropic-version`` is accepted, or none: the gateway speaks one
wire format and the upstream's version is the backend's to choose.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway import (
    EXCHANGE,
    JSON_CONTENT_TYPE,
    GatewayError,
    ProtocolAdapter,
    hookimpl,
    json_response,
    read_json,
)
from gateway.protocols.anthropic import messages as anthropic
from gateway.protocols.anthropic import response as anthropic_response
from gateway.protocols.anthropic.stream import MessageEncoder


class AnthropicProtocol(ProtocolAdapter):
    name = "anthropic"

    def setup(self, app: web.Application) -> None:
        add = self.gateway.add_route
        add("POST", "/v1/messages", self.messages, name="messages", protocol=self)
        add(
            "POST",
            "/v1/messages/count_tokens",
            self.count_tokens,
            name="count_tokens",
            protocol=self,
        )

    def error_body(self, err: GatewayError) -> Any:
        return anthropic_response.error_body(err)

    def error_response(self, err: GatewayError, request_id: str | None = None) -> web.Response:
        """Anthropic's error body carries the request id, and so does its ``request-id``
        header (which the SDK reads)."""
        headers = self.error_headers(err)
        if request_id is not None:
            headers["request-id"] = request_id
        body = anthropic_response.error_body(err, request_id)
        return json_response(body, status=err.status, headers=headers)

    async def messages(self, request: web.Request) -> web.StreamResponse:
        ex = request[EXCHANGE]
        req = anthropic.decode_request(await read_json(request), request.headers)
        if not req.stream:
            resp = await self.pipeline.complete(req, ex)
            if resp.raw is not None and resp.raw_protocol == self.name:
                return web.Response(body=resp.raw, content_type=JSON_CONTENT_TYPE)
            return json_response(anthropic_response.encode_response(resp, req.model))
        reads = self.pipeline.stream_reads(req, ex)
        return await self.stream_response(request, ex, reads, MessageEncoder(req.model))

    async def count_tokens(self, request: web.Request) -> web.Response:
        """``{"input_tokens": N}``: the upstream's count when the backend can ask it, else the
        gateway's estimate (``x-hookgate-token-count: estimate`` says which)."""
        ex = request[EXCHANGE]
        req = anthropic.decode_request(await read_json(request), request.headers, counting=True)
        count, exact = await self.pipeline.count_tokens(req, ex)
        return json_response(
            {"input_tokens": count},
            headers={"x-hookgate-token-count": "exact" if exact else "estimate"},
        )


@hookimpl
def gateway_register_protocols(register: Any) -> None:
    register("anthropic", AnthropicProtocol)
