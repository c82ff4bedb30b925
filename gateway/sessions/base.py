"""What a session store is, the ``[sessions]`` section, and the bounds every store applies.

A session is one caller's conversation under an id the client chooses. Stores keep it as
**entries**, one per successful request: the messages the client sent (its new turn) followed by
the assistant's reply. Trimming drops whole entries from the oldest, and only so that the history
left starts with a user message, so a tool result is never kept without the call it answers. The
session's **system prompt** (the system and developer messages the client last sent) is kept
apart from the entries and never trimmed.

Stores are registered with ``gateway_register_session_stores``; ``factory(gateway)`` returns a
:class:`SessionStore`. Every method is scoped by ``owner``, the caller's
:attr:`~gateway.exchange.Principal.id`, so one API key can never see or extend another's sessions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import attrs

from gateway.canonical import Message
from gateway.config.types import Count, Duration, NonNegative
from gateway.core.tokens import message_tokens
from gateway.sessions import codec


@attrs.frozen
class SessionConfig:
    """``[sessions]``: conversation history kept by the gateway for requests that name a session."""

    #: ``HOOKGATE_SESSION_BACKEND``: "auto" (redis when [redis] url is set, else memory in one
    #: process), "memory", "redis", "off", or a plugin's store.
    store: str = "auto"
    #: A session unused this long is forgotten (every request that names it starts it afresh).
    ttl: Duration = Duration(24 * 3600.0)
    #: Messages kept per session at most (the system prompt aside); the oldest turns go first.
    max_messages: Count = Count(100)
    #: Approximate tokens (about four characters each) kept per session; 0: no token budget.
    max_tokens: NonNegative = NonNegative(32000)
    #: Sessions the memory store keeps at most; the least recently used go first.
    max_sessions: Count = Count(10000)


#: Session ids: 1 to 256 printable ASCII characters, no spaces.
SESSION_ID = re.compile(r"[\x21-\x7e]{1,256}")


@attrs.frozen
class Entry:
    """One stored request: its new messages and the reply, encoded, with their size."""

    data: bytes
    messages: int
    tokens: int
    #: Whether the entry starts with a user message: only there may a trim cut the history.
    starts_user: bool

    @classmethod
    def of(cls, messages: list[Message]) -> Entry:
        return cls(
            codec.dumps(messages),
            len(messages),
            message_tokens(messages),
            bool(messages) and messages[0].role == "user",
        )

    def header(self) -> str:
        """``"<messages> <tokens> <starts_user 0|1>"``: what trimming reads (Redis keeps it)."""
        return f"{self.messages} {self.tokens} {int(self.starts_user)}"


@attrs.frozen
class SessionInfo:
    """A session's summary. Times are Unix seconds; ``expires`` is when it will be forgotten
    unless used again."""

    id: str
    created: float
    updated: float
    expires: float
    messages: int
    tokens: int


@attrs.define
class Session:
    """A stored conversation: its system prompt, its messages, oldest first, and its summary."""

    info: SessionInfo
    system: list[Message]
    messages: list[Message]


class SessionStore:
    """Base class of session stores. Every method may raise
    :class:`~gateway.errors.GatewayError` (an unreachable store is ``Unavailable``)."""

    def __init__(self, config: SessionConfig) -> None:
        self.config = config
        self.ttl = float(config.ttl)
        self.max_messages = int(config.max_messages)
        self.max_tokens = int(config.max_tokens) or (1 << 62)

    async def load(self, owner: str, session: str, *, touch: bool = True) -> Session | None:
        """The session, or ``None`` when there is none. ``touch`` counts it as used (its
        time-to-live starts again), as a request naming it does."""
        raise NotImplementedError

    async def append(
        self, owner: str, session: str, entry: Entry, system: bytes | None = None
    ) -> None:
        """Add ``entry`` and trim, atomically (concurrent appends all land); ``system`` (encoded
        messages) replaces the stored system prompt when given. Creates the session if needed."""
        raise NotImplementedError

    async def list(self, owner: str, limit: int) -> tuple[list[SessionInfo], bool]:
        """``owner``'s sessions, most recently used first, at most ``limit`` of them, and
        whether there are more."""
        raise NotImplementedError

    async def delete(self, owner: str, session: str) -> bool:
        """Forget the session; whether it existed."""
        raise NotImplementedError

    async def close(self) -> None:
        """Release resources (called when the app stops)."""


def decode_messages(data: bytes) -> list[Message]:
    """Messages a store keeps encoded, decoded: an :class:`Entry`'s ``data``, or the system
    prompt :meth:`SessionStore.append` receives."""
    return codec.loads(data)


def trim(
    headers: Sequence[tuple[int, int, bool]], messages: int, tokens: int, limits: SessionStore
) -> tuple[int, int, int]:
    """How many of the oldest entries to drop to fit the bounds, and the messages and tokens
    they hold: ``(entries, messages, tokens)``.

    ``headers`` are ``(messages, tokens, starts_user)`` of every entry, oldest first. A cut may
    only fall right before an entry that starts with a user message, and the newest entry is
    always kept; when no cut brings the session within bounds, it is cut at the last place it
    may be (the bounds are approximate). The Redis store's Lua script follows the same rule.
    """
    if messages <= limits.max_messages and tokens <= limits.max_tokens:
        return 0, 0, 0
    cut = cut_m = cut_t = 0
    dropped_m = dropped_t = 0
    for i in range(len(headers) - 1):
        dropped_m += headers[i][0]
        dropped_t += headers[i][1]
        if headers[i + 1][2]:
            cut, cut_m, cut_t = i + 1, dropped_m, dropped_t
            if messages - cut_m <= limits.max_messages and tokens - cut_t <= limits.max_tokens:
                break
    return cut, cut_m, cut_t
