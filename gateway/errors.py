"""Errors the gateway reports to clients, and the error of an invalid configuration.

Each error has an HTTP status and a protocol-neutral ``kind``; every protocol adapter turns it
into its own error shape (see ``error_body`` in each adapter). Messages are written for the
client: no stack traces, no upstream URLs, no secrets.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, ClassVar

import orjson

from gateway.redaction import redact


class GatewayError(Exception):
    """An error with a status, a kind and a client-facing message."""

    #: The class's HTTP status; one error may carry another (an upstream's 422, say).
    status: int = 500
    kind: ClassVar[str] = "internal"
    #: For an upstream's failure: the status it answered with, when it answered one.
    upstream_status: int | None = None
    #: For an upstream's failure: the code (or type) its error body gave, if any.
    upstream_code: str | None = None
    #: For an upstream's failure: what went wrong, as routing classifies it (``"connect"``,
    #: ``"reset"``, ``"timeout"``, ``"stream"``, ...; see :mod:`gateway.routing.failures`),
    #: when the transport knows; otherwise routing decides from the status and message.
    failure: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.retry_after = retry_after
        if status is not None:
            self.status = status

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}, {self.message!r})"


class BadRequest(GatewayError):
    status = 400
    kind = "invalid_request"


class Unauthorized(GatewayError):
    status = 401
    kind = "authentication"


class Forbidden(GatewayError):
    status = 403
    kind = "permission"


class NotFound(GatewayError):
    status = 404
    kind = "not_found"


class PayloadTooLarge(GatewayError):
    status = 413
    kind = "too_large"


class Unprocessable(GatewayError):
    status = 422
    kind = "invalid_request"


class RateLimited(GatewayError):
    status = 429
    kind = "rate_limit"


class UpstreamError(GatewayError):
    """The upstream failed: refused, closed, or answered with an error (status mapped)."""

    status = 502
    kind = "upstream"


class Overloaded(GatewayError):
    """The upstream says it is overloaded (Anthropic 529, OpenAI-compatible 503)."""

    status = 503
    kind = "overloaded"


class Unavailable(GatewayError):
    """A dependency of the gateway itself (e.g. the state store) is unreachable."""

    status = 503
    kind = "unavailable"


class UpstreamTimeout(GatewayError):
    status = 504
    kind = "timeout"


_BY_UPSTREAM_STATUS: dict[int, type[GatewayError]] = {
    400: BadRequest,
    404: NotFound,
    408: UpstreamTimeout,
    409: BadRequest,
    413: PayloadTooLarge,
    422: Unprocessable,
    429: RateLimited,
    503: Overloaded,
    504: UpstreamTimeout,
    529: Overloaded,
}


def from_upstream_status(
    status: int, message: str, *, retry_after: float | None = None
) -> GatewayError:
    """Map an upstream's error status and message to the error the client sees (see
    :func:`upstream_error`, which this is for a message without an error object)."""
    return upstream_error(status, {"message": message}, retry_after=retry_after)


#: Error types and codes whose message explains what the client can change (a prompt too long
#: for the model, content refused by a policy): the only upstream messages a client is shown.
_EXPLAINED = re.compile(
    r"context.?length|context.?window|too.?many.?tokens|prompt.?is.?too.?long|max_tokens|"
    r"maximum.?context|token.?limit|content.?policy|content.?filter|content.?management|"
    r"safety|moderation|flagged",
    re.IGNORECASE,
)
_IDENTIFIER = re.compile(r"[A-Za-z0-9_.\-\[\]]{1,64}")
#: Upstream error types (Anthropic's, OpenAI's) that say what went wrong in a stream, which has
#: no status of its own.
_BY_UPSTREAM_TYPE: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "overloaded_error": 529,
    "timeout_error": 504,
}
_MAX_EXPLANATION = 500


def upstream_error(
    status: int | None,
    body: bytes | str | dict[str, Any] | None,
    *,
    retry_after: float | None = None,
    backend: str | None = None,
) -> GatewayError:
    """The error a client sees for an upstream's failure: the gateway's own words.

    ``body`` is the upstream's error answer (bytes, text or its JSON object; OpenAI's
    ``{"error": {...}}``, Anthropic's ``{"type": "error", "error": {...}}``, ``{"detail"}``,
    plain text), ``status`` its HTTP status (``None`` for an error inside a stream, whose
    ``type`` then decides). The message names the upstream's status, type and code; the
    upstream's own message is added only when it explains a context-length or content-policy
    refusal, and then with anything credential- or URL-shaped removed (see
    :func:`gateway.redaction.redact`). A 401 or 403 says the gateway's upstream credentials
    were refused (a 502: not the client's fault). Every backend reports upstream failures
    through this one function, so nothing an upstream says reaches a client unfiltered.
    """
    kind, code, param, message = upstream_fields(body)
    effective = status
    if effective is None and kind is not None:
        effective = _BY_UPSTREAM_TYPE.get(kind)
    who = f"backend '{backend}'" if backend else "the upstream"
    facts = [f"status {effective}"] if effective is not None else []
    facts += [f"{name} {value}" for name, value in (("type", kind), ("code", code)) if value]
    said = f" ({', '.join(facts)})" if facts else ""
    if effective in (401, 403):
        return UpstreamError(
            f"The upstream refused the gateway's credentials for {who}{said}; "
            "the gateway's operator must fix its upstream key.",
            code=code or "upstream_credentials_refused",
        )
    if status is not None:
        text = f"{who[0].upper()}{who[1:]} answered with an error{said}."
    else:
        text = f"{who[0].upper()}{who[1:]} reported an error mid-stream{said}."
    clean = upstream_explanation(kind, code, message)
    if clean:
        text += f" {clean}"
    cls = _BY_UPSTREAM_STATUS.get(effective) if effective is not None else None
    if cls is None or effective is None:
        return UpstreamError(text, code=code)
    err = cls(text, code=code, param=param, retry_after=retry_after)
    if cls is BadRequest and effective != 400:
        err.status = effective
    return err


def upstream_explanation(kind: str | None, code: str | None, message: str | None) -> str | None:
    """What a client may read of an upstream's own error ``message`` (with its ``kind`` and
    ``code``, see :func:`upstream_fields`): the message, redacted and at most 500 characters,
    when it explains a context-length or content-policy refusal; ``None`` otherwise."""
    if not message or not _EXPLAINED.search(" ".join(x for x in (kind, code, message) if x)):
        return None
    clean = redact(message)
    if clean and len(clean) > _MAX_EXPLANATION:
        clean = clean[:_MAX_EXPLANATION] + "..."
    return clean or None


def upstream_fields(
    body: bytes | str | dict[str, Any] | None,
) -> tuple[str | None, str | None, str | None, str | None]:
    """An upstream error answer's ``(type, code, param, message)``, each ``None`` when absent;
    type, code and param only when they are short identifiers (never free text)."""
    obj: Any = body
    if isinstance(body, bytes | str):
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            text = body if isinstance(body, str) else body[:2000].decode("utf-8", "replace")
            return None, None, None, text.strip() or None
    if not isinstance(obj, dict):
        return None, None, None, None
    err = obj.get("error")
    if isinstance(err, str):
        err = {"message": err}
    if not isinstance(err, dict):
        err = obj
    message = err.get("message")
    if not isinstance(message, str):
        detail = obj.get("detail")
        message = detail if isinstance(detail, str) else None

    def ident(value: Any) -> str | None:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not (isinstance(value, str) and _IDENTIFIER.fullmatch(value)):
            return None
        return value if redact(value) == value else None

    kind = ident(err.get("type"))
    if kind == "error":  # Anthropic's envelope type, not the error's
        kind = None
    return kind, ident(err.get("code")), ident(err.get("param")), message


_OPENAI_TYPES = {
    "invalid_request": "invalid_request_error",
    "authentication": "authentication_error",
    "permission": "permission_error",
    "not_found": "not_found_error",
    "too_large": "invalid_request_error",
    "rate_limit": "rate_limit_error",
    "upstream": "upstream_error",
    "overloaded": "overloaded_error",
    "unavailable": "service_unavailable",
    "timeout": "timeout_error",
    "internal": "api_error",
}


def default_error_body(err: GatewayError) -> dict[str, object]:
    """The error body of routes without a protocol of their own: OpenAI's shape,
    ``{"error": {"message", "type", "param", "code"}}``, which most HTTP clients of LLM APIs read."""
    return {
        "error": {
            "message": err.message,
            "type": _OPENAI_TYPES.get(err.kind, "api_error"),
            "param": err.param,
            "code": err.code,
        }
    }


class ConfigError(Exception):
    """The configuration is invalid; ``errors`` holds one ``"path: message"`` line per fault.

    Raised at startup (and by ``hookgate check``), never on the request path.
    """

    def __init__(self, errors: Iterable[str]) -> None:
        self.errors = list(errors)
        super().__init__("invalid configuration:\n  " + "\n  ".join(self.errors))
