"""The OpenAI protocol: Chat Completions, legacy Completions, models and embeddings
(:mod:`.adapter`) and the
Responses API (:mod:`.responses_adapter`), with their wire formats beside them.

Its wire formats are public: a backend for an OpenAI-compatible upstream uses the names below.
"""

from __future__ import annotations

from gateway.protocols.openai.chat import PROTOCOL, encode_messages, error_body
from gateway.protocols.openai.chat import decode_request as decode_chat_request
from gateway.protocols.openai.chat import encode_request as encode_chat_request
from gateway.protocols.openai.chat_response import decode_response as decode_chat_response
from gateway.protocols.openai.chat_response import encode_response as encode_chat_response
from gateway.protocols.openai.chat_stream import DONE, ChunkEncoder
from gateway.protocols.openai.chat_stream import StreamParser as ChatStreamParser
from gateway.protocols.openai.chat_stream import stream_error as chat_stream_error
from gateway.protocols.openai.completions import COMPLETIONS
from gateway.protocols.openai.completions import StreamParser as CompletionStreamParser
from gateway.protocols.openai.completions import decode_response as decode_completion_response
from gateway.protocols.openai.completions import encode_request as encode_completion_request
from gateway.protocols.openai.embeddings import decode_request as decode_embedding_request
from gateway.protocols.openai.embeddings import decode_response as decode_embedding_response
from gateway.protocols.openai.embeddings import encode_request as encode_embedding_request
from gateway.protocols.openai.embeddings import encode_response as encode_embedding_response
from gateway.protocols.openai.embeddings import texts as embedding_inputs
from gateway.protocols.openai.responses import PROTOCOL as RESPONSES_PROTOCOL
from gateway.protocols.openai.responses_upstream import StreamParser as ResponsesStreamParser
from gateway.protocols.openai.responses_upstream import decode_response as decode_responses_response
from gateway.protocols.openai.responses_upstream import encode_request as encode_responses_request
from gateway.protocols.openai.responses_upstream import stream_error as responses_stream_error

__all__ = [
    "COMPLETIONS",
    "DONE",
    "PROTOCOL",
    "RESPONSES_PROTOCOL",
    "ChatStreamParser",
    "ChunkEncoder",
    "CompletionStreamParser",
    "ResponsesStreamParser",
    "chat_stream_error",
    "decode_chat_request",
    "decode_chat_response",
    "decode_completion_response",
    "decode_embedding_request",
    "decode_embedding_response",
    "decode_responses_response",
    "embedding_inputs",
    "encode_chat_request",
    "encode_chat_response",
    "encode_completion_request",
    "encode_embedding_request",
    "encode_embedding_response",
    "encode_messages",
    "encode_responses_request",
    "error_body",
    "responses_stream_error",
]
