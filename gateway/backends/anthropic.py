"""The ``anthropic`` backend: an upstream that speaks Anthropic Messages.

``base_url`` is the bare host (``https://api.anthropic.com``), as the anthropic SDK's is; the
gateway adds ``/v1/messages``. Requests carry ``x-api-key`` and the configured
``anthropic-version``. A request that arrived through the Anthropic protocol unchanged is sent as
it came (unknown fields and the client's ``anthropic-beta`` included) and its stream is relayed
as whole frames as they arrive (the fast path); requests from other protocols are translated,
with the configured ``max_tokens`` when theirs has none.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import attrs
import orjson

from gateway import (
    ChatRequest,
    ChatResponse,
    Count,
    Exchange,
    GatewayError,
    HTTPBackend,
    HTTPBackendConfig,
    UpstreamError,
    hookimpl,
)
from gateway.protocols.anthropic import (
    PROTOCOL,
    OutputToolParser,
    StreamParser,
    decode_response,
    encode_request,
    output_schema,
    stream_error,
    unwrap_output_tool,
)

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
    #: How a JSON output format asked in another protocol (OpenAI ``response_format``,
    #: Responses ``text.format``) reaches the upstream: ``native`` as ``output_config.format``
    #: (Anthropic's structured outputs), or ``tool`` as a forced tool whose input is the JSON,
    #: given back to the client as the answer's text (for Anthropic-compatible servers and
    #: models without structured outputs).
    structured_output: Literal["native", "tool"] = "native"
    #: Anthropic continues an answer from a trailing assistant message.
    accepts_prefill: bool = True


class AnthropicBackend(HTTPBackend):
    kind = "anthropic"
    protocol = PROTOCOL
    chat_path = MESSAGES
    config: AnthropicBackendConfig

    def __init__(self, name: str, config: AnthropicBackendConfig, gateway: Any) -> None:
        if str(config.base_url).endswith("/v1"):
            raise ValueError(
                "base_url is the bare host for the anthropic kind, as in the anthropic SDK "
                f"(drop the trailing /v1: {str(config.base_url)[:-3]!r})"
            )
        super().__init__(name, config, gateway)
        if type(self).error is AnthropicBackend.error:
            self._error_type = "error"  # the only frames error() looks into
        #: Betas the configuration always asks for; a client's are added to them.
        self._betas = next(
            (v for k, v in config.headers.items() if k.lower() == "anthropic-beta"), None
        )

    def auth_headers(self) -> dict[str, str]:
        headers = {"anthropic-version": self.config.version}
        if self.config.api_key:
            headers["x-api-key"] = self.config.api_key
        return headers

    def request_headers(self, request: ChatRequest) -> Mapping[str, str] | None:
        """The client's ``anthropic-beta`` (Anthropic clients only)."""
        if not request.headers or request.protocol != PROTOCOL:
            return None
        beta = request.headers.get("anthropic-beta")
        if beta and self._betas:
            return {"anthropic-beta": f"{self._betas},{beta}"}
        return request.headers

    def encode_request(self, request: ChatRequest) -> bytes:
        model = request.upstream_model or request.model
        config = self.config
        body = encode_request(request, model, config.max_tokens, config.structured_output)
        return orjson.dumps(body)

    def decode_response(self, obj: Any) -> ChatResponse:
        return decode_response(obj)

    def _output_tool(self, request: ChatRequest) -> bool:
        """Whether ``request``'s JSON output format goes upstream as a forced tool."""
        return (
            self.config.structured_output == "tool"
            and request.protocol != PROTOCOL
            and output_schema(request.response_format) is not None
        )

    async def complete(self, request: ChatRequest, exchange: Exchange) -> ChatResponse:
        resp = await super().complete(request, exchange)
        return unwrap_output_tool(resp) if self._output_tool(request) else resp

    def error(self, obj: dict[str, Any]) -> GatewayError | None:
        return stream_error(obj) if obj.get("type") == "error" else None

    def stream_parser(self, request: ChatRequest) -> StreamParser:
        return OutputToolParser() if self._output_tool(request) else StreamParser()

    async def list_models(self, exchange: Exchange) -> list[str] | None:
        """The ids of the upstream's ``GET /v1/models`` (its first thousand)."""
        answer = self.json(await self.upstream.get("/v1/models?limit=1000", exchange))
        data = answer.get("data") if isinstance(answer, dict) else None
        return [m["id"] for m in data or () if isinstance(m, dict) and isinstance(m.get("id"), str)]

    async def count_tokens(self, request: ChatRequest, exchange: Exchange) -> int | None:
        """The upstream's own count (exact for its model)."""
        body = encode_request(
            request, request.upstream_model or request.model, self.config.max_tokens
        )
        for key in _NOT_COUNTED:
            body.pop(key, None)
        data = await self.upstream.post(
            COUNT_TOKENS, orjson.dumps(body), exchange, self.request_headers(request)
        )
        answer = self.json(data)
        count = answer.get("input_tokens") if isinstance(answer, dict) else None
        if not isinstance(count, int):
            raise UpstreamError(f"backend '{self.name}' answered count_tokens without a count")
        return count


@hookimpl
def gateway_register_backends(register: Any) -> None:
    register("anthropic", AnthropicBackend, AnthropicBackendConfig)
