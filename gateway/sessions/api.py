"""The session API: a caller lists, reads and deletes its own sessions.

``GET /v1/sessions`` (``?limit=``, most recently used first), ``GET /v1/sessions/{id}`` (its
messages as Chat Completions messages, system prompt first) and ``DELETE /v1/sessions/{id}``.
Each sees only the sessions of the calling key; another key's session is a 404, like one that
never existed. Errors have OpenAI's shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway import (
    EXCHANGE,
    SESSION_ID,
    BadRequest,
    NotFound,
    SessionInfo,
    SessionStore,
    json_response,
)
from gateway.protocols.openai import encode_messages

if TYPE_CHECKING:
    from gateway import Gateway

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def info_body(info: SessionInfo) -> dict[str, Any]:
    """A session's summary. Times are Unix seconds; ``expires_at`` moves on with every use."""
    return {
        "id": info.id,
        "object": "session",
        "created_at": int(info.created),
        "updated_at": int(info.updated),
        "expires_at": int(info.expires),
        "message_count": info.messages,
        "approx_tokens": info.tokens,
    }


class SessionAPI:
    def __init__(self, store: SessionStore) -> None:
        self.store = store

    async def list(self, request: web.Request) -> web.Response:
        raw = request.query.get("limit", str(DEFAULT_LIMIT))
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
            raise BadRequest(f"'limit' must be a number from 1 to {MAX_LIMIT}.", param="limit")
        owner = request[EXCHANGE].principal.id
        sessions, more = await self.store.list(owner, int(raw))
        return json_response(
            {"object": "list", "data": [info_body(i) for i in sessions], "has_more": more}
        )

    async def get(self, request: web.Request) -> web.Response:
        session = _session_id(request)
        found = await self.store.load(request[EXCHANGE].principal.id, session, touch=False)
        if found is None:
            raise _not_found(session)
        body = info_body(found.info)
        body["messages"] = encode_messages([*found.system, *found.messages])
        return json_response(body)

    async def delete(self, request: web.Request) -> web.Response:
        session = _session_id(request)
        if not await self.store.delete(request[EXCHANGE].principal.id, session):
            raise _not_found(session)
        return json_response({"id": session, "object": "session.deleted", "deleted": True})


def _session_id(request: web.Request) -> str:
    session = request.match_info["session_id"]
    if not SESSION_ID.fullmatch(session):
        raise BadRequest(
            "A session id is 1 to 256 printable ASCII characters without spaces.",
            param="session_id",
        )
    return session


def _not_found(session: str) -> NotFound:
    return NotFound(f"No session '{session}' for this API key.", code="session_not_found")


def add_routes(gateway: Gateway, store: SessionStore) -> None:
    api = SessionAPI(store)
    gateway.add_route("GET", "/v1/sessions", api.list, name="sessions")
    gateway.add_route("GET", "/v1/sessions/{session_id}", api.get, name="session")
    gateway.add_route("DELETE", "/v1/sessions/{session_id}", api.delete, name="session_delete")
