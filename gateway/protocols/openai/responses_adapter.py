"""OpenAI's Responses API over any backend: ``POST /v1/responses`` (whole, streamed or in the
background), ``GET`` and ``DELETE /v1/responses/{id}``, ``GET /v1/responses/{id}/input_items``
and ``POST /v1/responses/{id}/cancel`` (stored responses: see ``responses_state``)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

from aiohttp import web

from gateway import (
    EXCHANGE,
    BadRequest,
    ChatRequest,
    Error,
    Event,
    Exchange,
    GatewayError,
    ProtocolAdapter,
    hookimpl,
    json_response,
    read_json,
)
from gateway.protocols.openai import chat as openai_chat
from gateway.protocols.openai import responses as openai_responses
from gateway.protocols.openai.responses_state import Resolved, ResponsesState
from gateway.protocols.openai.responses_store import ResponsesConfig
from gateway.protocols.openai.responses_stream import ResponseEncoder

#: Items ``input_items`` lists at most per page.
_MAX_LIMIT = 100


class ResponsesProtocol(ProtocolAdapter):
    name = openai_responses.PROTOCOL

    def __init__(self, gateway: Any) -> None:
        super().__init__(gateway)
        self.state = ResponsesState(gateway)

    def setup(self, app: web.Application) -> None:
        add = self.gateway.add_route
        add("POST", "/v1/responses", self.responses, name="responses", protocol=self)
        add("GET", "/v1/responses/{id}", self.retrieve, name="responses", protocol=self)
        add("DELETE", "/v1/responses/{id}", self.delete, name="responses", protocol=self)
        add(
            "GET",
            "/v1/responses/{id}/input_items",
            self.input_items,
            name="responses",
            protocol=self,
        )
        add("POST", "/v1/responses/{id}/cancel", self.cancel, name="responses", protocol=self)
        app.cleanup_ctx.append(self._lifespan)

    async def _lifespan(self, app: web.Application) -> AsyncIterator[None]:
        yield
        await self.state.close()

    def error_body(self, err: GatewayError) -> Any:
        return openai_chat.error_body(err)

    async def responses(self, request: web.Request) -> web.StreamResponse:
        ex = request[EXCHANGE]
        owner = ex.principal.id
        resolved = await self.state.resolve(await read_json(request), owner)
        body = resolved.body
        req = openai_responses.decode_request(body)
        self._refuse_files(req, ex)
        shell = openai_responses.Shell(
            body,
            req.model,
            store=resolved.store,
            previous_response_id=resolved.previous,
            background=resolved.background,
        )
        if resolved.background:
            return await self._background(owner, resolved, req, ex, shell)
        if not req.stream:
            resp = await self.pipeline.complete(req, ex)
            response = openai_responses.encode_response(resp, shell)
            await self.state.save(owner, resolved, response)
            return json_response(response)
        encoder = ResponseEncoder(shell)
        events = self.pipeline.stream(req, ex)
        if resolved.store and self.state.store is not None:
            events = self._saving(events, encoder, owner, resolved)
        return await self.stream_response(request, ex, events, encoder)

    def _refuse_files(self, req: ChatRequest, ex: Exchange) -> None:
        """``input_file`` parts reach only a backend that speaks the Responses API."""
        where = openai_responses.file_part(req.messages)
        if where is None:
            return
        backend = self.gateway.router.resolve(req.model, ex.principal).backend
        if backend.protocol != openai_responses.PROTOCOL:
            raise BadRequest(
                f"input_file parts are not supported by the backend of model '{req.model}' "
                "(it does not speak the Responses API, and files have no translation); send "
                "the file's text as input_text, or use an openai_responses backend.",
                param="input",
                code="input_file_not_supported",
            )

    async def _saving(
        self,
        events: AsyncGenerator[Event, None],
        encoder: ResponseEncoder,
        owner: str,
        resolved: Resolved,
    ) -> AsyncGenerator[Event, None]:
        """``events``, then the final response stored before the client is told it is done
        (so a next request naming it finds it, on any instance)."""
        async with aclosing(events):
            async for ev in events:
                yield ev
        try:
            await self.state.save(owner, resolved, encoder.result())
        except GatewayError as err:  # the store failed: the response fails, it is not kept
            yield Error(err)

    async def _background(
        self,
        owner: str,
        resolved: Resolved,
        req: ChatRequest,
        ex: Exchange,
        shell: openai_responses.Shell,
    ) -> web.Response:
        queued = shell.response("queued", [])

        async def run() -> dict[str, Any]:
            resp = await self.pipeline.complete(req, ex)
            return openai_responses.encode_response(resp, shell)

        def failed(error: GatewayError | None, status: str) -> dict[str, Any]:
            return shell.response(status, [], error=error)

        await self.state.start(owner, resolved, queued, run, failed)
        return json_response(queued)

    async def retrieve(self, request: web.Request) -> web.Response:
        if request.query.get("stream") in ("true", "1"):
            raise BadRequest(
                "Streaming a stored response again is not supported: GET it without 'stream'.",
                param="stream",
            )
        record = await self.state.get(request[EXCHANGE].principal.id, request.match_info["id"])
        return json_response(record.response)

    async def delete(self, request: web.Request) -> web.Response:
        response_id = request.match_info["id"]
        await self.state.delete(request[EXCHANGE].principal.id, response_id)
        return json_response({"id": response_id, "object": "response", "deleted": True})

    async def input_items(self, request: web.Request) -> web.Response:
        record = await self.state.get(request[EXCHANGE].principal.id, request.match_info["id"])
        query = request.query
        order = query.get("order", "desc")
        if order not in ("asc", "desc"):
            raise BadRequest("'order' must be 'asc' or 'desc'.", param="order")
        try:
            limit = int(query.get("limit", "20"))
        except ValueError:
            raise BadRequest("'limit' must be an integer.", param="limit") from None
        if not 1 <= limit <= _MAX_LIMIT:
            raise BadRequest(f"'limit' must be between 1 and {_MAX_LIMIT}.", param="limit")
        items = record.input if order == "asc" else record.input[::-1]
        after = query.get("after")
        if after:
            ids = [i.get("id") for i in items]
            if after not in ids:
                raise BadRequest(f"No item '{after}' in this response's input.", param="after")
            items = items[ids.index(after) + 1 :]
        page = items[:limit]
        return json_response(
            {
                "object": "list",
                "data": page,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
                "has_more": len(items) > limit,
            }
        )

    async def cancel(self, request: web.Request) -> web.Response:
        def cancelled(response: dict[str, Any]) -> dict[str, Any]:
            return {**response, "status": "cancelled", "completed_at": None}

        response = await self.state.cancel(
            request[EXCHANGE].principal.id, request.match_info["id"], cancelled
        )
        return json_response(response)


@hookimpl
def gateway_config_sections(register: Any) -> None:
    register("responses", ResponsesConfig)


@hookimpl
def gateway_register_protocols(register: Any) -> None:
    register(openai_responses.PROTOCOL, ResponsesProtocol)
