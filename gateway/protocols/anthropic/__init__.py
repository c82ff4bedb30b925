"""The Anthropic Messages protocol: the adapter (:mod:`.adapter`) and its wire formats
(:mod:`.messages`, :mod:`.response`, :mod:`.stream`).

Its wire formats are public: a backend for an Anthropic upstream uses the names below.
"""

from __future__ import annotations

from gateway.protocols.anthropic.messages import (
    OUTPUT_TOOL,
    PROTOCOL,
    decode_request,
    encode_request,
    output_schema,
)
from gateway.protocols.anthropic.response import (
    decode_response,
    encode_response,
    error_body,
    stream_error,
    unwrap_output_tool,
)
from gateway.protocols.anthropic.stream import MessageEncoder, OutputToolParser, StreamParser

__all__ = [
    "OUTPUT_TOOL",
    "PROTOCOL",
    "MessageEncoder",
    "OutputToolParser",
    "StreamParser",
    "decode_request",
    "decode_response",
    "encode_request",
    "encode_response",
    "error_body",
    "output_schema",
    "stream_error",
    "unwrap_output_tool",
]
