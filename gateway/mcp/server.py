"""``/mcp``: the gateway as one MCP server (streamable HTTP) over the configured MCP servers'
tools and its own agents.

The transport is the specification's streamable HTTP, in both its eras. The stateless revision
(2026-07-28): each POST carries its protocol version and the client's capabilities in
``params._meta`` (checked, with the routing headers, by the SDK's own ladder), and
``server/discover`` says what the server speaks. The handshake revisions (2024-11-05 up to
2025-11-25): ``initialize`` opens a session whose id the client sends back as
``Mcp-Session-Id``. Either way a POST carries one JSON-RPC message, answered with one JSON body,
or (for a ``tools/call`` that asked for progress) an SSE stream of progress notifications
ending with the response. ``GET`` (a stream for server-initiated messages) is answered 405, as
the specification allows: this server sends none. ``DELETE`` ends a session.

Messages are checked and written with the SDK's own per-revision types
(``mcp_types.methods``), on aiohttp rather than through the SDK's ASGI session manager, whose
sessions live in one process (see docs/architecture.md): here a session is a small record in
memory or Redis, so any instance serves any request of it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

import mcp_types
import orjson
from aiohttp import web
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import (
    ERROR_CODE_HTTP_STATUS,
    InboundLadderRejection,
    classify_inbound_request,
)
from mcp_types import methods
from mcp_types.version import (
    HANDSHAKE_PROTOCOL_VERSIONS,
    LATEST_HANDSHAKE_VERSION,
    MODERN_PROTOCOL_VERSIONS,
)
from pydantic import ValidationError

from gateway import (
    EXCHANGE,
    ChatRequest,
    Error,
    Exchange,
    GatewayError,
    Message,
    SSEResponse,
    Start,
    TextDelta,
    TextPart,
    ToolResult,
    ToolRunStart,
    __version__,
)
from gateway.mcp.catalog import Catalog, Denied, Entry
from gateway.mcp.config import split_name
from gateway.mcp.sessions import MCPSession, Sessions
from gateway.mcp.upstream import ToolCallFailed

if TYPE_CHECKING:
    from gateway.mcp.routes import MCPRoutes

log = logging.getLogger(__name__)

SESSION_HEADER = "Mcp-Session-Id"
VERSION_HEADER = "MCP-Protocol-Version"
INSTRUCTIONS = (
    "Tools named <server>__<tool> are those of the MCP servers behind this gateway; "
    "agent__<name> runs one of its agents on a prompt."
)
#: A custom code in the server range for a tool the caller's key may not use.
FORBIDDEN = -32003
#: A custom code for a request larger than ``max_call_size``.
TOO_LARGE = -32004


class RPCError(Exception):
    """A JSON-RPC error to answer with (HTTP ``status``: 200 for errors of a method)."""

    def __init__(self, code: int, message: str, *, status: int = 200, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.data = data


def rpc_error(request_id: Any, err: RPCError) -> web.Response:
    error: dict[str, Any] = {"code": err.code, "message": err.message}
    if err.data is not None:
        error["data"] = err.data
    body = {"jsonrpc": "2.0", "id": request_id, "error": error}
    return web.Response(body=orjson.dumps(body), status=err.status, content_type="application/json")


class MCPEndpoint:
    """The handlers of ``/mcp`` (built at its first request: see :mod:`gateway.mcp.routes`)."""

    def __init__(self, routes: MCPRoutes) -> None:
        gateway, config = routes.gateway, routes.config
        self.gateway = gateway
        self.config = config
        self.catalog = Catalog(gateway, config, routes.upstreams)
        self.upstreams = routes.upstreams
        self.max_call_size = int(config.max_call_size)
        self.call_timeout = float(config.call_timeout)
        self.metrics = routes.metrics
        #: None: several workers and no Redis (see :func:`gateway.mcp.routes.choose_sessions`).
        self.sessions = routes.sessions
        self.capabilities = mcp_types.ServerCapabilities(
            tools=mcp_types.ToolsCapability(list_changed=False)
        )
        self.info = mcp_types.Implementation(name="hookgate", version=__version__)

    # --- HTTP -----------------------------------------------------------------------------------

    async def post(self, request: web.Request) -> web.StreamResponse:
        ex = request[EXCHANGE]
        if self.sessions is None:
            return rpc_error(None, _no_sessions())
        length = request.content_length
        if length is not None and length > self.max_call_size:
            return rpc_error(None, self._too_large(length))
        body = await request.read()
        if len(body) > self.max_call_size:
            return rpc_error(None, self._too_large(len(body)))
        try:
            message = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            err = RPCError(mcp_types.PARSE_ERROR, f"Parse error: {exc}", status=400)
            return rpc_error(None, err)
        request_id = message.get("id") if isinstance(message, dict) else None
        try:
            return await self._message(request, ex, message)
        except RPCError as err:
            return rpc_error(_valid_id(request_id), err)

    async def delete(self, request: web.Request) -> web.StreamResponse:
        if self.sessions is None:
            return rpc_error(None, _no_sessions())
        session_id = request.headers.get(SESSION_HEADER)
        if not session_id:
            return rpc_error(
                None, RPCError(mcp_types.INVALID_REQUEST, "Missing Mcp-Session-Id.", status=400)
            )
        session = await self.sessions.get(session_id)
        if session is None or session.owner != request[EXCHANGE].principal.id:
            return rpc_error(None, _no_session())
        await self.sessions.delete(session_id)
        return web.Response(status=204)

    # --- JSON-RPC -------------------------------------------------------------------------------

    async def _message(
        self, request: web.Request, ex: Exchange, message: Any
    ) -> web.StreamResponse:
        if isinstance(message, list):
            raise RPCError(
                mcp_types.INVALID_REQUEST,
                "Batches are not supported: send one JSON-RPC message per request.",
                status=400,
            )
        try:
            parsed = mcp_types.jsonrpc_message_adapter.validate_python(message)
        except ValidationError:
            raise RPCError(
                mcp_types.INVALID_REQUEST,
                "Invalid Request: expected a JSON-RPC 2.0 request, notification or response.",
                status=400,
            ) from None
        if not isinstance(parsed, mcp_types.JSONRPCRequest):
            # Notifications (initialized, cancelled) and responses need no answer.
            if request.headers.get(SESSION_HEADER):
                await self._session(request, ex)
            return web.Response(status=202)
        meta = (parsed.params or {}).get("_meta")
        if isinstance(meta, dict) and mcp_types.PROTOCOL_VERSION_META_KEY in meta:
            return await self._modern(request, ex, message, parsed)
        if parsed.method == "initialize":
            return await self._initialize(ex, parsed)
        if parsed.method == "server/discover":
            raise RPCError(
                mcp_types.INVALID_PARAMS,
                "server/discover takes the 2026-07-28 request envelope (params._meta)",
            )
        session = await self._session(request, ex)
        return await self._dispatch(request, ex, parsed, session.protocol_version)

    async def _modern(
        self,
        request: web.Request,
        ex: Exchange,
        message: dict[str, Any],
        parsed: mcp_types.JSONRPCRequest,
    ) -> web.StreamResponse:
        """A request of the stateless revision (2026-07-28): no session; the protocol version
        and the client's capabilities come with each request, checked by the SDK's ladder."""
        headers = {name.lower(): value for name, value in request.headers.items()}
        route = classify_inbound_request(message, headers=headers)
        try:
            if isinstance(route, InboundLadderRejection):
                raise RPCError(route.code, route.message, data=route.data)
            version = route.protocol_version
            if parsed.method == "server/discover":
                result = mcp_types.DiscoverResult(
                    supported_versions=[*MODERN_PROTOCOL_VERSIONS, *HANDSHAKE_PROTOCOL_VERSIONS],
                    capabilities=self.capabilities,
                    instructions=INSTRUCTIONS,
                )
                return self._result(parsed.id, version, "server/discover", _dump(result))
            return await self._dispatch(request, ex, parsed, version)
        except RPCError as err:
            if err.status == 200:  # this revision answers errors with HTTP statuses too
                err.status = ERROR_CODE_HTTP_STATUS.get(err.code, 200)
            raise

    async def _dispatch(
        self,
        request: web.Request,
        ex: Exchange,
        parsed: mcp_types.JSONRPCRequest,
        version: str,
    ) -> web.StreamResponse:
        try:
            typed = methods.parse_client_request(parsed.method, version, parsed.params)
        except KeyError:
            raise RPCError(
                mcp_types.METHOD_NOT_FOUND, f"Method not found: {parsed.method}"
            ) from None
        except ValidationError as exc:
            raise RPCError(mcp_types.INVALID_PARAMS, f"Invalid params: {_first(exc)}") from None
        if isinstance(typed, mcp_types.PingRequest):
            return self._result(parsed.id, version, "ping", {})
        if isinstance(typed, mcp_types.ListToolsRequest):
            try:
                tools = self.catalog.listing(ex.principal)
            except Denied as exc:
                raise RPCError(FORBIDDEN, str(exc)) from None
            result = mcp_types.ListToolsResult(tools=tools)
            return self._result(parsed.id, version, "tools/list", _dump(result))
        if isinstance(typed, mcp_types.CallToolRequest):
            return await self._call(request, ex, parsed.id, version, typed.params)
        raise RPCError(mcp_types.METHOD_NOT_FOUND, f"Method not found: {parsed.method}")

    async def _initialize(
        self, ex: Exchange, parsed: mcp_types.JSONRPCRequest
    ) -> web.StreamResponse:
        asked = (parsed.params or {}).get("protocolVersion")
        version = asked if asked in HANDSHAKE_PROTOCOL_VERSIONS else LATEST_HANDSHAKE_VERSION
        try:
            methods.parse_client_request("initialize", version, parsed.params)
        except ValidationError as exc:
            raise RPCError(mcp_types.INVALID_PARAMS, f"Invalid params: {_first(exc)}") from None
        session = await self._store().create(version, ex.principal.id)
        result = mcp_types.InitializeResult(
            protocol_version=version,
            capabilities=self.capabilities,
            server_info=self.info,
            instructions=INSTRUCTIONS,
        )
        response = self._result(parsed.id, version, "initialize", _dump(result))
        response.headers[SESSION_HEADER] = session.id
        return response

    async def _session(self, request: web.Request, ex: Exchange) -> MCPSession:
        session_id = request.headers.get(SESSION_HEADER)
        if not session_id:
            raise RPCError(
                mcp_types.INVALID_REQUEST,
                "Missing Mcp-Session-Id: send initialize first, then its session id.",
                status=400,
            )
        session = await self._store().get(session_id)
        if session is None or session.owner != ex.principal.id:
            raise _no_session()
        asked = request.headers.get(VERSION_HEADER)
        if asked is not None and asked not in HANDSHAKE_PROTOCOL_VERSIONS:
            raise RPCError(
                mcp_types.INVALID_REQUEST,
                f"Unsupported MCP-Protocol-Version {asked!r}; supported: "
                f"{', '.join(HANDSHAKE_PROTOCOL_VERSIONS)}.",
                status=400,
            )
        return session

    def _result(
        self, request_id: Any, version: str, method: str, data: dict[str, Any]
    ) -> web.Response:
        result = methods.serialize_server_result(method, version, data)
        body = {"jsonrpc": "2.0", "id": request_id, "result": result}
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    def _store(self) -> Sessions:
        if self.sessions is None:
            raise _no_sessions()
        return self.sessions

    def _too_large(self, size: int) -> RPCError:
        return RPCError(
            TOO_LARGE,
            f"The request is {size} bytes; this gateway takes MCP requests of at most "
            f"{self.max_call_size} bytes (max_call_size).",
            status=413,
        )

    # --- tools/call -----------------------------------------------------------------------------

    async def _call(
        self,
        request: web.Request,
        ex: Exchange,
        request_id: Any,
        version: str,
        params: mcp_types.CallToolRequestParams,
    ) -> web.StreamResponse:
        name = params.name
        try:
            entry = self.catalog.find(ex.principal, name)
        except Denied as exc:
            pair = split_name(name)
            server, tool = pair if pair is not None else ("", name)
            self.metrics.record(server, tool, "forbidden", 0.0)
            raise RPCError(FORBIDDEN, str(exc), data={"tool": name}) from None
        if entry is None:
            pair = split_name(name)
            upstream = self.upstreams.get(pair[0]) if pair is not None else None
            if upstream is not None and not upstream.connected.is_set():
                message = (
                    f"The MCP server '{upstream.name}' is not connected now; its tools return "
                    "when it is."
                )
                return self._result(request_id, version, "tools/call", _error_result(message))
            raise RPCError(mcp_types.INVALID_PARAMS, f"Unknown tool: {name}")
        token = params.meta.get("progress_token") if params.meta is not None else None
        streaming = token is not None and "text/event-stream" in request.headers.get("accept", "")
        if not streaming:
            data = await self._run(ex, entry, params.arguments or {}, None)
            return self._result(request_id, version, "tools/call", data)
        response = SSEResponse(15.0)
        await response.prepare(request)
        sent = 0

        async def progress(value: float, total: float | None, note: str | None) -> None:
            nonlocal sent
            sent += 1
            notification: dict[str, Any] = {"progressToken": token, "progress": value}
            if total is not None:
                notification["total"] = total
            if note:
                notification["message"] = note
            frame = {"jsonrpc": "2.0", "method": "notifications/progress", "params": notification}
            await response.write(_sse(frame))

        try:
            data = await self._run(ex, entry, params.arguments or {}, progress)
            body = {
                "jsonrpc": "2.0",
                "id": request_id,
                "result": methods.serialize_server_result("tools/call", version, data),
            }
        except RPCError as err:
            body = {
                "jsonrpc": "2.0",
                "id": request_id,
                "error": {"code": err.code, "message": err.message},
            }
        await response.write(_sse(body))
        await response.write_eof()
        return response

    async def _run(
        self, ex: Exchange, entry: Entry, arguments: dict[str, Any], progress: Any
    ) -> dict[str, Any]:
        """Run a tool; its failures are results with ``isError`` (the caller's model reads
        them); an upstream's protocol error (bad arguments, say) is raised as the server's."""
        if not entry.is_agent:
            upstream = self.upstreams[entry.server]
            try:
                result = await upstream.call(entry.tool, arguments, progress=progress)
            except ToolCallFailed as exc:
                return _error_result(f"{str(exc)[0].upper()}{str(exc)[1:]}.")
            except MCPError as exc:
                raise RPCError(exc.code, exc.message, data=exc.data) from None
            # The upstream's own _meta (its identity, on the 2026 wire) is not the caller's.
            return _dump(result.model_copy(update={"meta": None}))
        started = time.perf_counter()
        outcome = "failed"
        try:
            data = await self._run_agent(ex, entry, arguments, progress)
            outcome = "error" if data.get("isError") else "ok"
            return data
        except RPCError:
            outcome = "rejected"
            raise
        finally:
            self.metrics.record(entry.server, entry.tool, outcome, time.perf_counter() - started)

    async def _run_agent(
        self, ex: Exchange, entry: Entry, arguments: dict[str, Any], progress: Any
    ) -> dict[str, Any]:
        prompt = arguments.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise RPCError(
                mcp_types.INVALID_PARAMS, "Invalid params: 'prompt' must be a non-empty string."
            )
        unknown = sorted(set(arguments) - {"prompt"})
        if unknown:
            raise RPCError(
                mcp_types.INVALID_PARAMS,
                f"Invalid params: unknown argument(s) {', '.join(unknown)}.",
            )
        chat = ChatRequest(
            model=entry.tool,
            messages=[Message("user", [TextPart(prompt)])],
            protocol="mcp",
            stream=True,
        )
        text: list[str] = []
        steps = 0
        try:
            async with asyncio.timeout(self.call_timeout or None):
                # Read to the end, past the Finish: the pipeline's bookkeeping (sessions, request
                # logs) runs before its stream ends.
                async for ev in _events(self.gateway.pipeline.stream(chat, ex)):
                    kind = type(ev)
                    if kind is TextDelta:
                        text.append(ev.text)
                    elif kind is Start:
                        steps += 1
                        if progress is not None:
                            await progress(float(steps), None, f"step {steps}")
                    elif kind is ToolRunStart and progress is not None:
                        await progress(float(steps), None, f"calling {ev.name}")
                    elif kind is ToolResult and progress is not None:
                        await progress(float(steps), None, f"{ev.name or 'tool'} answered")
                    elif kind is Error:
                        return _error_result(f"The agent '{entry.tool}' failed: {ev.error.message}")
        except TimeoutError:
            return _error_result(
                f"The agent '{entry.tool}' did not finish within {self.call_timeout:g} seconds."
            )
        except GatewayError as err:
            return _error_result(f"The agent '{entry.tool}' could not run: {err.message}")
        return mcp_types.CallToolResult(
            content=[mcp_types.TextContent(text="".join(text))]
        ).model_dump(by_alias=True, mode="json", exclude_none=True)


async def _events(stream: AsyncGenerator[Any, None]) -> AsyncGenerator[Any, None]:
    try:
        async for ev in stream:
            yield ev
    finally:
        await stream.aclose()


def _dump(model: Any) -> dict[str, Any]:
    data: dict[str, Any] = model.model_dump(by_alias=True, mode="json", exclude_none=True)
    return data


def _error_result(message: str) -> dict[str, Any]:
    return _dump(
        mcp_types.CallToolResult(content=[mcp_types.TextContent(text=message)], is_error=True)
    )


def _no_sessions() -> RPCError:
    return RPCError(
        mcp_types.INTERNAL_ERROR,
        "MCP sessions need shared state with several workers: set [redis] url.",
        status=503,
    )


def _no_session() -> RPCError:
    return RPCError(
        -32002, "Session not found: it ended or expired; initialize a new one.", status=404
    )


def _sse(obj: Any) -> bytes:
    return b"event: message\ndata: " + orjson.dumps(obj) + b"\n\n"


def _valid_id(value: Any) -> Any:
    return (
        value
        if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
        else None
    )


def _first(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("params",))
    return f"{where}: {err.get('msg')}" if where else str(err.get("msg"))
