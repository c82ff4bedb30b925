"""The ``echo`` backend: the development default when nothing else is configured.

It answers with the last user message, streams it word by word and reports usage, so every
client and protocol path can be tried without a model. Responses carry
``x-hookgate-backend: echo:<name>`` and the startup log says loudly that echo is answering.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
import time
from collections.abc import AsyncGenerator
from typing import Any

import attrs

from gateway import (
    Backend,
    BackendConfig,
    BadRequest,
    ChatRequest,
    ChatResponse,
    Duration,
    EmbeddingRequest,
    EmbeddingResponse,
    Event,
    Exchange,
    Finish,
    Message,
    Start,
    TextDelta,
    TextPart,
    Usage,
    UsageEvent,
    hookimpl,
    new_id,
    request_tokens,
    text_tokens,
)
from gateway.protocols.openai import embedding_inputs

log = logging.getLogger(__name__)
#: The longest vector the echo backend makes (its work and answer grow with it).
MAX_DIMENSIONS = 8192
#: The most vector values (inputs times dimensions) one echo embeddings request makes.
MAX_VALUES = 1 << 20
_WORDS = re.compile(r"\S+\s*|\s+")


@attrs.frozen
class EchoConfig(BackendConfig):
    kind: str = "echo"
    #: Text put before the echoed message.
    prefix: str = ""
    #: Pause between streamed words (to watch a stream arrive).
    delay: Duration = Duration(0.0)


class EchoBackend(Backend):
    kind = "echo"

    def __init__(self, name: str, config: EchoConfig, gateway: Any) -> None:
        super().__init__(name, config, gateway)
        log.warning(
            "backend %r is the echo backend: answers repeat the prompt, no model is called", name
        )

    def _answer(self, req: ChatRequest) -> tuple[list[str], Usage, str]:
        """The words of the answer (at most ``max_tokens`` of them), its usage and why it
        finished."""
        words = _WORDS.findall(self.config.prefix + req.last_user_text())
        finish = "stop"
        if req.max_tokens is not None and len(words) > req.max_tokens:
            words, finish = words[: max(0, req.max_tokens)], "length"
        return words, Usage(request_tokens(req), text_tokens("".join(words))), finish

    async def complete(self, request: ChatRequest, exchange: Exchange) -> ChatResponse:
        words, usage, finish = self._answer(request)
        return ChatResponse(
            id=new_id("chatcmpl-"),
            model=request.upstream_model or request.model,
            message=Message("assistant", [TextPart("".join(words))]),
            finish_reason=finish,
            usage=usage,
            created=int(time.time()),
        )

    async def embed(self, request: EmbeddingRequest, exchange: Exchange) -> EmbeddingResponse:
        """Deterministic unit vectors drawn from a hash of each input (same input, same
        vector), ``dimensions`` long (16 by default): for trying clients, not for meaning."""
        size = request.dimensions or 16
        if size > MAX_DIMENSIONS:
            raise BadRequest(
                f"'dimensions' is at most {MAX_DIMENSIONS} on the echo backend.", param="dimensions"
            )
        items = list(embedding_inputs(request))
        if len(items) * size > MAX_VALUES:
            raise BadRequest(
                f"The echo backend makes at most {MAX_VALUES} values per request "
                f"({len(items)} inputs of {size} dimensions asked).",
                param="input",
            )
        vectors, tokens = [], 0
        for item in items:
            text = item if isinstance(item, str) else " ".join(map(str, item))
            tokens += text_tokens(text) if isinstance(item, str) else len(item)
            seed = hashlib.sha256(text.encode()).digest()
            raw = [
                b - 127.5
                for i in range(0, size, 32)
                for b in hashlib.sha256(seed + i.to_bytes(4, "little")).digest()
            ][:size]
            norm = math.sqrt(sum(x * x for x in raw)) or 1.0
            vectors.append([x / norm for x in raw])
        return EmbeddingResponse(
            model=request.upstream_model or request.model,
            vectors=vectors,
            usage=Usage(tokens, 0),
        )

    async def stream(self, request: ChatRequest, exchange: Exchange) -> AsyncGenerator[Event, None]:
        words, usage, finish = self._answer(request)
        yield Start(new_id("chatcmpl-"), request.upstream_model or request.model, int(time.time()))
        delay = self.config.delay
        for word in words:
            if delay:
                await asyncio.sleep(delay)
            yield TextDelta(word)
        yield UsageEvent(usage)
        yield Finish(finish)


@hookimpl
def gateway_register_backends(register: Any) -> None:
    register("echo", EchoBackend, EchoConfig)
