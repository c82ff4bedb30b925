"""The ``openai`` backend: any OpenAI-compatible upstream (vLLM, Ollama, llama.cpp, hosted APIs).

``base_url`` ends in ``/v1``, as the OpenAI SDK's does. A request that arrived through the OpenAI
protocol unchanged is sent as it came (unknown fields included) with the upstream model name, and
its stream is relayed in bulk as it arrives (the fast path), while the gateway still reads each
frame for usage, text and failures.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal

import attrs
import orjson

from gateway.backends.base import Backend
from gateway.backends.upstream import HTTPBackendConfig, Upstream
from gateway.canonical import (
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    Error,
    Event,
    Raw,
)
from gateway.core.exchange import Exchange
from gateway.errors import UpstreamError
from gateway.hookspecs import hookimpl
from gateway.protocols.openai import chat as openai_chat
from gateway.protocols.openai import chat_response as openai_chat_response
from gateway.protocols.openai import embeddings as openai_embeddings
from gateway.protocols.openai.chat import PROTOCOL
from gateway.protocols.openai.chat_stream import DONE, StreamParser, stream_error
from gateway.streaming.sse import SSEDecoder, SSEFrame


@attrs.frozen
class OpenAIBackendConfig(HTTPBackendConfig):
    #: The field that carries a token limit translated from another protocol. Hosted OpenAI
    #: reasoning models accept only ``max_completion_tokens``; older servers only ``max_tokens``.
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"


class OpenAIBackend(Backend):
    kind = "openai"
    protocol = PROTOCOL

    def __init__(self, name: str, config: OpenAIBackendConfig, gateway: Any) -> None:
        super().__init__(name, config, gateway)
        headers = {"authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        self.upstream = Upstream(name, config, headers)

    async def start(self) -> None:
        await self.upstream.start()

    async def close(self) -> None:
        await self.upstream.close()

    def _body(self, req: ChatRequest) -> bytes:
        body = openai_chat.encode_request(
            req, req.upstream_model or req.model, max_tokens_field=self.config.max_tokens_field
        )
        return orjson.dumps(body)

    def _json(self, data: bytes) -> Any:
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamError(f"backend '{self.name}' answered with invalid JSON") from None
        if isinstance(obj, dict) and obj.get("error"):
            raise stream_error(obj)
        return obj

    async def embed(self, request: EmbeddingRequest, exchange: Exchange) -> EmbeddingResponse:
        body = openai_embeddings.encode_request(request, request.upstream_model or request.model)
        data = await self.upstream.post("/embeddings", orjson.dumps(body), exchange)
        return openai_embeddings.decode_response(self._json(data), data, request)

    async def complete(self, request: ChatRequest, exchange: Exchange) -> ChatResponse:
        data = await self.upstream.post("/chat/completions", self._body(request), exchange)
        resp = openai_chat_response.decode_response(self._json(data))
        if request.protocol == PROTOCOL:
            resp.raw, resp.raw_protocol = data, PROTOCOL
        return resp

    async def stream(self, request: ChatRequest, exchange: Exchange) -> AsyncIterator[Event]:
        relay = request.raw_relay and request.protocol == PROTOCOL
        async with self.upstream.stream("/chat/completions", self._body(request), exchange) as resp:
            # A relay nobody observes reads only the frames that end or fail the stream.
            skim = relay and not request.parse_relayed
            decoder = SSEDecoder(content_only if skim else None)
            state = _StreamState(relay)
            async for batch in self.upstream.sse_batches(
                resp,
                exchange,
                decoder,
                lambda frames: self._events(frames, state),
                PROTOCOL if relay else None,
            ):
                for ev in batch:
                    yield ev
                if type(batch[-1]) is Error:
                    return
            if not state.parser.finished:
                yield Error(
                    UpstreamError(
                        f"backend '{self.name}' closed the stream before finishing its answer"
                    )
                )
            elif relay and not state.done:
                yield Raw(DONE, PROTOCOL)

    def _events(self, frames: list[SSEFrame], state: _StreamState) -> list[Event]:
        """The canonical events of the frames one read completed; an error ends the list."""
        batch: list[Event] = []
        relay = state.relay
        for frame in frames:
            data = frame.data
            if data.startswith("[DONE]"):
                state.done = True
                continue
            try:
                obj = orjson.loads(data)
            except orjson.JSONDecodeError:
                batch.append(
                    Error(UpstreamError(f"backend '{self.name}' sent a malformed stream frame"))
                )
                break
            if not isinstance(obj, dict):
                continue
            if obj.get("error"):
                batch.append(Error(stream_error(obj), relayed=relay))
                break
            for ev in state.parser.feed(obj):
                ev.relayed = relay
                batch.append(ev)
        return batch


class _StreamState:
    """Where one upstream stream stands, across reads."""

    __slots__ = ("done", "parser", "relay")

    def __init__(self, relay: bool) -> None:
        self.relay = relay
        self.parser = StreamParser()
        self.done = False


def content_only(data: bytes) -> bool:
    """Whether a relayed ``chat.completion.chunk`` frame carries nothing but content.

    Such a frame neither ends the stream (``"finish_reason":null``), nor reports usage, nor is an
    error, so a relay that nobody observes need not parse it. The test is on the raw text: a
    quote inside a JSON string is escaped (``\\"``), so these patterns match only real keys;
    an upstream that writes its JSON differently (spaces after colons) is parsed in full.
    """
    return (
        b'"finish_reason":null' in data
        and b'"error"' not in data
        and (b'"usage"' not in data or b'"usage":null' in data)
    )


@hookimpl
def gateway_register_backends(register: Any) -> None:
    register("openai", OpenAIBackend, OpenAIBackendConfig)
