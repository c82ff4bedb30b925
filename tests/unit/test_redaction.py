"""The one place that decides what of an upstream's failure a client is told, and what of a
request's query string a log may hold."""

from __future__ import annotations

import logging

import pytest

from gateway.errors import BadRequest, RateLimited, UpstreamError, upstream_error
from gateway.redaction import RedactingFilter, redact, redact_query, redact_url


@pytest.mark.parametrize(
    "secret",
    [
        "sk-proj-abc123DEF456",
        "sk-ant-api03-xyz",
        "Bearer abc.def.ghi",
        "postgres://user:pa55word@db:5432/x",
        "https://example.com/path?q=1",
        "admin:pa55word@db.internal",
        "api_key=pa55word",
        '"password": "pa55word"',
        "ghp_0123456789abcdef",
        "xoxb-123-456-abc",
        "AKIAABCDEFGHIJKLMNOP",
        "a" * 40,
    ],
)
def test_redact_removes_credential_and_url_shapes(secret):
    clean = redact(f"failed with {secret} here")
    assert clean is not None and "[redacted]" in clean
    for piece in ("pa55word", "abc123DEF456", "api03", "abc.def", "example.com", "0123456789a"):
        assert piece not in clean


def test_a_traceback_is_dropped_whole():
    assert redact('Traceback (most recent call last):\n  File "x.py", line 1\nBoom') is None
    assert redact("the answer is 42") == "the answer is 42"


def test_upstream_errors_are_told_in_the_gateways_words():
    body = b'{"error": {"message": "Incorrect API key sk-abcdef123", "type": "invalid_request_error", "code": "invalid_api_key"}}'
    err = upstream_error(401, body, backend="up")
    assert isinstance(err, UpstreamError) and err.status == 502
    assert "refused the gateway's credentials" in err.message and "sk-" not in err.message
    assert "status 401" in err.message and err.code == "invalid_api_key"

    ctx = b'{"error": {"message": "maximum context length is 10 tokens, see https://x.y/z", "code": "context_length_exceeded"}}'
    err = upstream_error(400, ctx, backend="up")
    assert isinstance(err, BadRequest) and err.status == 400
    assert "maximum context length is 10 tokens" in err.message and "x.y" not in err.message

    err = upstream_error(422, b'{"detail": "field foo at postgres://u:p@h/db"}')
    assert err.status == 422 and "postgres" not in err.message and "foo" not in err.message

    err = upstream_error(429, b"slow down", retry_after=3)
    assert isinstance(err, RateLimited) and err.retry_after == 3

    err = upstream_error(500, b'Traceback (most recent call last):\n File "a", line 1')
    assert err.status == 502 and "Traceback" not in err.message

    # In a stream the upstream's type decides; a code that is not an identifier is dropped.
    err = upstream_error(None, {"type": "error", "error": {"type": "overloaded_error"}})
    assert err.status == 529 or err.status == 503
    err = upstream_error(None, {"error": {"message": "x", "code": "sk-abcdef0123"}})
    assert err.code is None and "sk-" not in err.message


def test_query_tokens_are_redacted_in_logs():
    line = 'GET /agui/ws?x=1&token=sk-secret&api_key=k2 HTTP/1.1" 200'
    assert (
        redact_query(line) == 'GET /agui/ws?x=1&token=[redacted]&api_key=[redacted] HTTP/1.1" 200'
    )
    record = logging.LogRecord("a", logging.INFO, "f", 1, "%s %s", ("GET", "/?token=abc"), None)
    assert RedactingFilter().filter(record)
    assert record.getMessage() == "GET /?token=[redacted]"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://partner.example/a2a/research", "https://partner.example/a2a/research"),
        ("http://svc:pw-123@10.0.0.5:8080/a2a/x", "http://[redacted]@10.0.0.5:8080/a2a/x"),
        ("https://tok-only@h.example/p", "https://[redacted]@h.example/p"),
        ("https://h.example/rpc?sig=abc&x=1#frag", "https://h.example/rpc?[redacted]#[redacted]"),
        ("http://[::1]:9000/a", "http://[::1]:9000/a"),
        ("not a url", "[redacted]"),
        ("http://h.example:99999/", "[redacted]"),
    ],
)
def test_a_url_in_a_log_keeps_its_host_and_path_only(url, shown):
    assert redact_url(url) == shown
