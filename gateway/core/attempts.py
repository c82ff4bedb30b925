"""One upstream attempt: how the pipeline (and an agent, for each of its steps and tool calls)
calls a backend.

The default calls straight through. An observability plugin replaces
``gateway.pipeline.attempts`` with a subclass that wraps each attempt (a trace span, say); it is
the one place every call to a backend passes, so retries and fallbacks, when a model has
several targets, are each an attempt of their own.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from gateway.backends.base import Backend
    from gateway.canonical import ChatRequest, ChatResponse, Event
    from gateway.exchange import Exchange

T = TypeVar("T")


class Attempts:
    """Calls to backends, unobserved."""

    async def complete(self, backend: Backend, request: ChatRequest, ex: Exchange) -> ChatResponse:
        """``backend.complete(request, ex)``."""
        return await backend.complete(request, ex)

    def stream(
        self, backend: Backend, request: ChatRequest, ex: Exchange
    ) -> AsyncGenerator[Event, None]:
        """``backend.stream(request, ex)``."""
        return backend.stream(request, ex)

    def reads(
        self, backend: Backend, request: ChatRequest, ex: Exchange
    ) -> AsyncGenerator[list[Event], None] | None:
        """The attempt's stream as one list of events for each upstream read, when the backend
        has that form (``Backend._stream_reads``): the pipeline then resumes one generator a
        read rather than one an event. ``None``: the pipeline calls :meth:`stream`. A subclass
        that overrides :meth:`stream` gets ``None`` here unless it overrides this too."""
        if type(self).stream is not Attempts.stream:
            return None
        stream_reads = backend._stream_reads
        return None if stream_reads is None else stream_reads(request, ex)

    async def tool(self, name: str, call_id: str, run: Awaitable[T], ex: Exchange) -> T:
        """An agent's call of its tool ``name``: ``await run``."""
        return await run
