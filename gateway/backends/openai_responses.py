"""The ``openai_responses`` backend: an upstream that speaks OpenAI's Responses API
(``POST <base_url>/responses``): OpenAI itself, or a server that implements it.

Responses clients are relayed: their request goes as they sent it (the gateway's own state
resolved first, the model replaced), so custom, namespaced and hosted tools, ``input_file``
parts and reasoning items reach the model. Other clients are translated. Answers are read into
canonical events, so the gateway keeps, meters and re-encodes them like any other.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway import (
    ChatRequest,
    ChatResponse,
    GatewayError,
    HTTPBackend,
    HTTPBackendConfig,
    hookimpl,
)
from gateway.protocols.openai import (
    RESPONSES_PROTOCOL,
    ResponsesStreamParser,
    decode_responses_response,
    encode_responses_request,
    responses_stream_error,
)


class OpenAIResponsesBackend(HTTPBackend):
    kind = "openai_responses"
    protocol = RESPONSES_PROTOCOL
    chat_path = "/responses"

    def encode_request(self, request: ChatRequest) -> bytes:
        return orjson.dumps(
            encode_responses_request(request, request.upstream_model or request.model)
        )

    def decode_response(self, obj: Any) -> ChatResponse:
        return decode_responses_response(obj)

    def error(self, obj: dict[str, Any]) -> GatewayError | None:
        return responses_stream_error(obj)

    def stream_parser(self, request: ChatRequest) -> ResponsesStreamParser:
        return ResponsesStreamParser()


@hookimpl
def gateway_register_backends(register: Any) -> None:
    register("openai_responses", OpenAIResponsesBackend, HTTPBackendConfig)
