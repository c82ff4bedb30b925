"""hookgate: a plugin-based gateway between LLM and agent clients and model backends.

The names here are the stable API for plugins and embedders.
"""

from __future__ import annotations

__version__ = "0.2.0"

from gateway.auth.base import Authenticator
from gateway.backends.base import Backend
from gateway.canonical import (
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    Error,
    Event,
    Finish,
    ImagePart,
    Message,
    Raw,
    ReasoningDelta,
    ReasoningPart,
    Start,
    TextDelta,
    TextPart,
    Tool,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallPart,
    ToolCallStart,
    ToolChoice,
    ToolResult,
    ToolResultPart,
    ToolRunDelta,
    ToolRunEnd,
    ToolRunStart,
    Usage,
    UsageEvent,
)
from gateway.config.sections import BackendConfig, Config
from gateway.config.types import ByteSize, Count, Duration, Url
from gateway.core.app import GATEWAY, Gateway, create_app, init_app
from gateway.core.filters import Filter, Outcome
from gateway.core.loading import load
from gateway.core.registry import Register
from gateway.errors import ConfigError, GatewayError
from gateway.exchange import EXCHANGE, Exchange, Principal
from gateway.hookspecs import hookimpl
from gateway.protocols.base import ProtocolAdapter

__all__ = [
    "EXCHANGE",
    "GATEWAY",
    "Authenticator",
    "Backend",
    "BackendConfig",
    "ByteSize",
    "ChatRequest",
    "ChatResponse",
    "Config",
    "ConfigError",
    "Count",
    "Duration",
    "EmbeddingRequest",
    "EmbeddingResponse",
    "Error",
    "Event",
    "Exchange",
    "Filter",
    "Finish",
    "Gateway",
    "GatewayError",
    "ImagePart",
    "Message",
    "Outcome",
    "Principal",
    "ProtocolAdapter",
    "Raw",
    "ReasoningDelta",
    "ReasoningPart",
    "Register",
    "Start",
    "TextDelta",
    "TextPart",
    "Tool",
    "ToolCallDelta",
    "ToolCallEnd",
    "ToolCallPart",
    "ToolCallStart",
    "ToolChoice",
    "ToolResult",
    "ToolResultPart",
    "ToolRunDelta",
    "ToolRunEnd",
    "ToolRunStart",
    "Url",
    "Usage",
    "UsageEvent",
    "create_app",
    "hookimpl",
    "init_app",
    "load",
]
