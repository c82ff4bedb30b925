"""The W3C trace context an exchange's upstream requests carry (``Exchange.trace_context``),
as header lines (the lean client's path) and as headers (aiohttp's, for https upstreams)."""

from __future__ import annotations

import pytest

from gateway import Exchange, trace_headers, trace_lines, traceparent
from gateway.backends.http import HTTPBackendConfig
from gateway.backends.lean_client import encode_headers
from gateway.backends.upstream import Upstream, _request_headers
from gateway.exchange import UNKNOWN_ROUTE

TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
SPAN_ID = 0x00F067AA0BA902B7


def test_traceparent_is_w3c():
    assert traceparent(TRACE_ID, SPAN_ID, 1) == (
        "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"
    )
    assert traceparent(1, 2, 0) == f"00-{1:032x}-{2:016x}-00"


@pytest.mark.parametrize("flags", [0, 1, 255])
@pytest.mark.parametrize("state", ["", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"])
def test_lines_are_the_headers_encoded(flags, state):
    context = (TRACE_ID, SPAN_ID, flags, state)
    assert trace_lines(context) == encode_headers(trace_headers(context).items())
    assert ("tracestate" in trace_headers(context)) is bool(state)


@pytest.mark.parametrize("state", ["a=1\r\nx-evil: 1", "a=1\n", "a=\0", "a=é"])
def test_a_state_that_would_break_the_head_is_left_out(state):
    lines = trace_lines((TRACE_ID, SPAN_ID, 1, state))
    assert lines == b"traceparent: " + traceparent(TRACE_ID, SPAN_ID, 1).encode() + b"\r\n"


def _upstream(**headers: str) -> Upstream:
    config = HTTPBackendConfig(kind="openai", base_url="http://127.0.0.1:1/v1", headers=headers)
    return Upstream("up", config, {"authorization": "Bearer backend"})


def test_upstream_requests_carry_the_context_with_the_other_headers():
    ex = Exchange("req-1", UNKNOWN_ROUTE)
    ex.trace_context = (TRACE_ID, SPAN_ID, 1, "k=v")
    ex.upstream_headers = {"x-plugin": "yes"}
    lines, replaces = _upstream()._own_headers(ex, {"x-extra": "1"})
    assert lines.endswith(b"x-request-id: req-1\r\n")
    assert sorted(lines.split(b"\r\n")) == sorted(
        [
            b"traceparent: " + traceparent(TRACE_ID, SPAN_ID, 1).encode(),
            b"tracestate: k=v",
            b"x-plugin: yes",
            b"x-extra: 1",
            b"x-request-id: req-1",
            b"",
        ]
    )
    assert not replaces
    assert _request_headers(ex, {"x-extra": "1"}) == {
        "traceparent": traceparent(TRACE_ID, SPAN_ID, 1),
        "tracestate": "k=v",
        "x-plugin": "yes",
        "x-extra": "1",
        "x-request-id": "req-1",
    }


def test_without_a_context_nothing_is_added():
    ex = Exchange("req-2", UNKNOWN_ROUTE)
    assert _upstream()._own_headers(ex, None) == (b"x-request-id: req-2\r\n", ())
    assert _request_headers(ex, None) == {"x-request-id": "req-2"}


def test_one_header_of_each_name_the_gateways_own_kept():
    """A plugin's headers, then the call's, whatever their case; the backend's of the same
    name left out of the lean client's head; the request id, the trace context and the body's
    framing the gateway's."""
    ex = Exchange("req-3", UNKNOWN_ROUTE)
    ex.trace_context = (TRACE_ID, SPAN_ID, 1, "")
    ex.upstream_headers = {
        "Authorization": "Bearer tenant",
        "X-Team": "red",
        "X-Request-ID": "forged",
        "TraceParent": "00-forged",
        "Content-Length": "1",
        "Transfer-Encoding": "chunked",
    }
    upstream = _upstream(**{"x-team": "blue", "x-kept": "1"})
    lines, replaces = upstream._own_headers(ex, {"x-team": "green"})
    assert set(lines.split(b"\r\n")) == {
        b"Authorization: Bearer tenant",
        b"x-team: green",
        b"traceparent: " + traceparent(TRACE_ID, SPAN_ID, 1).encode(),
        b"x-request-id: req-3",
        b"",
    }
    assert replaces == {"authorization", "x-team"}
    assert _request_headers(ex, {"x-team": "green"}) == {
        "Authorization": "Bearer tenant",
        "x-team": "green",
        "traceparent": traceparent(TRACE_ID, SPAN_ID, 1),
        "x-request-id": "req-3",
    }
