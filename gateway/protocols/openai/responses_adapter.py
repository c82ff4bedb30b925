"""OpenAI's Responses API: ``POST /v1/responses``, whole or streamed, over any backend."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway import EXCHANGE, GatewayError, ProtocolAdapter, hookimpl, json_response, read_json
from gateway.protocols.openai import chat as openai_chat
from gateway.protocols.openai import responses as openai_responses
from gateway.protocols.openai.responses_stream import ResponseEncoder


class ResponsesProtocol(ProtocolAdapter):
    name = openai_responses.PROTOCOL

    def setup(self, app: web.Application) -> None:
        self.gateway.add_route(
            "POST", "/v1/responses", self.responses, name="responses", protocol=self
        )

    def error_body(self, err: GatewayError) -> Any:
        return openai_chat.error_body(err)

    async def responses(self, request: web.Request) -> web.StreamResponse:
        ex = request[EXCHANGE]
        body = await read_json(request)
        req = openai_responses.decode_request(body)
        shell = openai_responses.Shell(body, req.model)
        if not req.stream:
            resp = await self.pipeline.complete(req, ex)
            return json_response(openai_responses.encode_response(resp, shell))
        events = self.pipeline.stream(req, ex)
        return await self.stream_response(request, ex, events, ResponseEncoder(shell))


@hookimpl
def gateway_register_protocols(register: Any) -> None:
    register(openai_responses.PROTOCOL, ResponsesProtocol)
