"""A backend kind for an HTTP upstream with an SSE API of its own, on ``gateway.HTTPBackend``.

The made-up "tokenstream" upstream takes ``POST <base_url>/generate`` with ``{"model",
"prompt", "max_tokens"}`` and the key in ``x-api-key``, and streams ``data: {"text": ...}``
frames, then ``data: {"reason", "tokens_in", "tokens_out"}``; a failure is ``data: {"error":
{"message": ...}}``. ``HTTPBackend`` does the rest: the pooled client, timeouts, error statuses,
reading whole frames, non-streamed answers folded from the stream::

    [backends.tokens]
    kind = "tokenstream"
    base_url = "http://127.0.0.1:9000/api"
    api_key = "${TOKENSTREAM_KEY}"
    max_tokens = 512

    [models.small]
    backend = "tokens"
    upstream_model = "ts-small"
"""

from __future__ import annotations

from typing import Any

import attrs
import orjson

from gateway import (
    ChatRequest,
    Count,
    Event,
    Finish,
    GatewayError,
    HTTPBackend,
    HTTPBackendConfig,
    RegisterBackend,
    Start,
    TextDelta,
    UpstreamError,
    Usage,
    UsageEvent,
    hookimpl,
)


@attrs.frozen
class TokenStreamConfig(HTTPBackendConfig):
    """``[backends.<name>] kind = "tokenstream"``: base_url, api_key, timeouts, and this."""

    #: Tokens to generate when the client does not say.
    max_tokens: Count = Count(256)


class TokenParser:
    """One answer's frames as canonical events (a ``gateway.StreamParser``)."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.finished = False  # a stream that closes before its end frame is a failure
        self.started = False

    def feed(self, obj: dict[str, Any]) -> list[Event]:
        events: list[Event] = []
        if not self.started:
            self.started = True
            events.append(Start(model=self.model))
        if "text" in obj:
            events.append(TextDelta(obj["text"]))
        elif "reason" in obj:
            self.finished = True
            usage = Usage(input_tokens=obj["tokens_in"], output_tokens=obj["tokens_out"])
            reason = "length" if obj["reason"] == "max_tokens" else "stop"
            events += [UsageEvent(usage), Finish(reason)]
        return events


class TokenStreamBackend(HTTPBackend):
    config: TokenStreamConfig
    chat_path = "/generate"

    def auth_headers(self) -> dict[str, str]:
        return {"x-api-key": self.config.api_key} if self.config.api_key else {}

    def encode_request(self, request: ChatRequest) -> bytes:
        prompt = "\n".join(f"{m.role}: {m.text()}" for m in request.messages)
        max_tokens = request.max_tokens or int(self.config.max_tokens)
        return orjson.dumps(
            {"model": request.upstream_model, "prompt": prompt, "max_tokens": max_tokens}
        )

    def stream_parser(self, request: ChatRequest) -> TokenParser:
        return TokenParser(request.upstream_model or request.model)

    def error(self, obj: dict[str, Any]) -> GatewayError | None:
        err = obj.get("error")
        return UpstreamError(f"tokenstream: {err['message']}") if isinstance(err, dict) else None


@hookimpl
def gateway_register_backends(register: RegisterBackend) -> None:
    register("tokenstream", TokenStreamBackend, TokenStreamConfig)
