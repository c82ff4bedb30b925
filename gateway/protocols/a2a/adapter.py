"""The A2A protocol: the gateway's agents, discoverable and callable by any Agent2Agent client.

Routes (cards are public; the JSON-RPC endpoints need a key when keys are configured):

- ``GET /.well-known/agent-card.json`` and ``GET /a2a/{agent}/.well-known/agent-card.json``: the
  gateway's card (its agents as skills) and each agent's card, in the version the request's
  ``A2A-Version`` names (1.0 without one); ``.../agent.json``: the 0.3 card. Cards carry
  ``Cache-Control: max-age``, an ``ETag`` and ``Last-Modified``, and answer conditional requests
  with 304.
- ``POST /a2a/{agent}``: JSON-RPC 2.0 for that agent; ``POST /a2a``: the same for any agent of
  the gateway (``metadata.agent`` names it when there are several). A trailing slash is
  tolerated; any other path under ``/a2a`` is a JSON-RPC 404.

Methods: SendMessage, SendStreamingMessage (SSE), GetTask, ListTasks, CancelTask,
SubscribeToTask (protocol 1.0), and message/send, message/stream, tasks/get, tasks/cancel,
tasks/resubscribe (0.3). The ``A2A-Version`` header picks the version (none: 0.3); a request
without the header may also use 1.0 method names, which no 0.3 client sends. A 0.3 streaming
method that fails before its stream starts answers an event stream carrying the error, which is
what 0.3 clients read.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from email.utils import formatdate
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import attrs
import orjson
from aiohttp import web

from gateway import (
    EXCHANGE,
    Count,
    Duration,
    GatewayError,
    NonNegative,
    NotFound,
    ProtocolAdapter,
    SSEResponse,
    __version__,
    hookimpl,
)
from gateway.protocols.a2a import jsonrpc
from gateway.protocols.a2a.cards import AgentInfo, agent_card, gateway_card
from gateway.protocols.a2a.jsonrpc import (
    ExtendedCardNotConfigured,
    InvalidParams,
    MethodNotFound,
    PushNotificationNotSupported,
    UnsupportedOperation,
    VersionNotSupported,
)
from gateway.protocols.a2a.service import TaskService
from gateway.protocols.a2a.task_events import trimmed
from gateway.protocols.a2a.tasks import TaskRecord
from gateway.protocols.a2a.wire import (
    TERMINAL,
    V03,
    V1,
    check_output_modes,
    decode_message,
    result_to_03,
    task_to_03,
    version_of,
)

if TYPE_CHECKING:
    from gateway import ServedAgent

log = logging.getLogger(__name__)


@attrs.frozen
class A2AConfig:
    """``[a2a]``: agents served over Agent2Agent."""

    #: Where tasks live: "memory", "redis" (needs [redis] url), or "auto" (Redis when
    #: [redis] url is set). Redis lets any instance answer GetTask, cancel or resume a task.
    store: str = "auto"
    #: How long a task stays readable (GetTask, ListTasks, the next message of its context)
    #: after its last change.
    task_ttl: Duration = Duration(86400.0)
    #: Tasks the memory store keeps at most (the least recently changed go first).
    max_kept_tasks: Count = Count(10_000)
    #: Stream results one task may produce at most; past that it fails (too_many_events).
    max_task_events: Count = Count(100_000)
    #: Messages of earlier completed tasks of the same contextId the agent sees; 0: none.
    context_messages: NonNegative = NonNegative(50)
    #: How long clients and caches may keep a card before asking again (``Cache-Control:
    #: max-age``); they may revalidate it with its ``ETag`` or ``Last-Modified``.
    card_max_age: Duration = Duration(300.0)
    #: How long CancelTask waits for the run to stop before answering with the task as it is.
    cancel_timeout: Duration = Duration(10.0)
    #: A client that accepts no data for this long is disconnected (the task goes on).
    send_timeout: Duration = Duration(30.0)
    #: Seconds between keep-alive comments on quiet streams.
    ping_interval: Duration = Duration(15.0)
    #: The gateway's public base URL, for the urls in cards ("https://gw.example"); empty: the
    #: address the card request reached (its Host header only when ``allowed_hosts`` lists it,
    #: so a forged Host is never written into a card).
    public_url: str = ""
    #: Host names (``"gw.example"``, ``"gw.example:8443"``) whose Host header may name the
    #: gateway in cards when ``public_url`` is empty.
    allowed_hosts: tuple[str, ...] = ()
    #: The gateway card's name and description.
    name: str = "hookgate"
    description: str = "Agents served by hookgate."


Handler = Callable[[jsonrpc.Call], Awaitable[web.StreamResponse]]
_HOST = re.compile(r"[A-Za-z0-9.\-]{1,253}(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](:[0-9]{1,5})?")

#: The 0.3 methods whose answer is an event stream.
_STREAMING_03 = frozenset({"message/stream", "tasks/resubscribe"})
SSE_TYPE = "text/event-stream"


class A2AProtocol(ProtocolAdapter):
    name = "a2a"

    def __init__(self, gateway: Any) -> None:
        super().__init__(gateway)
        cfg: A2AConfig = gateway.config.section("a2a")
        self.config = cfg
        self.public_url = cfg.public_url.rstrip("/")
        self._allowed_hosts = frozenset(h.lower() for h in cfg.allowed_hosts)
        if self.public_url and not self.public_url.startswith(("http://", "https://")):
            from gateway import ConfigError

            raise ConfigError([f"a2a.public_url: not a URL: {cfg.public_url!r}"])
        #: Cards change only with the configuration: this instance's start is their date.
        self.cards_modified = int(time.time())
        self.service = TaskService(
            gateway,
            store=cfg.store,
            task_ttl=cfg.task_ttl,
            max_kept=cfg.max_kept_tasks,
            max_events=cfg.max_task_events,
            context_messages=cfg.context_messages,
        )
        self.methods: dict[str, tuple[str, Handler]] = {
            "SendMessage": (V1, self.send),
            "SendStreamingMessage": (V1, self.send_streaming),
            "GetTask": (V1, self.get_task),
            "ListTasks": (V1, self.list_tasks),
            "CancelTask": (V1, self.cancel_task),
            "SubscribeToTask": (V1, self.subscribe),
            "message/send": (V03, self.send),
            "message/stream": (V03, self.send_streaming),
            "tasks/get": (V03, self.get_task),
            "tasks/cancel": (V03, self.cancel_task),
            "tasks/resubscribe": (V03, self.subscribe),
        }
        for method in (
            "CreateTaskPushNotificationConfig",
            "GetTaskPushNotificationConfig",
            "ListTaskPushNotificationConfigs",
            "DeleteTaskPushNotificationConfig",
        ):
            self.methods[method] = (V1, self.no_push)
        for method in ("set", "get", "list", "delete"):
            self.methods[f"tasks/pushNotificationConfig/{method}"] = (V03, self.no_push)
        self.methods["GetExtendedAgentCard"] = (V1, self.no_extended_card)
        self.methods["agent/getAuthenticatedExtendedCard"] = (V03, self.no_extended_card)

    def setup(self, app: web.Application) -> None:
        self.service.setup(self.gateway.streams)
        add = self.gateway.add_route
        for prefix in ("", "/a2a/{agent}"):
            for path, legacy in (
                ("/.well-known/agent-card.json", False),
                ("/.well-known/agent.json", True),
            ):
                add(
                    "GET",
                    prefix + path,
                    self._card_handler(legacy),
                    name="a2a_card",
                    protocol=self,
                    auth=False,
                )
        for path in ("/a2a", "/a2a/", "/a2a/{agent}", "/a2a/{agent}/"):
            add("POST", path, self.rpc, name="a2a", protocol=self)
        for path in ("/a2a", "/a2a/{agent}", "/a2a/{agent}/{rest:.*}"):
            add("*", path, self.no_endpoint, name="a2a", protocol=self, auth=False)
        app.cleanup_ctx.append(self._lifespan)

    async def _lifespan(self, app: web.Application) -> AsyncIterator[None]:
        await self.service.start()
        try:
            yield
        finally:
            await self.service.close()

    def error_body(self, err: GatewayError) -> Any:
        return orjson.loads(jsonrpc.error_response(None, err))

    def error_response(self, err: GatewayError, request_id: str | None = None) -> web.Response:
        resp = super().error_response(err, request_id)
        if err.status == 401:
            resp.headers["WWW-Authenticate"] = 'Bearer realm="hookgate"'
        return resp

    async def no_endpoint(self, request: web.Request) -> web.Response:
        """Any other request under ``/a2a``: a JSON-RPC error, never a plain 404."""
        raise NotFound(
            f"No A2A endpoint at {request.method} {request.path}: agents answer JSON-RPC at "
            "POST /a2a/<agent>, their cards at /a2a/<agent>/.well-known/agent-card.json.",
            code="not_found",
        )

    # -- cards

    def _agents(self, request: web.Request) -> dict[str, ServedAgent]:
        return self.gateway.agents

    def _agent(self, request: web.Request) -> str | None:
        """The agent an agent route names (404 when it is no agent), ``None`` on gateway routes."""
        name = request.match_info.get("agent")
        if name is not None and name not in self._agents(request):
            raise NotFound(f"No agent '{name}' is served here.", code="agent_not_found")
        return name

    def _base(self, request: web.Request) -> str:
        """The base of the urls in cards: ``public_url``; else the request's Host when it is
        allowed, else the local address the request reached (a Host header is the client's
        to forge)."""
        if self.public_url:
            return self.public_url
        host = request.headers.get("host", "")
        if host and host.lower() in self._allowed_hosts and _HOST.fullmatch(host):
            return f"{request.scheme}://{host}"
        sock = request.transport.get_extra_info("sockname") if request.transport else None
        if isinstance(sock, tuple) and len(sock) >= 2:
            address = str(sock[0])
            if ":" in address:
                address = f"[{address}]"
            return f"{request.scheme}://{address}:{sock[1]}"
        return f"{request.scheme}://localhost"

    def _card_handler(self, legacy: bool) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            agent = self._agent(request)
            header = request.headers.get("A2A-Version")
            form = V03 if legacy or (header and version_of(header) == V03) else V1
            base = self._base(request)
            secured = self.gateway.auth_enabled
            agents = self._agents(request)
            if agent is not None:
                body = agent_card(
                    _info(agents[agent]), _url(base, agent), __version__, secured, form
                )
            else:
                body = gateway_card(
                    [_info(b) for b in agents.values()],
                    base,
                    name=self.config.name,
                    description=self.config.description,
                    version=__version__,
                    secured=secured,
                    form=form,
                    agent_url=lambda name: _url(base, name),
                )
            return self._card_response(request, orjson.dumps(body))

        return handler

    def _card_response(self, request: web.Request, data: bytes) -> web.Response:
        """A card with its cache headers, or 304 when the client's copy is current."""
        etag = hashlib.sha256(data).hexdigest()[:32]
        headers = {
            "Vary": "A2A-Version",
            "Cache-Control": f"public, max-age={int(self.config.card_max_age)}",
            "ETag": f'"{etag}"',
            "Last-Modified": formatdate(self.cards_modified, usegmt=True),
        }
        matches = request.if_none_match
        if matches is not None:
            fresh = any(m.value in (etag, "*") for m in matches)
        else:
            since = request.if_modified_since
            fresh = since is not None and since.timestamp() >= self.cards_modified
        if fresh:
            return web.Response(status=304, headers=headers)
        return web.Response(body=data, content_type="application/json", headers=headers)

    # -- JSON-RPC

    async def rpc(self, request: web.Request) -> web.StreamResponse:
        ex = request[EXCHANGE]
        agent = self._agent(request)
        header = request.headers.get("A2A-Version")
        version = version_of(header) or V1
        rid: Any = None
        method: str | None = None
        try:
            body = await jsonrpc.read_request(request)
            if isinstance(body, dict) and jsonrpc.valid_id(body.get("id")):
                rid = body.get("id")
                if isinstance(body.get("method"), str):
                    method = body["method"]
            method, params = jsonrpc.envelope(body)
            version, handler = self._method(method, header)
            return await handler(jsonrpc.Call(request, ex, agent, rid, version, params))
        except GatewayError as err:
            if err.status >= 500:
                log.warning("A2A call failed (request %s): %s", ex.request_id, err.message)
            error = jsonrpc.error_response(rid, err, version)
            if method in _STREAMING_03 and version != V1:
                # 0.3 clients read a streaming method's answer as an event stream, errors too
                return web.Response(body=b"data: " + error + b"\n\n", content_type=SSE_TYPE)
            return jsonrpc.json_reply(error)
        except web.HTTPException:
            raise
        except Exception:
            # A fault of the gateway's own still answers the call by its id (-32603).
            log.exception("A2A call failed (request %s)", ex.request_id)
            failed = GatewayError("The gateway failed to handle the request.")
            return jsonrpc.json_reply(jsonrpc.error_response(rid, failed, version))

    def _method(self, method: str, header: str | None) -> tuple[str, Handler]:
        found = self.methods.get(method)
        if found is None:
            raise MethodNotFound(f"No method '{method}'.", param="method")
        version, handler = found
        asked = version_of(header)
        if asked is None:
            raise VersionNotSupported(
                f"A2A-Version {header!r} is not supported; this agent speaks 1.0 and 0.3.",
                code="version_not_supported",
            )
        if header and asked != version:
            raise VersionNotSupported(
                f"'{method}' is a method of A2A {version}, but the request says A2A-Version "
                f"{header}.",
                code="version_not_supported",
            )
        return version, handler

    def _target(self, call: jsonrpc.Call, *metas: Any) -> str:
        """The agent a message is for: the route's, or on the gateway route ``metadata.agent``
        (or the only agent)."""
        if call.agent is not None:
            return call.agent
        agents = self._agents(call.request)
        for meta in metas:
            named = meta.get("agent") if isinstance(meta, dict) else None
            if named is not None:
                if named not in agents:
                    raise InvalidParams(
                        f"No agent '{named}' is served here.", param="metadata.agent"
                    )
                return str(named)
        if len(agents) == 1:
            return next(iter(agents))
        names = ", ".join(sorted(agents)) or "none"
        raise InvalidParams(
            f"Name the agent: POST /a2a/<agent>, or metadata.agent (agents: {names}).",
            param="metadata.agent",
        )

    async def _begin(self, call: jsonrpc.Call) -> tuple[TaskRecord, dict[str, Any]]:
        params = call.params
        configuration = jsonrpc.object_param(params.get("configuration"), "configuration")
        if configuration.get("taskPushNotificationConfig") or configuration.get(
            "pushNotificationConfig"
        ):
            raise PushNotificationNotSupported(
                "This agent sends no push notifications; stream or poll the task instead.",
                param="configuration.taskPushNotificationConfig",
            )
        check_output_modes(configuration.get("acceptedOutputModes"))
        jsonrpc.history_length(configuration.get("historyLength"), "configuration.historyLength")
        message = decode_message(params.get("message"), call.version)
        if message["role"] != "ROLE_USER":
            raise InvalidParams("A message to an agent comes from the user.", param="message.role")
        metadata = params.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise InvalidParams("'metadata' must be an object.", param="metadata")
        target = self._target(call, metadata, message.get("metadata"))
        record = await self.service.create(target, message, call.ex, metadata)
        return record, configuration

    async def send(self, call: jsonrpc.Call) -> web.StreamResponse:
        record, configuration = await self._begin(call)
        if configuration.get("returnImmediately") or configuration.get("blocking") is False:
            task = record.task
        else:
            task = await self.service.wait(call.owner, record)
        task = trimmed(task, configuration.get("historyLength"))
        return call.reply({"task": task} if call.version == V1 else task_to_03(task))

    async def send_streaming(self, call: jsonrpc.Call) -> web.StreamResponse:
        record, _ = await self._begin(call)
        return await self._stream(call, record, self.service.events(call.owner, record))

    async def get_task(self, call: jsonrpc.Call) -> web.StreamResponse:
        length = jsonrpc.history_length(call.params.get("historyLength"), "historyLength")
        record = await self.service.find(call.owner, call.params.get("id"), call.agent)
        return call.task(trimmed(await self.service.current(call.owner, record), length))

    async def list_tasks(self, call: jsonrpc.Call) -> web.StreamResponse:
        params = call.params
        length = jsonrpc.history_length(params.get("historyLength"), "historyLength")
        size = params.get("pageSize", 50)
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 100:
            raise InvalidParams(
                "'pageSize' must be a whole number from 1 to 100.", param="pageSize"
            )
        state = params.get("status")
        if state is not None and (
            not isinstance(state, str) or not state.startswith("TASK_STATE_")
        ):
            raise InvalidParams("'status' must be a TaskState (TASK_STATE_...).", param="status")
        strings = {}
        for key in ("contextId", "pageToken", "statusTimestampAfter"):
            value = params.get(key)
            if value is not None and not isinstance(value, str):
                raise InvalidParams(f"'{key}' must be a string.", param=key)
            strings[key] = value or None
        after = strings["statusTimestampAfter"]
        page, token, total = await self.service.list(
            call.owner,
            call.agent,
            context_id=strings["contextId"],
            state=None if state in (None, "TASK_STATE_UNSPECIFIED") else state,
            after=None if after is None else _instant(after, "statusTimestampAfter"),
            page_size=size,
            page_token=strings["pageToken"],
        )
        artifacts = bool(params.get("includeArtifacts"))
        return call.reply(
            {
                "tasks": [trimmed(r.task, length, artifacts) for r in page],
                "nextPageToken": token,
                "pageSize": size,
                "totalSize": total,
            }
        )

    async def cancel_task(self, call: jsonrpc.Call) -> web.StreamResponse:
        record = await self.service.find(call.owner, call.params.get("id"), call.agent)
        return call.task(await self.service.cancel(call.owner, record, self.config.cancel_timeout))

    async def subscribe(self, call: jsonrpc.Call) -> web.StreamResponse:
        record = await self.service.find(call.owner, call.params.get("id"), call.agent)
        state = (await self.service.current(call.owner, record))["status"]["state"]
        if state in TERMINAL:
            raise UnsupportedOperation(
                f"The task '{record.id}' has ended ({state}); read it with GetTask.",
                code="task_ended",
            )
        return await self._stream(
            call, record, self.service.events(call.owner, record, snapshot=True)
        )

    async def no_push(self, call: jsonrpc.Call) -> web.StreamResponse:
        raise PushNotificationNotSupported(
            "This agent sends no push notifications; stream or poll the task instead."
        )

    async def no_extended_card(self, call: jsonrpc.Call) -> web.StreamResponse:
        raise ExtendedCardNotConfigured("This agent has no extended card; its card says it all.")

    # -- streams

    async def _stream(
        self, call: jsonrpc.Call, record: TaskRecord, results: AsyncGenerator[bytes, None]
    ) -> web.StreamResponse:
        """Send stream results as SSE frames of JSON-RPC responses until the task's stream
        ends. A client that goes away stops only its own stream: the task goes on."""
        request, version = call.request, call.version
        head = b'data: {"jsonrpc":"2.0","id":' + orjson.dumps(call.id) + b',"result":'
        resp = SSEResponse(
            self.config.ping_interval,
            {"x-hookgate-task-id": record.id},
            send_timeout=self.config.send_timeout,
        )
        metrics = self.gateway.metrics
        metrics.active_streams.inc()
        try:
            await resp.prepare(request)
            call.ex.first_byte = time.perf_counter() - call.ex.started
            async for data in results:
                if version != V1:
                    data = orjson.dumps(result_to_03(orjson.loads(data)))
                await resp.write(head + data + b"}\n\n")
        except ConnectionResetError:  # gone, or cut by the send timeout
            return resp
        except GatewayError as err:
            log.warning("task %s: following it failed: %s", record.id, err.message)
            with contextlib.suppress(ConnectionResetError):
                error = jsonrpc.error_response(call.id, err, version)
                await resp.write(b"data: " + error + b"\n\n")
        finally:
            resp.stop_pinging()
            if resp.timed_out:
                log.warning(
                    "task %s: dropped a client that read nothing for %gs",
                    record.id,
                    self.config.send_timeout,
                )
            metrics.active_streams.dec()
            await results.aclose()
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            await resp.write_eof()
        return resp


def _instant(text: str, where: str) -> float:
    """An RFC 3339 timestamp as seconds since the epoch."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidParams(
            f"'{where}' must be an RFC 3339 timestamp (2026-01-31T12:00:00Z).", param=where
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _info(agent: ServedAgent) -> AgentInfo:
    tools = tuple((t.name, t.description or "") for t in agent.definitions)
    description = agent.description or f"The agent {agent.name}." + (
        f" It can use: {', '.join(name for name, _ in tools)}." if tools else ""
    )
    return AgentInfo(agent.name, description, tools)


def _url(base: str, agent: str) -> str:
    return f"{base}/a2a/{quote(agent, safe='')}"


@hookimpl
def gateway_config_sections(register: Any) -> None:
    register("a2a", A2AConfig)


@hookimpl
def gateway_register_protocols(register: Any) -> None:
    register("a2a", A2AProtocol)
