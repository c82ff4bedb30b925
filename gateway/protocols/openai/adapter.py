"""The OpenAI protocol: ``POST /v1/chat/completions``, ``POST /v1/completions``,
``POST /v1/embeddings`` and ``GET /v1/models``."""

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
from gateway.protocols.openai import chat as openai_chat
from gateway.protocols.openai import chat_response as openai_chat_response
from gateway.protocols.openai import chat_stream as openai_chat_stream
from gateway.protocols.openai import completions, models, passthrough
from gateway.protocols.openai import embeddings as openai_embeddings


class OpenAIProtocol(ProtocolAdapter):
    name = "openai"

    def setup(self, app: web.Application) -> None:
        self._lister = models.ModelLister(self.gateway)
        add = self.gateway.add_route
        add(
            "POST",
            "/v1/chat/completions",
            self.chat_completions,
            name="chat_completions",
            protocol=self,
        )
        add("POST", "/v1/completions", self.completions, name="completions", protocol=self)
        add("POST", "/v1/embeddings", self.embeddings, name="embeddings", protocol=self)
        add("GET", "/v1/models", self.list_models, name="models", protocol=self)
        relay = passthrough.Passthrough(self.gateway)
        for method, path in passthrough.ROUTES:
            add(method, path, relay.handle, name=path.split("/")[2], protocol=self)
        add("GET", "/v1/models/{model}", self.get_model, name="model", protocol=self)

    def error_body(self, err: GatewayError) -> Any:
        return openai_chat.error_body(err)

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        ex = request[EXCHANGE]
        req = openai_chat.decode_request(await read_json(request))
        if not req.stream:
            resp = await self.pipeline.complete(req, ex)
            if resp.raw is not None and resp.raw_protocol == self.name:
                return web.Response(body=resp.raw, content_type=JSON_CONTENT_TYPE)
            return json_response(openai_chat_response.encode_response(resp, req.model))
        reads = self.pipeline.stream_reads(req, ex)
        return await self.stream_response(
            request, ex, reads, openai_chat_stream.ChunkEncoder(req.model, req.include_usage)
        )

    async def completions(self, request: web.Request) -> web.StreamResponse:
        ex = request[EXCHANGE]
        req = completions.decode_request(await read_json(request))
        if not req.stream:
            resp = await self.pipeline.complete(req, ex)
            if resp.raw is not None and resp.raw_protocol == completions.COMPLETIONS:
                return web.Response(body=resp.raw, content_type=JSON_CONTENT_TYPE)
            return json_response(completions.encode_response(resp, req.model))
        reads = self.pipeline.stream_reads(req, ex)
        encoder = completions.ChunkEncoder(req.model, req.include_usage)
        return await self.stream_response(request, ex, reads, encoder)

    async def embeddings(self, request: web.Request) -> web.Response:
        ex = request[EXCHANGE]
        req = openai_embeddings.decode_request(await read_json(request))
        resp = await self.pipeline.embed(req, ex)
        if resp.raw is not None and resp.raw_protocol == self.name:
            return web.Response(body=resp.raw, content_type=JSON_CONTENT_TYPE)
        return json_response(openai_embeddings.encode_response(resp, req))

    async def list_models(self, request: web.Request) -> web.Response:
        """The names the caller may use; in Anthropic's shape (paged) when the request has an
        ``anthropic-version`` header, as the Anthropic SDK's requests do."""
        names = await self._lister.names(request[EXCHANGE])
        if "anthropic-version" in request.headers:
            descriptions = self.gateway.router.descriptions
            data = [models.anthropic_model(n, descriptions.get(n)) for n in names]
            return json_response(models.anthropic_page(data, request.query))
        return json_response({"object": "list", "data": [models.openai_model(n) for n in names]})

    async def get_model(self, request: web.Request) -> web.Response:
        name = request.match_info["model"]
        self.gateway.router.resolve(name, request[EXCHANGE].principal)
        if "anthropic-version" in request.headers:
            description = self.gateway.router.descriptions.get(name)
            return json_response(models.anthropic_model(name, description))
        return json_response(models.openai_model(name))


@hookimpl
def gateway_register_protocols(register: Any) -> None:
    register("openai", OpenAIProtocol)
