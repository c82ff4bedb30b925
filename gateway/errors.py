"""Errors the gateway reports to clients, and the error of an invalid configuration.

Each error has an HTTP status and a protocol-neutral ``kind``; every protocol adapter turns it
into its own error shape (see ``error_body`` in each adapter). Messages are written for the
client: no stack traces, no upstream URLs, no secrets.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar


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
    """Map an upstream's error status to the error the client sees, keeping its message.

    The client's request faults (400, 404, 413, 422), rate limits and overload pass through as
    themselves. 401 and 403 mean the *gateway's* upstream credentials are wrong, which is not the
    client's fault, so they become 502, like every other upstream failure.
    """
    cls = _BY_UPSTREAM_STATUS.get(status)
    if cls is None:
        err: GatewayError = UpstreamError(f"upstream error ({status}): {message}")
    else:
        err = cls(message, retry_after=retry_after)
        if cls is BadRequest and status != 400:
            err.status = status
    return err


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
