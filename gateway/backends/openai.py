"""The ``openai`` backend: any OpenAI-compatible upstream (vLLM, Ollama, llama.cpp, hosted APIs).

``base_url`` ends in ``/v1``, as the OpenAI SDK's does. A request that arrived through the OpenAI
protocol unchanged is sent as it came (unknown fields included) with the upstream model name, and
its stream is relayed in bulk as it arrives (the fast path), while the gateway still reads each
frame for usage, text and failures.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal

import aiohttp
import attrs
import msgspec
import orjson

from gateway import (
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    Exchange,
    FrameSkip,
    GatewayError,
    HTTPBackend,
    HTTPBackendConfig,
    hookimpl,
)
from gateway.protocols.openai import (
    COMPLETIONS,
    PROTOCOL,
    ChatStreamParser,
    CompletionStreamParser,
    chat_stream_error,
    decode_chat_response,
    decode_completion_response,
    decode_embedding_response,
    encode_chat_request,
    encode_completion_request,
    encode_embedding_request,
)


@attrs.frozen
class OpenAIBackendConfig(HTTPBackendConfig):
    #: The field that carries a token limit translated from another protocol. Hosted OpenAI
    #: reasoning models accept only ``max_completion_tokens``; older servers only ``max_tokens``.
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"


def content_only(data: bytes) -> bool:
    """Whether a relayed ``chat.completion.chunk`` frame carries nothing but content.

    Such a frame neither ends the stream (``"finish_reason":null``), nor reports usage, nor is an
    error, so a relay that nobody observes need not parse it. The test is on the raw text: a
    quote inside a JSON string is escaped (``\\"``), so these patterns match only real keys;
    an upstream that writes its JSON differently (spaces after colons) is parsed in full.
    """
    # find() rather than ``in``: with bytes, ``in`` first tries them as an integer (Python 3.11:
    # an exception raised and cleared), which costs twice the search.
    find = data.find
    return (
        find(b'"finish_reason":null') >= 0
        and find(b'"error"') < 0
        and (find(b'"usage"') < 0 or find(b'"usage":null') >= 0)
    )


class _ContentChoice(msgspec.Struct, gc=False):
    finish_reason: None = None


class _ContentChunk(msgspec.Struct, gc=False):
    """A ``chat.completion.chunk`` that carries only content: no finish, usage nor error (any
    of them not null fails to decode); its other fields are skipped, not built. Neither struct
    is tracked by the garbage collector (``gc=False``: they hold no containers but a list of
    the other, and live for one test), which makes each cheaper to make and free."""

    choices: list[_ContentChoice] | None = None
    usage: None = None
    error: None = None


_CONTENT_CHUNKS = msgspec.json.Decoder(list[_ContentChunk])


def content_chunks(array: bytes, count: int) -> bool:
    """Whether ``array``, a JSON array of ``count`` relayed frames' data, holds well-formed
    chunks that carry nothing but content (one pass of msgspec, which validates as it goes)."""
    try:
        return len(_CONTENT_CHUNKS.decode(array)) == count
    except msgspec.DecodeError:  # not JSON, or a chunk that ends, reports or fails
        return False


CONTENT_ONLY = FrameSkip(content_only, content_chunks)


class OpenAIBackend(HTTPBackend):
    kind = "openai"
    protocol = PROTOCOL
    chat_path = "/chat/completions"
    config: OpenAIBackendConfig

    def path(self, request: ChatRequest) -> str:
        return "/completions" if request.protocol == COMPLETIONS else self.chat_path

    def relays(self, request: ChatRequest) -> bool:
        return request.protocol == PROTOCOL or request.protocol == COMPLETIONS

    def encode_request(self, request: ChatRequest) -> bytes:
        if request.protocol == COMPLETIONS:
            model = request.upstream_model or request.model
            return orjson.dumps(encode_completion_request(request, model))
        body = encode_chat_request(
            request,
            request.upstream_model or request.model,
            max_tokens_field=self.config.max_tokens_field,
        )
        return orjson.dumps(body)

    def decode_response(self, obj: Any) -> ChatResponse:
        if isinstance(obj, dict) and obj.get("object") == "text_completion":
            return decode_completion_response(obj)
        return decode_chat_response(obj)

    def error(self, obj: dict[str, Any]) -> GatewayError | None:
        return chat_stream_error(obj) if obj.get("error") else None

    def stream_parser(self, request: ChatRequest) -> _Stream | _CompletionStream:
        return _CompletionStream() if request.protocol == COMPLETIONS else _Stream()

    def sentinel(self, data: str, parser: _Stream | _CompletionStream) -> bool:
        if data.startswith("[DONE]"):
            parser.done = True
            return True
        return False

    def unobserved(self) -> FrameSkip:
        return CONTENT_ONLY

    def stream_finished(self, parser: _Stream) -> bool:
        """An OpenAI stream ends with ``[DONE]``: one that closes without it was cut, even
        after its finish reason (the usage chunk may be what is missing)."""
        return parser.done

    def relay(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes | AsyncIterator[bytes] | None,
        exchange: Exchange,
    ) -> AbstractAsyncContextManager[aiohttp.ClientResponse]:
        """The OpenAI endpoints the gateway does not model, relayed to the upstream's."""
        return self.upstream.relay(method, path, headers, body, exchange)

    async def list_models(self, exchange: Exchange) -> list[str] | None:
        """The ids of the upstream's ``GET /models``."""
        return model_ids(self.json(await self.upstream.get("/models", exchange)))

    async def embed(self, request: EmbeddingRequest, exchange: Exchange) -> EmbeddingResponse:
        body = encode_embedding_request(request, request.upstream_model or request.model)
        data = await self.upstream.post("/embeddings", orjson.dumps(body), exchange)
        resp = decode_embedding_response(self.json(data), data, request)
        if resp.raw is not None:  # relayed as it came, but for the model: the name asked for
            resp.raw = self.renamed(resp.raw, request.model, resp.model)
        return resp


def model_ids(answer: Any) -> list[str]:
    """The ``id`` of each model of a model list (``{"data": [{"id": ...}, ...]}``)."""
    data = answer.get("data") if isinstance(answer, dict) else None
    return [m["id"] for m in data or () if isinstance(m, dict) and isinstance(m.get("id"), str)]


class _Stream(ChatStreamParser):
    """A ``chat.completion.chunk`` parser that also notes the ``[DONE]`` frame."""

    __slots__ = ("done",)
    protocol = PROTOCOL

    def __init__(self) -> None:
        super().__init__()
        self.done = False


class _CompletionStream(CompletionStreamParser):
    """A streamed ``text_completion`` parser (which notes ``[DONE]`` itself)."""

    __slots__ = ()
    protocol = COMPLETIONS


@hookimpl
def gateway_register_backends(register: Any) -> None:
    register("openai", OpenAIBackend, OpenAIBackendConfig)
