"""MCP servers as tool sources: one SDK client session per server per process, kept alive.

Each configured server gets a :class:`MCPUpstream`: a task that connects with the official
``mcp`` SDK (a stdio subprocess, or streamable HTTP), lists the server's tools, and holds the
session for every run of every agent (and every ``/mcp`` call) to share. When the session is
lost (the process died, the HTTP server went away: a call or the periodic health check finds
out) the tools are withdrawn, and the task connects again after a wait that doubles up to
``max_backoff``; once connected the tools are back and the agents using them are told.

The SDK's session lives inside anyio task groups, which must be left by the task that entered
them; so only the upstream's own task opens and closes it, and callers only send through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import httpx2
import mcp_types
import orjson
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError

from gateway import ToolContext, ToolOutcome, __version__
from gateway.mcp.config import MCPConfig, MCPServerConfig
from gateway.mcp.metrics import ToolCallMetrics
from gateway.tools import Tool, json_arguments

log = logging.getLogger(__name__)

#: The first wait before a restart; doubled after each failed attempt.
FIRST_BACKOFF = 0.25
#: A connection that lasted this long resets the wait to :data:`FIRST_BACKOFF`.
STABLE = 10.0
#: How long listing the tools (on connecting, and as a health check) may take.
LIST_TIMEOUT = 10.0


class ToolCallFailed(Exception):
    """A tool call that got no result: the server is down or went away, or it took too long."""

    def __init__(self, message: str, *, timeout: bool = False) -> None:
        super().__init__(message)
        self.timeout = timeout


class MCPUpstream:
    """One MCP server: its live session, its tools, and the task that keeps them."""

    def __init__(
        self,
        name: str,
        config: MCPServerConfig,
        defaults: MCPConfig,
        metrics: ToolCallMetrics | None = None,
    ) -> None:
        self.name = name
        self.metrics = metrics or ToolCallMetrics()
        self.config = config
        self.timeout = float(
            config.timeout if config.timeout is not None else defaults.call_timeout
        )
        self.health_interval = float(defaults.health_interval)
        self.connect_timeout = float(defaults.startup_timeout)
        self.max_backoff = float(defaults.max_backoff)
        #: The server's tools by its names (only the allowed ones), while connected.
        self.specs: dict[str, mcp_types.Tool] = {}
        self.connected = asyncio.Event()
        #: Times the session was opened (1 after the first connection).
        self.connections = 0
        self._client: Client | None = None
        self._lost = asyncio.Event()
        self._changed = asyncio.Event()
        self._listeners: list[Callable[[], None]] = []
        self._tools: dict[str, Tool] = {}
        self._task: asyncio.Task[None] | None = None
        self._allowed = frozenset(config.tools) if config.tools is not None else None

    @property
    def where(self) -> str:
        return self.config.url or self.config.command or ""

    # --- the tool source agents see (gateway.core.app.ToolSource) -----------------------------

    def tools(self) -> Mapping[str, Tool]:
        """The server's tools as gateway tools, while it is connected."""
        return self._tools

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever the tools change (connected, lost, listed anew)."""
        self._listeners.append(callback)

    # --- calls --------------------------------------------------------------------------------

    async def call(
        self,
        tool: str,
        arguments: dict[str, Any],
        *,
        progress: ProgressFnT | None = None,
    ) -> mcp_types.CallToolResult:
        """Call one of the server's tools. A tool's own failure is a result with ``is_error``;
        no result at all (down, gone mid-call, too slow) raises :class:`ToolCallFailed`;
        protocol errors from the server (unknown tool, bad arguments) raise ``MCPError``."""
        started = time.perf_counter()
        outcome = "failed"
        try:
            result = await self._call(tool, arguments, progress)
        except MCPError:
            outcome = "rejected"
            raise
        except ToolCallFailed as exc:
            outcome = "timeout" if exc.timeout else "failed"
            raise
        else:
            outcome = "error" if result.is_error else "ok"
            return result
        finally:
            self.metrics.record(self.name, tool, outcome, time.perf_counter() - started)

    async def _call(
        self, tool: str, arguments: dict[str, Any], progress: ProgressFnT | None
    ) -> mcp_types.CallToolResult:
        client = self._client
        if client is None:
            raise ToolCallFailed(f"the MCP server '{self.name}' is not connected now")
        limit = self.timeout
        try:
            async with asyncio.timeout(limit or None):
                return await client.session.call_tool(tool, arguments, progress_callback=progress)
        except TimeoutError:
            log.warning("mcp %s: tool %s did not finish within %gs", self.name, tool, limit)
            raise ToolCallFailed(
                f"the tool '{tool}' of MCP server '{self.name}' did not finish within "
                f"{limit:g} seconds",
                timeout=True,
            ) from None
        except MCPError as exc:
            if exc.code != mcp_types.CONNECTION_CLOSED:
                raise
            self._lost.set()
            raise ToolCallFailed(
                f"the MCP server '{self.name}' went away during the call to '{tool}'"
            ) from None

    # --- the connection's life ----------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._supervise(), name=f"mcp-server-{self.name}"
        )

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _supervise(self) -> None:
        backoff = FIRST_BACKOFF
        while True:
            began = time.monotonic()
            try:
                async with self._session() as client:
                    await self._list(client)
                    self._client = client
                    self.connections += 1
                    self.connected.set()
                    log.info(
                        "mcp %s: connected to %s (%d tools)", self.name, self.where, len(self.specs)
                    )
                    self._notify()
                    await self._watch(client)
                    log.warning("mcp %s: the server at %s went away", self.name, self.where)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the SDK raises anything: OSError, ExceptionGroup, ...
                log.warning(
                    "mcp %s: cannot use the server at %s: %s", self.name, self.where, _why(exc)
                )
            finally:
                self._client = None
                self.connected.clear()
                self._lost.clear()
                if self.specs:
                    self.specs = {}
                    self._notify()
            if time.monotonic() - began > STABLE:
                backoff = FIRST_BACKOFF
            log.info("mcp %s: connecting again in %.2gs", self.name, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[Client]:
        cfg = self.config
        info = mcp_types.Implementation(name="hookgate", version=__version__)
        async with contextlib.AsyncExitStack() as stack:
            server: Any
            if cfg.command:
                server = StdioServerParameters(
                    command=cfg.command, args=list(cfg.args), env=dict(cfg.env) or None, cwd=cfg.cwd
                )
            else:
                assert cfg.url is not None
                # The SDK's recommended timeouts: reads may wait on a long tool call.
                http = await stack.enter_async_context(
                    httpx2.AsyncClient(
                        headers=dict(cfg.headers), timeout=httpx2.Timeout(30.0, read=300.0)
                    )
                )
                server = streamable_http_client(cfg.url, http_client=http)
            client = Client(server, client_info=info, message_handler=self._on_message, cache=None)
            try:
                async with asyncio.timeout(self.connect_timeout or None):
                    entered = await stack.enter_async_context(client)
            except TimeoutError:
                raise ConnectionError(
                    f"it did not complete the handshake within {self.connect_timeout:g}s"
                ) from None
            yield entered

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, mcp_types.ToolListChangedNotification):
            self._changed.set()

    async def _watch(self, client: Client) -> None:
        """Return when the session is lost; list the tools anew when they change, and every
        ``health_interval`` (which also finds a server that died quietly)."""
        while True:
            lost = asyncio.ensure_future(self._lost.wait())
            changed = asyncio.ensure_future(self._changed.wait())
            try:
                await asyncio.wait(
                    (lost, changed),
                    timeout=self.health_interval,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                lost.cancel()
                changed.cancel()
            if self._lost.is_set():
                return
            self._changed.clear()
            try:
                before = self.specs
                await self._list(client)
            except Exception as exc:
                log.warning("mcp %s: listing tools failed: %s", self.name, _why(exc))
                return
            if before != self.specs:
                self._notify()

    async def _list(self, client: Client) -> None:
        specs: dict[str, mcp_types.Tool] = {}
        cursor: str | None = None
        async with asyncio.timeout(LIST_TIMEOUT):
            while True:
                params = mcp_types.PaginatedRequestParams(cursor=cursor) if cursor else None
                page = await client.session.list_tools(params=params)
                for spec in page.tools:
                    if self._allowed is None or spec.name in self._allowed:
                        specs[spec.name] = spec
                cursor = page.next_cursor
                if not cursor:
                    break
        self.specs = specs

    def _notify(self) -> None:
        self._tools = {name: MCPTool(self, spec) for name, spec in self.specs.items()}
        for callback in self._listeners:
            callback()


class MCPTool(Tool):
    """An MCP server's tool as an agent's tool: the server's schema, called through its session.

    Its parameters schema is the server's, not derived from a Python signature, so
    :class:`~gateway.tools.Tool`'s constructor (which reads a function) is not used.
    """

    def __init__(self, upstream: MCPUpstream, spec: mcp_types.Tool) -> None:
        self.upstream = upstream
        self.spec = spec
        self.fn = self._call
        self.name = spec.name
        self.description = spec.description or ""
        self.timeout = upstream.timeout
        self.is_async = True
        self.context_param = None
        self.types = {}
        self.parameters = dict(spec.input_schema)

    def __repr__(self) -> str:
        return f"<MCPTool {self.upstream.name}:{self.name}>"

    async def _call(self, **arguments: Any) -> mcp_types.CallToolResult:
        return await self.upstream.call(self.name, arguments)

    async def invoke(
        self, arguments: str, context: ToolContext, default_timeout: float
    ) -> ToolOutcome:
        """Call the tool for a model; every failure is an error outcome the model reads."""
        try:
            parsed = json_arguments(arguments)
        except ValueError as exc:
            return ToolOutcome(f"Error: invalid arguments for {self.name}: {exc}", True)
        try:
            result = await self.upstream.call(self.name, parsed)
        except ToolCallFailed as exc:
            return ToolOutcome(f"Error: {exc}", True)
        except MCPError as exc:
            return ToolOutcome(f"Error: {exc.message}", True)
        return ToolOutcome(result_text(result), result.is_error)


def result_text(result: mcp_types.CallToolResult) -> str:
    """A tool result as the text a model reads: its text blocks, the structured result when
    there is no text, and a note for each block a model cannot read as text."""
    parts: list[str] = []
    for block in result.content:
        if isinstance(block, mcp_types.TextContent):
            parts.append(block.text)
        elif isinstance(block, mcp_types.EmbeddedResource):
            res = block.resource
            if isinstance(res, mcp_types.TextResourceContents):
                parts.append(res.text)
            else:
                parts.append(f"[resource {res.uri} ({res.mime_type or 'binary'})]")
        elif isinstance(block, mcp_types.ResourceLink):
            parts.append(f"[resource link {block.uri}: {block.name}]")
        else:
            parts.append(f"[{block.type} ({getattr(block, 'mime_type', '')})]")
    if not parts and result.structured_content is not None:
        parts.append(orjson.dumps(result.structured_content).decode())
    return "\n".join(parts)


def _why(exc: BaseException) -> str:
    """A readable reason, from the first leaf of an exception group."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return str(exc) or type(exc).__name__
