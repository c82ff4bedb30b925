"""The ``sessions`` plugin: the gateway keeps the conversation of requests that name a session.

A request names a session with the ``X-Session-Id`` header (any protocol) or, in the OpenAI
protocol, ``metadata.session_id``. The filter then, for the caller's principal only:

- before routing, loads the session and sends ``system prompt + history + new messages``. The
  system prompt is the system/developer messages of the request when it has any, else the ones
  the session last stored;
- after a successful answer, appends the new messages (system ones aside) and the reply, tool
  calls included, and stores the request's system messages (when it had any) as the session's
  system prompt. A failed or cancelled request appends nothing.

The store is ``[sessions] store`` (memory, redis or a plugin's, registered with
``gateway_register_session_stores``); "auto", the default, is Redis when ``[redis] url`` is set,
else memory (one process). When no store can serve (``"off"``, or several workers without
Redis) a request naming a session is refused with the reason, never answered without its
history.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from gateway import (
    SESSION_ID,
    BadRequest,
    ChatRequest,
    ChatResponse,
    ConfigError,
    Entry,
    Exchange,
    Filter,
    Message,
    SessionConfig,
    SessionStore,
    TextPart,
    hookimpl,
    message_tokens,
)
from gateway.sessions import api, codec

if TYPE_CHECKING:
    from gateway import Gateway

log = logging.getLogger(__name__)

SESSION_HEADER = "x-session-id"
#: Keys of this plugin's values in ``Exchange.notes``.
_TURN = "sessions.turn"

SESSION_STORE: web.AppKey[SessionStore] = web.AppKey("hookgate.sessions.store", SessionStore)


class _Turn:
    """What ``on_request`` learned for ``on_success``: the client's new messages, encoded as they
    came (later filters may edit the request), and its system prompt."""

    __slots__ = ("count", "encoded", "session", "starts_user", "system", "tokens")

    def __init__(self, session: str, new: list[Message], system: list[Message]) -> None:
        self.session = session
        self.encoded = [codec.encode_message(m) for m in new]
        self.count = len(new)
        self.tokens = message_tokens(new)
        self.starts_user = bool(new) and new[0].role == "user"
        self.system = codec.dumps(system) if system else None

    def entry(self, reply: Message) -> Entry:
        return Entry(
            orjson.dumps([*self.encoded, codec.encode_message(reply)]),
            self.count + 1,
            self.tokens + message_tokens([reply]),
            self.starts_user,
        )


class SessionFilter(Filter):
    """Prepends a named session's history; appends each successful turn to it.

    Without a store (sessions off, or no store that several workers could share) it refuses
    requests that name a session, with the reason: answering them without their history would
    lose the conversation silently.
    """

    name = "sessions"
    #: Early, so other filters (redaction, guardrails) see the whole conversation.
    order = -100
    #: A request with a session is taken off the raw relay; others are not recorded.
    reads_relayed = False
    #: Only a request with a session has its turn stored.
    success_note = _TURN

    def __init__(self, store: SessionStore | None, unavailable: str = "") -> None:
        self.store = store
        self.unavailable = unavailable

    async def on_request(self, request: ChatRequest, exchange: Exchange) -> ChatRequest | None:
        session = request.session_id
        http = exchange.http
        header = http.headers.get(SESSION_HEADER) if http is not None else None
        if header is not None:
            if session is not None and session != header:
                raise BadRequest(
                    "The X-Session-Id header and metadata.session_id name different sessions.",
                    param="metadata.session_id",
                )
            session = header
        if session is None:
            return None
        if not SESSION_ID.fullmatch(session):
            raise BadRequest(
                "A session id is 1 to 256 printable ASCII characters without spaces.",
                param="session_id",
            )
        if self.store is None:
            raise BadRequest(self.unavailable, param="session_id", code="sessions_unavailable")
        request.session_id = session
        # The end of the stream is sent only once the turn is stored (a relayed stream would
        # carry the upstream's end marker before the store was asked).
        request.raw_relay = False
        stored = await self.store.load(exchange.principal.id, session)
        system = [m for m in request.messages if m.role in ("system", "developer")]
        new = [m for m in request.messages if m.role not in ("system", "developer")]
        exchange.note(_TURN, _Turn(session, new, system))
        changed = _drop_session_metadata(request)
        if stored is not None and (stored.messages or (stored.system and not system)):
            request.messages = [*(system or stored.system), *stored.messages, *new]
            changed = True
        return request if changed else None

    async def on_success(
        self, request: ChatRequest, response: ChatResponse, exchange: Exchange
    ) -> None:
        turn = exchange.notes.get(_TURN) if exchange.notes else None
        if turn is None or self.store is None:
            return
        entry = turn.entry(_replayable(response.message))
        await self.store.append(exchange.principal.id, turn.session, entry, turn.system)


def _drop_session_metadata(request: ChatRequest) -> bool:
    """The gateway consumed ``metadata.session_id``: the upstream does not get it."""
    metadata = request.metadata
    if not metadata or "session_id" not in metadata:
        return False
    rest = {k: v for k, v in metadata.items() if k != "session_id"}
    request.metadata = rest or None
    return True


def _replayable(reply: Message) -> Message:
    """The reply as the next request will send it back: its parts, and of the answer-only
    fields only a refusal (an assistant message needs content, tool calls or a refusal)."""
    refusal = (reply.extra or {}).get("refusal")
    parts = reply.parts or ([] if refusal else [TextPart("")])
    return Message("assistant", parts, reply.name, {"refusal": refusal} if refusal else None)


def build_store(gateway: Gateway) -> tuple[SessionStore | None, str]:
    """The configured store, or ``None`` and the reason sessions are unavailable."""
    cfg: SessionConfig = gateway.config.section("sessions")
    name = cfg.store
    if name == "off":
        return None, 'Sessions are off on this gateway ([sessions] store = "off").'
    if name == "auto":
        if gateway.state.redis_configured:
            name = "redis"
        elif gateway.state.workers > 1:
            log.warning(
                "sessions are unavailable: %d workers need [redis] url to share them",
                gateway.state.workers,
            )
            return None, (
                "Sessions are unavailable: this gateway runs several worker processes "
                "and no Redis to share conversations between them ([redis] url)."
            )
        else:
            name = "memory"
    reg = gateway.registry.session_stores.get(name)
    if reg is None:
        known = ", ".join(["off", "auto", *sorted(gateway.registry.session_stores.names())])
        raise ConfigError([f"sessions.store: unknown session store {name!r} (known: {known})"])
    store = reg.value(gateway)
    log.info("sessions kept in the %s store", name)
    return store, ""


@hookimpl
def gateway_config_sections(register: Any) -> None:
    register("sessions", SessionConfig)


@hookimpl
def gateway_register_filters(register: Any) -> None:
    def factory(gateway: Gateway) -> SessionFilter:
        return SessionFilter(*build_store(gateway))

    register("sessions", factory)


@hookimpl
def gateway_configure_app(app: web.Application, gateway: Gateway) -> None:
    flt = next((f for f in gateway.filters if isinstance(f, SessionFilter)), None)
    if flt is None:
        return
    store = flt.store
    if store is None:
        return
    app[SESSION_STORE] = store
    api.add_routes(gateway, store)

    async def lifespan(app: web.Application) -> Any:
        yield
        await store.close()

    app.cleanup_ctx.append(lifespan)
