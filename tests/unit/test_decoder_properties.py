"""Property tests of the body decoders that no published schema covers (Anthropic Messages,
AG-UI RunAgentInput, A2A messages and JSON-RPC envelopes): whatever JSON arrives, a decoder
answers with the request or with the protocol's 4xx error, never with another exception."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import GatewayError
from gateway.protocols.a2a import wire
from gateway.protocols.a2a.jsonrpc import envelope
from gateway.protocols.agui.events import decode_run_input
from gateway.protocols.anthropic.messages import decode_request as decode_messages
from gateway.protocols.openai.chat import decode_request as decode_chat
from gateway.protocols.openai.responses import decode_request as decode_responses

SETTINGS = settings(
    max_examples=120, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)

#: Bodies reach the decoders parsed by ``orjson.loads`` (``read_json``), whose integers fit in
#: 64 bits: a longer one arrives as a float (see ``test_json_bodies_hold_no_integer_past_64_bits``).
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
    | st.sampled_from(["user", "assistant", "tool", "ROLE_USER", "text", "image", "auto", ""])
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=16,
)

VALID: dict[str, Any] = {
    "messages": {
        "model": "m",
        "max_tokens": 5,
        "system": [{"type": "text", "text": "s"}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t", "content": "r"}],
            },
        ],
        "tools": [{"name": "f", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "f"},
        "stream": True,
        "metadata": {"user_id": "u"},
        "stop_sequences": ["x"],
    },
    "agui": {
        "threadId": "t",
        "runId": "r",
        "state": {},
        "messages": [
            {"id": "m", "role": "user", "content": "hi"},
            {
                "id": "a",
                "role": "assistant",
                "content": "x",
                "toolCalls": [
                    {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"id": "t", "role": "tool", "toolCallId": "c", "content": "r"},
        ],
        "tools": [{"name": "f", "description": "d", "parameters": {}}],
        "context": [{"description": "d", "value": "v"}],
        "forwardedProps": {"agent": "a"},
    },
    "a2a": {
        "messageId": "m",
        "role": "ROLE_USER",
        "parts": [
            {"text": "hi"},
            {"data": {"a": 1}},
            {"url": "http://x/y.png", "mediaType": "image/png"},
        ],
        "contextId": "c",
        "metadata": {},
    },
    "rpc": {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": {}}},
    "chat": {
        "model": "m",
        "n": 1,
        "stream_options": {"include_usage": True},
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi"}], "name": "a"},
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c", "content": "r"},
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
    },
    "responses": {
        "model": "m",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": "x"},
        ],
        "tools": [{"type": "function", "name": "f", "parameters": {}}],
        "tool_choice": {"type": "function", "name": "f"},
    },
}


def _paths(obj: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [at]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*at, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*at, i))
    return out


@st.composite
def mutated(draw: st.DrawFn, name: str) -> Any:
    """The valid body of ``name`` with one value anywhere in it replaced by any JSON."""
    body = copy.deepcopy(VALID[name])
    path = draw(st.sampled_from(_paths(body)))
    value = draw(values)
    if not path:
        return value
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return body


def _only_protocol_errors(decode: Callable[[Any], Any], body: Any) -> None:
    try:
        decode(body)
    except GatewayError as err:
        assert 400 <= err.status < 500, err


DECODERS: dict[str, list[Callable[[Any], Any]]] = {
    "messages": [decode_messages, lambda b: decode_messages(b, counting=True)],
    "agui": [decode_run_input],
    "a2a": [lambda b: wire.decode_message(b, wire.V1), lambda b: wire.decode_message(b, wire.V03)],
    "rpc": [envelope],
    "chat": [decode_chat],
    "responses": [decode_responses],
}


@pytest.mark.parametrize("name", list(DECODERS))
@SETTINGS
@given(data=st.data())
def test_a_valid_body_changed_anywhere(name, data):
    body = data.draw(mutated(name))
    for decode in DECODERS[name]:
        _only_protocol_errors(decode, body)


@settings(max_examples=100, deadline=None, database=None)
@given(body=values)
def test_any_json_at_all(body):
    for decoders in DECODERS.values():
        for decode in decoders:
            _only_protocol_errors(decode, body)


def test_json_bodies_hold_no_integer_past_64_bits():
    """The bound on the integers above: what ``orjson.loads`` makes of longer ones."""
    body = orjson.loads(
        b'{"a": 36893488147419103232, "b": -18446744073709551617, "c": 18446744073709551615}'
    )
    assert body == {"a": 2.0**65, "b": -(2.0**64), "c": 2**64 - 1}
    assert isinstance(body["a"], float) and isinstance(body["b"], float)
