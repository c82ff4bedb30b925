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

    def _answer(self, req: ChatRequest) -> tuple[str, Usage]:
        text = self.config.prefix + req.last_user_text()
        prompt = request_tokens(req)
        return text, Usage(prompt, text_tokens(text))

    async def complete(self, request: ChatRequest, exchange: Exchange) -> ChatResponse:
        text, usage = self._answer(request)
        return ChatResponse(
            id=new_id("chatcmpl-"),
            model=request.upstream_model or request.model,
            message=Message("assistant", [TextPart(text)]),
            finish_reason="stop",
            usage=usage,
            created=int(time.time()),
        )

    async def embed(self, request: EmbeddingRequest, exchange: Exchange) -> EmbeddingResponse:
        """Deterministic unit vectors drawn from a hash of each input (same input, same
        vector), ``dimensions`` long (16 by default): for trying clients, not for meaning."""
        size = request.dimensions or 16
        vectors, tokens = [], 0
        for item in embedding_inputs(request):
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
        text, usage = self._answer(request)
        yield Start(new_id("chatcmpl-"), request.upstream_model or request.model, int(time.time()))
        delay = self.config.delay
        for word in _WORDS.findall(text):
            if delay:
                await asyncio.sleep(delay)
            yield TextDelta(word)
        yield UsageEvent(usage)
        yield Finish("stop")


@hookimpl
def gateway_register_backends(register: Any) -> None:
    register("echo", EchoBackend, EchoConfig)
