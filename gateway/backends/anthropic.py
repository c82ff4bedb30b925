"""The ``anthropic`` backend: an upstream that speaks Anthropic Messages.

``base_url`` is the bare host (``https://api.anthropic.com``), as the anthropic SDK's is; the
gateway adds ``/v1/messages``. Requests carry ``x-api-key`` and the configured
``anthropic-version``. A request that arrived through the Anthropic protocol unchanged is sent as
it came (unknown fields and the client's ``anthropic-beta`` included) and its stream is relayed
as whole frames as they arrive (the fast path); requests from other protocols are translated,
with the configured ``max_tokens`` when theirs has none.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import attrs
import orjson

from gateway.backends.base import Backend
from gateway.backends.upstream import HTTPBackendConfig, Upstream
from gateway.canonical import ChatRequest, ChatResponse, Error, Event
from gateway.config.types import Count
from gateway.core.exchange import Exchange
from gateway.errors import UpstreamError
from gateway.hookspecs import hookimpl
from gateway.protocols.anthropic import messages as anthropic
from gateway.protocols.anthropic.messages import PROTOCOL
from gateway.protocols.anthropic.response import decode_response, stream_error
from gateway.protocols.anthropic.stream import StreamParser
from gateway.streaming.sse import SSEDecoder, SSEFrame

MESSAGES = "/v1/messages"
COUNT_TOKENS = "/v1/messages/count_tokens"
#: Request fields count_tokens does not take.
_NOT_COUNTED = ("max_tokens", "stream", "stop_sequences", "temperature", "top_p", "top_k")


@attrs.frozen
class AnthropicBackendConfig(HTTPBackendConfig):
    #: The ``anthropic-version`` header sent upstream (whatever version the client sent).
    version: str = "2023-06-01"
    #: ``max_tokens`` for requests whose protocol has none (Anthropic requires it).
    max_tokens: Count = Count(4096)


class AnthropicBackend(Backend):
    kind = "anthropic"
    protocol = PROTOCOL

    def __init__(self, name: str, config: AnthropicBackendConfig, gateway: Any) -> None:
        super().__init__(name, config, gateway)
        if str(config.base_url).endswith("/v1"):
            raise ValueError(
                "base_url is the bare host for the anthropic kind, as in the anthropic SDK "
                f"(drop the trailing /v1: {str(config.base_url)[:-3]!r})"
            )
        headers = {"anthropic-version": config.version}
        if config.api_key:
            headers["x-api-key"] = config.api_key
        self.upstream = Upstream(name, config, headers)
        #: Betas the configuration always asks for; a client's are added to them.
        self._betas = next(
            (v for k, v in config.headers.items() if k.lower() == "anthropic-beta"), None
        )

    async def start(self) -> None:
        await self.upstream.start()

    async def close(self) -> None:
        await self.upstream.close()

    def _body(self, req: ChatRequest) -> bytes:
        model = req.upstream_model or req.model
        return orjson.dumps(anthropic.encode_request(req, model, self.config.max_tokens))

    def _headers(self, req: ChatRequest) -> Mapping[str, str] | None:
        """Per-request headers: the client's ``anthropic-beta`` (Anthropic clients only)."""
        if not req.headers or req.protocol != PROTOCOL:
            return None
        beta = req.headers.get("anthropic-beta")
        if beta and self._betas:
            return {"anthropic-beta": f"{self._betas},{beta}"}
        return req.headers

    def _json(self, data: bytes) -> Any:
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamError(f"backend '{self.name}' answered with invalid JSON") from None
        if isinstance(obj, dict) and obj.get("type") == "error":
            raise stream_error(obj)
        return obj

    async def complete(self, request: ChatRequest, exchange: Exchange) -> ChatResponse:
        data = await self.upstream.post(
            MESSAGES, self._body(request), exchange, self._headers(request)
        )
        resp = decode_response(self._json(data))
        if request.protocol == PROTOCOL:
            resp.raw, resp.raw_protocol = data, PROTOCOL
        return resp

    async def count_tokens(self, request: ChatRequest, exchange: Exchange) -> int | None:
        """The upstream's own count (exact for its model)."""
        body = anthropic.encode_request(
            request, request.upstream_model or request.model, self.config.max_tokens
        )
        for key in _NOT_COUNTED:
            body.pop(key, None)
        data = await self.upstream.post(
            COUNT_TOKENS, orjson.dumps(body), exchange, self._headers(request)
        )
        count = self._json(data)
        if not isinstance(count, dict) or not isinstance(count.get("input_tokens"), int):
            raise UpstreamError(f"backend '{self.name}' answered count_tokens without a count")
        return count["input_tokens"]

    async def stream(self, request: ChatRequest, exchange: Exchange) -> AsyncIterator[Event]:
        relay = request.raw_relay and request.protocol == PROTOCOL
        body = self._body(request)
        async with self.upstream.stream(MESSAGES, body, exchange, self._headers(request)) as resp:
            parser = StreamParser()
            async for batch in self.upstream.sse_batches(
                resp,
                exchange,
                SSEDecoder(),
                lambda frames: self._batch(frames, parser, relay),
                PROTOCOL if relay else None,
            ):
                for ev in batch:
                    yield ev
                if type(batch[-1]) is Error:
                    return
            if not parser.finished:
                yield Error(
                    UpstreamError(
                        f"backend '{self.name}' closed the stream before finishing its answer"
                    )
                )

    def _batch(self, frames: list[SSEFrame], parser: StreamParser, relay: bool) -> list[Event]:
        """The canonical events of the frames one read completed; an error ends the list."""
        batch: list[Event] = []
        for frame in frames:
            batch += self._events(frame.data, parser, relay)
            if batch and type(batch[-1]) is Error:
                break
        return batch

    def _events(self, data: str, parser: StreamParser, relay: bool) -> list[Event]:
        """The canonical events of one upstream frame (``relayed`` when its bytes are)."""
        if not data:
            return []
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            return [Error(UpstreamError(f"backend '{self.name}' sent a malformed stream frame"))]
        if not isinstance(obj, dict):
            return []
        if obj.get("type") == "error":
            return [Error(stream_error(obj), relayed=relay)]
        events = parser.feed(obj)
        if relay:
            for ev in events:
                ev.relayed = True
        return events


@hookimpl
def gateway_register_backends(register: Any) -> None:
    register("anthropic", AnthropicBackend, AnthropicBackendConfig)
