"""The OpenAI endpoints hookgate does not model, relayed to the routed OpenAI-compatible backend:
``/v1/audio/*``, ``/v1/images/*``, ``/v1/files``, ``/v1/batches``, ``/v1/moderations`` and
``/v1/rerank``.

The model a request names (its JSON ``model``, or the ``model`` field of a multipart form,
which must come before the file parts, as the SDKs send it) routes it, with the key's model
list, rate limits and metrics applied as for chat: the request passes the pipeline's request
filters as a :class:`ChatRequest` of protocol :data:`PASSTHROUGH` with no messages. Files and
batches name no model: the ``x-hookgate-model`` header names one, or, with a single OpenAI
backend configured, they go there. Multipart bodies are streamed to the upstream as they
arrive, never held whole; answers (audio, images, file contents) are streamed back.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiohttp import web

from gateway import EXCHANGE, BadRequest, ChatRequest, Exchange, PayloadTooLarge

#: The protocol of relayed requests, as request filters see them.
PASSTHROUGH = "openai-passthrough"
#: How much of a multipart body is read to find its ``model`` field.
_MODEL_WINDOW = 256 * 1024
#: Response headers passed back to the client.
_KEPT = ("content-type", "content-disposition", "openai-processing-ms", "x-request-id")
_MODEL_FIELD = re.compile(
    rb'content-disposition:\s*form-data;\s*name="model"[^\r\n]*\r\n(?:[^\r\n]+\r\n)*\r\n([^\r\n]*)\r\n',
    re.IGNORECASE,
)

#: (method, path) routes relayed, ``{tail}`` being the rest of the path.
ROUTES = (
    ("POST", "/v1/audio/{tail:.+}"),
    ("POST", "/v1/images/{tail:.+}"),
    ("POST", "/v1/moderations"),
    ("POST", "/v1/rerank"),
    ("GET", "/v1/files"),
    ("POST", "/v1/files"),
    ("GET", "/v1/files/{tail:.+}"),
    ("DELETE", "/v1/files/{tail:.+}"),
    ("GET", "/v1/batches"),
    ("POST", "/v1/batches"),
    ("GET", "/v1/batches/{tail:.+}"),
    ("POST", "/v1/batches/{tail:.+}"),
)
#: Paths whose requests name no model.
_MODEL_LESS = ("/v1/files", "/v1/batches")


class Passthrough:
    """Relays one gateway's unmodelled OpenAI endpoints."""

    def __init__(self, gateway: Any) -> None:
        self.gateway = gateway
        self.pipeline = gateway.pipeline

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ex = request[EXCHANGE]
        limit = request.client_max_size
        if request.content_length is not None and request.content_length > limit:
            raise PayloadTooLarge(
                f"The request body is {request.content_length} bytes; the limit is {limit} bytes."
            )
        body: bytes | AsyncIterator[bytes] | None
        path = request.path
        if path.startswith(_MODEL_LESS):
            backend, _ = await self._admit(self._model_less(request), ex)
            body = _streamed(request, b"", limit) if request.can_read_body else None
        elif request.content_type == "multipart/form-data":
            head = await _read_until_model(request, limit)
            match = _MODEL_FIELD.search(head)
            if match is None:
                raise BadRequest(
                    "'model' is required: a form field before the file.", param="model"
                )
            model = match.group(1).decode("utf-8", "replace").strip()
            backend, upstream_model = await self._admit(model, ex)
            if upstream_model != model:
                head = head[: match.start(1)] + upstream_model.encode() + head[match.end(1) :]
            body = _streamed(request, head, limit)
        else:
            data = await request.read()
            try:
                obj = orjson.loads(data)
            except orjson.JSONDecodeError as exc:
                raise BadRequest(f"The request body is not valid JSON: {exc}.") from None
            model = obj.get("model") if isinstance(obj, dict) else None
            if not isinstance(model, str) or not model:
                raise BadRequest("'model' is required and must be a string.", param="model")
            backend, upstream_model = await self._admit(model, ex)
            body = (
                data if upstream_model == model else orjson.dumps({**obj, "model": upstream_model})
            )
        headers = {"content-type": request.headers["content-type"]} if request.can_read_body else {}
        target = path.removeprefix("/v1") + (
            f"?{request.query_string}" if request.query_string else ""
        )
        async with backend.relay(request.method, target, headers, body, ex) as upstream:
            resp = web.StreamResponse(status=upstream.status)
            for name in _KEPT:
                if name in upstream.headers and name != "x-request-id":
                    resp.headers[name] = upstream.headers[name]
            await resp.prepare(request)
            async for chunk in upstream.content.iter_any():
                await resp.write(chunk)
            await resp.write_eof()
            return resp

    def _model_less(self, request: web.Request) -> str:
        named = request.headers.get("x-hookgate-model")
        if named:
            return named
        backends = [b for b in self.gateway.backends.values() if b.protocol == "openai"]
        if len(backends) != 1:
            raise BadRequest(
                f"{request.path} names no model: send the 'x-hookgate-model' header to say "
                "which model's backend keeps the files and batches.",
                param="x-hookgate-model",
            )
        return _route_to(self.gateway.router, backends[0])

    async def _admit(self, model: str, ex: Exchange) -> tuple[Any, str]:
        """Route ``model`` through the request filters (limits), as chat requests are: the
        backend, and the model name its upstream knows."""
        req = ChatRequest(model=model, messages=[], protocol=PASSTHROUGH)
        req, backend = await self.pipeline.prepare(req, ex)
        return backend, req.upstream_model or model


def _route_to(router: Any, backend: Any) -> str:
    """A model name routed to ``backend`` (for model-less requests)."""
    for name, route in router.exact.items():
        if route.backend is backend:
            return str(name)
    raise BadRequest("No model is routed to the OpenAI backend.", param="x-hookgate-model")


async def _read_until_model(request: web.Request, limit: int) -> bytes:
    """The start of a multipart body, read until its ``model`` field is in (or the window is
    full, or the body ends)."""
    head = b""
    while len(head) < _MODEL_WINDOW and not _MODEL_FIELD.search(head):
        chunk = await request.content.readany()
        if not chunk:
            break
        head += chunk
        if len(head) > limit:
            raise PayloadTooLarge(f"The request body exceeds the limit of {limit} bytes.")
    return head


async def _streamed(request: web.Request, head: bytes, limit: int) -> AsyncIterator[bytes]:
    """``head`` and then the rest of the request body as it arrives, within ``limit``."""
    size = len(head)
    if head:
        yield head
    while True:
        chunk = await request.content.readany()
        if not chunk:
            return
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The request body exceeds the limit of {limit} bytes.")
        yield chunk
