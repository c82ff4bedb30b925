"""JSON-RPC 2.0 as A2A uses it: requests, responses, and errors with A2A's codes.

A2A's own errors are :class:`RpcError` subclasses with their JSON-RPC code and the reason 1.0
puts in a ``google.rpc.ErrorInfo``; any other :class:`~gateway.errors.GatewayError` (a bad
field, a key that may not use the agent, a rate limit, a failed upstream) is mapped by its
status. Errors travel in HTTP 200 responses, as JSON-RPC over HTTP expects; only a missing or
wrong key is an HTTP 401 (with a JSON-RPC error body), since it is refused before any method.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import attrs
import orjson
from aiohttp import web

from gateway import BadRequest, GatewayError, PayloadTooLarge, read_json
from gateway.protocols.a2a.wire import V1, ContentTypeNotSupported, task_to_03

if TYPE_CHECKING:
    from gateway import Exchange

ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
A2A_DOMAIN = "a2a-protocol.org"
GATEWAY_DOMAIN = "hookgate"


class RpcError(GatewayError):
    """An error with a JSON-RPC code of its own."""

    status = 400
    kind = "invalid_request"
    rpc_code: ClassVar[int] = -32603
    reason: ClassVar[str] = "INTERNAL_ERROR"


class ParseError(RpcError):
    rpc_code = -32700
    reason = "JSON_PARSE_ERROR"


class InvalidRequest(RpcError):
    rpc_code = -32600
    reason = "INVALID_REQUEST"


class MethodNotFound(RpcError):
    status = 404
    kind = "not_found"
    rpc_code = -32601
    reason = "METHOD_NOT_FOUND"


class InvalidParams(RpcError):
    rpc_code = -32602
    reason = "INVALID_PARAMS"


class TaskNotFound(RpcError):
    status = 404
    kind = "not_found"
    rpc_code = -32001
    reason = "TASK_NOT_FOUND"


class TaskNotCancelable(RpcError):
    rpc_code = -32002
    reason = "TASK_NOT_CANCELABLE"


class PushNotificationNotSupported(RpcError):
    rpc_code = -32003
    reason = "PUSH_NOTIFICATION_NOT_SUPPORTED"


class UnsupportedOperation(RpcError):
    rpc_code = -32004
    reason = "UNSUPPORTED_OPERATION"


class ExtendedCardNotConfigured(RpcError):
    rpc_code = -32007
    reason = "EXTENDED_AGENT_CARD_NOT_CONFIGURED"


class VersionNotSupported(RpcError):
    rpc_code = -32009
    reason = "VERSION_NOT_SUPPORTED"


#: JSON-RPC codes of A2A errors, for clients reading them back.
BY_CODE: dict[int, type[RpcError]] = {
    cls.rpc_code: cls
    for cls in (
        ParseError,
        InvalidRequest,
        MethodNotFound,
        InvalidParams,
        TaskNotFound,
        TaskNotCancelable,
        PushNotificationNotSupported,
        UnsupportedOperation,
        ExtendedCardNotConfigured,
        VersionNotSupported,
    )
}
CONTENT_TYPE_NOT_SUPPORTED = -32005
#: Implementation-defined server errors (JSON-RPC reserves -32000 to -32099): the gateway
#: refused the call for a reason A2A has no code for (permission, rate limit, unavailable).
SERVER_ERROR = -32000
INTERNAL_ERROR = -32603


def code_of(err: GatewayError) -> tuple[int, str, str]:
    """The JSON-RPC code, the ErrorInfo reason and its domain for ``err``."""
    if isinstance(err, RpcError):
        return err.rpc_code, err.reason, A2A_DOMAIN
    if isinstance(err, ContentTypeNotSupported):
        return CONTENT_TYPE_NOT_SUPPORTED, "CONTENT_TYPE_NOT_SUPPORTED", A2A_DOMAIN
    reason = (err.code or err.kind).upper()
    if err.status in (400, 404, 413, 422):
        return InvalidParams.rpc_code, reason, GATEWAY_DOMAIN
    if err.status in (401, 403, 429, 503):
        return SERVER_ERROR, reason, GATEWAY_DOMAIN
    return INTERNAL_ERROR, reason, GATEWAY_DOMAIN


def error_object(err: GatewayError, version: str = V1) -> dict[str, Any]:
    """``err`` as a JSON-RPC error object. Version 1.0 details it as ``data: [ErrorInfo]``
    (string metadata: the gateway's status, code and field); 0.3 as a plain object."""
    code, reason, domain = code_of(err)
    metadata: dict[str, str] = {"status": str(err.status)}
    if err.code:
        metadata["code"] = err.code
    if err.param:
        metadata["param"] = err.param
    if err.retry_after is not None:
        metadata["retryAfter"] = str(max(1, round(err.retry_after)))
    data: Any
    if version == V1:
        data = [{"@type": ERROR_INFO, "reason": reason, "domain": domain, "metadata": metadata}]
    else:
        data = {"reason": reason, **metadata}
    return {"code": code, "message": err.message, "data": data}


def response(request_id: Any, result: Any) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "id": request_id, "result": result})


def error_response(request_id: Any, err: GatewayError, version: str = V1) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "id": request_id, "error": error_object(err, version)})


# --- requests ----------------------------------------------------------------------------------


@attrs.define(slots=True)
class Call:
    """One JSON-RPC call to an agent: its request, exchange, the agent its route names
    (``None`` on the gateway's route), its id, the protocol version it speaks and its params."""

    request: web.Request
    ex: Exchange
    agent: str | None
    id: Any
    version: str
    params: dict[str, Any]

    @property
    def owner(self) -> str:
        """The principal whose tasks this call may see."""
        return self.ex.principal.id

    def reply(self, result: Any) -> web.Response:
        return json_reply(response(self.id, result))

    def task(self, task: dict[str, Any]) -> web.Response:
        """Answer with a task, in the call's version."""
        return self.reply(task if self.version == V1 else task_to_03(task))


def json_reply(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")


def valid_id(value: Any) -> bool:
    return value is None or (isinstance(value, str | int) and not isinstance(value, bool))


async def read_request(request: web.Request) -> Any:
    """The request's JSON body; not JSON is a parse error, too large an invalid request."""
    try:
        return await read_json(request)
    except PayloadTooLarge as err:
        raise InvalidRequest(err.message, code="too_large") from None
    except BadRequest as err:
        raise ParseError(err.message, code="parse_error") from None


def envelope(body: Any) -> tuple[str, dict[str, Any]]:
    """The method and params of a JSON-RPC 2.0 request object (one: batches are refused)."""
    if isinstance(body, list):
        raise InvalidRequest("Batch requests are not supported; send one request at a time.")
    if not isinstance(body, dict) or body.get("jsonrpc") != "2.0":
        raise InvalidRequest("Expected a JSON-RPC 2.0 request object ('jsonrpc': '2.0').")
    if not valid_id(body.get("id")):
        raise InvalidRequest("'id' must be a string, a number or null.", param="id")
    method = body.get("method")
    if not isinstance(method, str) or not method:
        raise InvalidRequest("'method' must be a method name.", param="method")
    return method, object_param(body.get("params"), "params")


def object_param(value: Any, where: str) -> dict[str, Any]:
    """An optional object parameter (``{}`` when absent)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidParams(f"'{where}' must be an object.", param=where)
    return value


def history_length(value: Any, where: str) -> int | None:
    """A ``historyLength`` parameter: a whole number of at least 0, or ``None``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidParams(f"'{where}' must be a whole number of at least 0.", param=where)
    return value


# --- answers from remote agents --------------------------------------------------------------


class A2AError(Exception):
    """A remote agent answered with a JSON-RPC error (or not as JSON-RPC at all).

    ``code`` is the JSON-RPC code (``-32001`` task not found, ...; ``None`` for a transport
    failure), ``data`` what the error carried. ``message`` may hold what the agent said;
    ``reason`` says what happened in the client's own words, without the agent's URL or words
    (safe to show to a third party or to log).
    """

    def __init__(
        self, message: str, code: int | None = None, data: Any = None, *, reason: str = ""
    ) -> None:
        super().__init__(message if code is None else f"{message} (JSON-RPC {code})")
        self.message = message
        self.code = code
        self.data = data
        if not reason:
            reason = "it answered with an error" if code is not None else "it failed"
        self.reason = reason if code is None else f"{reason} (JSON-RPC {code})"


_NOT_RPC = "its answer is not a JSON-RPC response"


def raise_for(body: Any) -> Any:
    """The ``result`` of a JSON-RPC response; :class:`A2AError` for an error or a body that is
    not a response."""
    if not isinstance(body, dict):
        raise A2AError("the agent's answer is not a JSON-RPC response", reason=_NOT_RPC)
    error = body.get("error")
    if error is not None:
        if not isinstance(error, dict):
            raise A2AError(
                f"the agent answered with an error: {error!r}", reason="it answered with an error"
            )
        code = error.get("code")
        return_code = code if isinstance(code, int) and not isinstance(code, bool) else None
        raise A2AError(
            str(error.get("message") or "error"),
            return_code,
            error.get("data"),
            reason="it answered with an error",
        )
    if "result" not in body:
        raise A2AError("the agent's answer has neither a result nor an error", reason=_NOT_RPC)
    return body["result"]
