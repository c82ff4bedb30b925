"""A protocol of its own: ``POST /ask`` takes ``{"model", "question", "stream"}``.

The answer is ``{"model", "answer"}``, or with ``"stream": true`` Server-Sent Events written by
the gateway's stream writer (keep-alive pings, a send timeout, whole frames): ``data:
{"text": ...}`` per piece, then ``event: done`` with the finish reason, or ``event: error``.
Errors before a stream starts are ``{"error": {"message", "code"}}`` with their HTTP status.
"""

from __future__ import annotations

import orjson
from aiohttp import web

from gateway import (
    EXCHANGE,
    JSON,
    BadRequest,
    ChatRequest,
    Error,
    Event,
    Finish,
    GatewayError,
    Message,
    ProtocolAdapter,
    RegisterProtocol,
    TextDelta,
    TextPart,
    Usage,
    UsageEvent,
    hookimpl,
    json_response,
    read_json,
)


def error_json(err: GatewayError) -> JSON:
    return {"error": {"message": err.message, "code": err.code or err.kind}}


class AskEncoder:
    """Canonical events as this protocol's SSE frames (a ``gateway.StreamEncoder``)."""

    def __init__(self) -> None:
        self.usage: Usage | None = None

    def encode(self, event: Event) -> bytes:
        if isinstance(event, TextDelta):
            return b"data: " + orjson.dumps({"text": event.text}) + b"\n\n"
        if isinstance(event, UsageEvent):
            self.usage = event.usage
        elif isinstance(event, Finish):
            tokens = self.usage.output_tokens if self.usage else None
            done = {"reason": event.reason, "output_tokens": tokens}
            return b"event: done\ndata: " + orjson.dumps(done) + b"\n\n"
        elif isinstance(event, Error):
            return b"event: error\ndata: " + orjson.dumps(error_json(event.error)) + b"\n\n"
        return b""  # what this protocol does not show: tool runs, reasoning, ...

    def end(self) -> bytes:
        return b""


class AskProtocol(ProtocolAdapter):
    name = "ask"

    def setup(self, app: web.Application) -> None:
        # A route added by the gateway gets its auth, error mapping (in error_body's shape) and
        # metrics.
        self.gateway.add_route("POST", "/ask", self.ask, name="ask", protocol=self)

    def error_body(self, err: GatewayError) -> JSON:
        return error_json(err)

    async def ask(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)  # 400 for bad JSON, 413 past the body limit
        if not isinstance(body, dict):
            raise BadRequest("The body must be a JSON object.")
        for field in ("model", "question"):
            if not isinstance(body.get(field), str):
                raise BadRequest(f"'{field}' must be a string.", param=field)
        chat = ChatRequest(
            model=body["model"],
            protocol=self.name,
            stream=body.get("stream") is True,
            messages=[Message("user", [TextPart(body["question"])])],
        )
        exchange = request[EXCHANGE]
        if not chat.stream:
            answer = await self.pipeline.complete(chat, exchange)
            return json_response({"model": chat.model, "answer": answer.message.text()})
        events = self.pipeline.stream(chat, exchange)
        return await self.stream_response(request, exchange, events, AskEncoder())


@hookimpl
def gateway_register_protocols(register: RegisterProtocol) -> None:
    register("ask", AskProtocol)
