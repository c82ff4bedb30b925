"""The AG-UI protocol: agent runs streamed to browsers, over SSE or a WebSocket, resumable.

Routes:

- ``POST /agui/agents/{agent}/runs`` and ``POST /agui/runs`` (agent in ``forwardedProps.agent``)
  take a RunAgentInput and stream the run's AG-UI events as SSE (``?format=compact`` for the
  short event names).
- ``GET /agui/ws?run_id=...`` attaches to a run as SSE: replays the events after
  ``Last-Event-ID`` (or from the start), then follows the run live. The same path upgraded to a
  WebSocket runs agents both ways: RunAgentInput messages in, events out, ``{"type": "cancel"}``.
- ``DELETE /agui/runs/{run_id}`` cancels a run and its upstream request.

Runs belong to the key that started them and outlive their connection (see :mod:`gateway.runs`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

import attrs
import orjson
from aiohttp import WSCloseCode, WSMsgType, web

from gateway import (
    BODY_BUDGET,
    EXCHANGE,
    BadRequest,
    BodyBudget,
    ByteSize,
    Count,
    Duration,
    Error,
    Exchange,
    GatewayError,
    NotFound,
    ProtocolAdapter,
    SSEResponse,
    UpstreamError,
    hookimpl,
    json_response,
    read_json,
)
from gateway.protocols.agui.compact import CompactTranslator, compact_frame
from gateway.protocols.agui.events import EventTranslator, RunInput, decode_run_input, sse_frame
from gateway.runs import MemoryRunStore, Run, RunInfo, Runs, RunStore

log = logging.getLogger(__name__)


@attrs.frozen
class AguiConfig:
    """``[agui]``: AG-UI runs."""

    #: Where run logs live: "memory", "redis" (needs [redis] url), or "auto" (Redis when
    #: [redis] url is set). Redis lets a client resume or cancel a run through any instance.
    store: str = "auto"
    #: How long a finished run's events stay available to attach and resume.
    run_ttl: Duration = Duration(600.0)
    #: Finished runs kept at most, all keys together (the oldest go first).
    max_kept_runs: Count = Count(10_000)
    #: Events one run may produce at most; past that it ends with RUN_ERROR (too_many_events).
    max_run_events: Count = Count(100_000)
    #: Bytes of events one run may produce at most (0: no limit); past that it ends with
    #: RUN_ERROR (run_too_large).
    max_run_bytes: ByteSize = ByteSize(16 * 1024**2)
    #: Bytes kept of finished runs, all keys together (0: no limit; the oldest go first).
    #: Counted in the store: through Redis, for every instance together.
    max_kept_bytes: ByteSize = ByteSize(256 * 1024**2)
    #: Bytes kept of one key's finished runs (0: no limit; the key's oldest go first, never
    #: another key's). Counted in the store: through Redis, for every instance together.
    max_kept_bytes_per_key: ByteSize = ByteSize(64 * 1024**2)
    #: A client that accepts no data for this long is disconnected; it may resume later.
    send_timeout: Duration = Duration(30.0)
    #: Seconds between keep-alive comments (SSE) or pings (WebSocket) on quiet streams.
    ping_interval: Duration = Duration(15.0)
    #: RunAgentInput messages a WebSocket may queue while one of its runs is streaming.
    max_queued_runs: Count = Count(8)
    #: Web page origins (``"https://app.example"``, or ``"*"`` for any) whose scripts may call
    #: the AG-UI routes (CORS). None: only pages served from the gateway's own origin.
    cors_origins: tuple[str, ...] = ()


class RunExists(GatewayError):
    status = 409
    kind = "invalid_request"


class AguiProtocol(ProtocolAdapter):
    name = "agui"

    def __init__(self, gateway: Any) -> None:
        super().__init__(gateway)
        self.config: AguiConfig = gateway.config.section("agui")
        self.store = self._store(gateway)

    def _store(self, gateway: Any) -> RunStore:
        cfg, state = self.config, gateway.state
        if cfg.store == "auto" and not state.redis_configured and state.workers > 1:
            # Not refused like explicit memory state: runs still stream from the worker that
            # produces them; only attaching and cancelling through another worker cannot work.
            log.warning(
                "AG-UI runs are kept by each of the %d workers: attaching to a run or "
                "cancelling it works only through the worker running it; set [redis] url",
                state.workers,
            )
            kind = "memory"
        else:
            kind = state.choose("agui.store", cfg.store)
        if kind == "redis":
            from gateway.runs import RedisRunStore

            return RedisRunStore(
                state.redis("agui.store"),
                cfg.run_ttl,
                max_kept=cfg.max_kept_runs,
                max_bytes=cfg.max_kept_bytes,
                max_owner_bytes=cfg.max_kept_bytes_per_key,
            )
        return MemoryRunStore(
            cfg.run_ttl, cfg.max_kept_runs, cfg.max_kept_bytes, cfg.max_kept_bytes_per_key
        )

    def setup(self, app: web.Application) -> None:
        self.runs = Runs(
            self.store,
            max_events=self.config.max_run_events,
            max_bytes=self.config.max_run_bytes,
            streams=self.gateway.streams,
        )
        add = self.gateway.add_route
        add("POST", "/agui/runs", self.start_run, name="agui_run", protocol=self)
        add("POST", "/agui/agents/{agent}/runs", self.start_run, name="agui_run", protocol=self)
        add("GET", "/agui/ws", self.attach, name="agui_attach", protocol=self, query_token=True)
        add("DELETE", "/agui/runs/{run_id}", self.cancel_run, name="agui_cancel", protocol=self)
        app.cleanup_ctx.append(self._lifespan)
        if self.config.cors_origins:
            self._cors = _Cors(self.config.cors_origins)
            for path in _PATHS:
                add("OPTIONS", path, self._cors.preflight, name="agui_preflight", auth=False)
            app.on_response_prepare.append(self._cors.stamp)

    async def _lifespan(self, app: web.Application) -> AsyncIterator[None]:
        await self.store.start()
        try:
            yield
        finally:
            await self.runs.shutdown()
            await self.store.close()

    # -- starting runs

    async def start_run(self, request: web.Request) -> web.StreamResponse:
        ex = request[EXCHANGE]
        compact = _compact(request)
        run_input = decode_run_input(await read_json(request), request.match_info.get("agent"))
        run = await self.begin(run_input, ex)
        return await self.send_sse(request, ex, run.run_id, 0, compact)

    async def begin(self, run_input: RunInput, ex: Exchange) -> Run:
        """Start a run: failures known before its first event are raised (the client gets a
        plain error response); after that the run goes on in the background."""
        # An unknown or forbidden agent is reported before the run id is claimed.
        self.gateway.router.resolve(run_input.request.model, ex.principal)
        run = Run(run_input.run_id, run_input.thread_id, ex.principal.id)
        if not await self.store.reserve(run):
            raise RunExists(
                f"A run with id '{run.run_id}' already exists.", param="runId", code="run_exists"
            )
        events = self.pipeline.stream(run_input.request, ex)
        try:
            first = await anext(events, None)
            if first is None:
                raise UpstreamError("the backend sent an empty stream")
            if type(first) is Error:
                raise first.error
        except BaseException:
            await events.aclose()
            await self.store.release(run)
            raise
        translator = EventTranslator(run.thread_id, run.run_id, run_input.request.model)
        self.runs.launch(run, translator, first, events)
        return run

    # -- following runs

    async def attach(self, request: web.Request) -> web.StreamResponse:
        ex = request[EXCHANGE]
        compact = _compact(request)
        if web.WebSocketResponse().can_prepare(request).ok:
            if compact:
                raise BadRequest("The compact format is for SSE only.", param="format")
            return await self.websocket(request, ex)
        run_id = request.query.get("run_id")
        if not run_id:
            raise BadRequest("'run_id' is required.", param="run_id")
        after = _event_number(
            request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
        )
        await self._owned(run_id, ex)
        return await self.send_sse(request, ex, run_id, after, compact)

    async def _owned(self, run_id: str, ex: Exchange) -> RunInfo:
        """The run, if it exists and belongs to the caller's key (404 otherwise: another key's
        runs are not even acknowledged)."""
        info = await self.store.lookup(ex.principal.id, run_id)
        if info is None:
            raise NotFound(f"No run '{run_id}'.", param="run_id", code="run_not_found")
        return info

    async def send_sse(
        self, request: web.Request, ex: Exchange, run_id: str, after: int, compact: bool
    ) -> web.StreamResponse:
        """Stream a run's events after number ``after`` as SSE, until its terminal event."""
        # The compact form summarises tool calls, so it reads the log from the start.
        source = self.runs.follow(ex.principal.id, run_id, 0 if compact else after)
        resp = SSEResponse(
            self.config.ping_interval,
            {"x-hookgate-run-id": run_id},
            send_timeout=self.config.send_timeout,
        )
        encode = _CompactEncoder(after).encode if compact else _full
        metrics = self.gateway.metrics
        metrics.active_streams.inc()
        seq = after
        try:
            await resp.prepare(request)
            ex.first_byte = time.perf_counter() - ex.started
            async for first, batch in source:
                data = encode(first, batch)
                if data:
                    await resp.write(data)
                seq = first + len(batch) - 1
        except ConnectionResetError:  # gone, or cut by the send timeout (it may resume)
            return resp
        except GatewayError as err:
            # The run's log became unreadable (its store is down): cut the stream rather than
            # end it cleanly, so the client knows to resume later.
            log.warning("run %s: following it failed after event %d: %s", run_id, seq, err)
            if request.transport is not None:
                request.transport.abort()
            return resp
        finally:
            resp.stop_pinging()
            if resp.timed_out:
                log.warning(
                    "run %s: dropped a client that read nothing for %gs (it had events up to %d)",
                    run_id,
                    self.config.send_timeout,
                    seq,
                )
            metrics.active_streams.dec()
            await source.aclose()
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            await resp.write_eof()
        return resp

    # -- cancelling runs

    async def cancel_run(self, request: web.Request) -> web.Response:
        ex = request[EXCHANGE]
        run_id = request.match_info["run_id"]
        info = await self._owned(run_id, ex)
        if info.done:
            raise RunExists(f"The run '{run_id}' has already ended.", code="run_ended")
        await self.runs.cancel(ex.principal.id, run_id)
        return json_response({"runId": run_id, "status": "cancelling"}, status=202)

    # -- WebSocket

    async def websocket(self, request: web.Request, ex: Exchange) -> web.WebSocketResponse:
        """Runs over one WebSocket: RunAgentInput messages start runs, which stream one after
        another (inputs sent meanwhile wait their turn); ``{"type": "cancel"}`` cancels the run
        streaming now (or ``runId``). ``?run_id=`` attaches to a run first.

        A message is bounded like a request body: over ``[server] max_body_size`` the socket
        closes with 1009 (message too big); its bytes count against ``max_bodies_in_flight``
        from its arrival until the run it starts has streamed (like a request's body, until its
        request ends), and past that bound it gets a ``RUN_ERROR`` (code ``busy``) instead of
        a run, the socket staying open."""
        attach = request.query.get("run_id")
        after = _event_number(request.query.get("last_event_id"))
        if attach:
            await self._owned(attach, ex)
        limit = request.client_max_size  # [server] max_body_size
        budget = request.config_dict.get(BODY_BUDGET)
        # aiohttp refuses (1009) a message of max_msg_size bytes or more: one more than the
        # body limit, so a message may be exactly as large as a body.
        ws = web.WebSocketResponse(
            heartbeat=self.config.ping_interval, max_msg_size=limit + 1, decode_text=False
        )
        await ws.prepare(request)
        queue: asyncio.Queue[_Input] = asyncio.Queue(self.config.max_queued_runs)
        session = _Socket(ws, self.config.send_timeout)
        worker = asyncio.create_task(self._ws_worker(session, queue, request, ex, budget))
        if attach:
            queue.put_nowait(_Input("attach", attach, after))
        try:
            async for msg in ws:
                if msg.type is WSMsgType.ERROR:
                    # aiohttp has closed the socket: 1009 for a message over the limit
                    log.info("AG-UI WebSocket closed: %s", msg.data)
                    break
                size = len(msg.data)
                if size > limit:  # a compressed message, one byte over once inflated
                    await ws.close(code=WSCloseCode.MESSAGE_TOO_BIG, message=b"message too big")
                    break
                if budget is not None and not budget.hold(size):
                    await session.error(_BUSY, "busy")
                    continue
                held = size
                try:
                    if msg.type is not WSMsgType.TEXT:
                        await session.error(
                            "Send RunAgentInput messages as JSON text.", "bad_message"
                        )
                        continue
                    try:
                        obj = orjson.loads(msg.data)
                    except orjson.JSONDecodeError:
                        await session.error("The message is not JSON.", "bad_message")
                        continue
                    if isinstance(obj, dict) and str(obj.get("type", "")).lower() == "cancel":
                        target = obj.get("runId") or session.current
                        if isinstance(target, str) and target:
                            with contextlib.suppress(GatewayError):
                                await self._owned(target, ex)
                                await self.runs.cancel(ex.principal.id, target)
                        continue
                    try:
                        queue.put_nowait(_Input("run", obj, size=size))
                        held = 0  # the worker gives it back once the run has streamed
                    except asyncio.QueueFull:
                        await session.error("Too many runs are waiting on this socket.", "busy")
                finally:
                    if held and budget is not None:
                        budget.give(held)
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
            while not queue.empty():  # inputs that never ran
                waiting = queue.get_nowait()
                if waiting.size and budget is not None:
                    budget.give(waiting.size)
        return ws

    async def _ws_worker(
        self,
        session: _Socket,
        queue: asyncio.Queue[_Input],
        request: web.Request,
        ex: Exchange,
        budget: BodyBudget | None,
    ) -> None:
        agent = request.query.get("agent")
        while True:
            item = await queue.get()
            after = item.after
            try:
                if item.kind == "run":
                    run = await self.begin(decode_run_input(item.value, agent), ex)
                    run_id, after = run.run_id, 0
                else:
                    run_id = item.value
                session.current = run_id
                follow = self.runs.follow(ex.principal.id, run_id, after)
                async with contextlib.aclosing(follow) as source:
                    async for _, batch in source:
                        await session.send(batch)
            except GatewayError as err:
                await session.error(err.message, err.code or err.kind)
            except (ConnectionResetError, TimeoutError):
                log.info("WebSocket client of run %s went away or stopped reading", session.current)
                await session.ws.close()
                return
            finally:
                session.current = None
                if item.size and budget is not None:
                    budget.give(item.size)


@attrs.define(slots=True)
class _Input:
    """What a WebSocket's worker does next: start a run from a message (``value``, whose
    ``size`` bytes count against the body budget until the run has streamed) or attach to the
    run ``value`` after event ``after``."""

    kind: Literal["run", "attach"]
    value: Any
    after: int = 0
    size: int = 0


_BUSY = "The gateway is holding too many request bodies; retry shortly."


class _Socket:
    """One WebSocket's sending side."""

    def __init__(self, ws: web.WebSocketResponse, timeout: float) -> None:
        self.ws = ws
        self.timeout = timeout
        self.current: str | None = None

    async def send(self, batch: list[bytes]) -> None:
        async with asyncio.timeout(self.timeout):
            for data in batch:
                await self.ws.send_str(data.decode())

    async def error(self, message: str, code: str) -> None:
        """A RUN_ERROR for an input that could not start a run."""
        event = {
            "type": "RUN_ERROR",
            "message": message,
            "code": code,
            "timestamp": int(time.time() * 1000),
        }
        with contextlib.suppress(ConnectionResetError):
            await self.ws.send_str(orjson.dumps(event).decode())


_PATHS = ("/agui/runs", "/agui/agents/{agent}/runs", "/agui/ws", "/agui/runs/{run_id}")


class _Cors:
    """Cross-origin access to the AG-UI routes for the configured page origins."""

    def __init__(self, origins: tuple[str, ...]) -> None:
        self.any = "*" in origins
        self.origins = frozenset(origins)

    def allowed(self, request: web.Request) -> str | None:
        origin = request.headers.get("Origin")
        if origin and (self.any or origin in self.origins):
            return origin
        return None

    async def preflight(self, request: web.Request) -> web.Response:
        resp = web.Response(status=204)
        if self.allowed(request):
            resp.headers["Access-Control-Allow-Methods"] = "GET, POST, DELETE"
            resp.headers["Access-Control-Allow-Headers"] = request.headers.get(
                "Access-Control-Request-Headers", "authorization, content-type"
            )
            resp.headers["Access-Control-Max-Age"] = "600"
        return resp

    async def stamp(self, request: web.Request, response: web.StreamResponse) -> None:
        """Before any response of an AG-UI route goes out (errors too): the CORS headers."""
        if not request.path.startswith("/agui/"):
            return
        origin = self.allowed(request)
        if origin is not None:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = "x-request-id, x-hookgate-run-id"
            response.headers.add("Vary", "Origin")


def _full(first: int, batch: list[bytes]) -> bytes:
    return b"".join(sse_frame(first + i, data) for i, data in enumerate(batch))


class _CompactEncoder:
    """The compact form of a run's events, numbered like the full events they come from; only
    events after ``after`` are written (a resumed stream)."""

    def __init__(self, after: int) -> None:
        self.after = after
        self.translator = CompactTranslator()

    def encode(self, first: int, batch: list[bytes]) -> bytes:
        out = []
        for i, data in enumerate(batch):
            pair = self.translator.feed(orjson.loads(data))
            if pair is not None and first + i > self.after:
                out.append(compact_frame(first + i, *pair))
        return b"".join(out)


def _compact(request: web.Request) -> bool:
    fmt: Literal["agui", "compact"] | str = request.query.get("format", "agui")
    if fmt not in ("agui", "compact"):
        raise BadRequest("'format' must be 'agui' (the default) or 'compact'.", param="format")
    return fmt == "compact"


def _event_number(value: str | None) -> int:
    if not value:
        return 0
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise BadRequest(
            "Last-Event-ID must be an event number from this run.", param="Last-Event-ID"
        )
    return number


@hookimpl
def gateway_config_sections(register: Any) -> None:
    register("agui", AguiConfig)


@hookimpl
def gateway_register_protocols(register: Any) -> None:
    register("agui", AguiProtocol)
