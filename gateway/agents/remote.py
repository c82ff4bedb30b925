"""Remote A2A agents as tools: ``[agents.<name>] remote_agents = [...]``.

Each remote agent becomes one tool of the agent that lists it. The model calls it with a
``task`` (what to ask, in full); the tool sends it to the remote agent as an A2A task, waits for
the result and returns its text. A remote task that fails, an agent that cannot be reached and a
call that takes longer than the tool's timeout are tool errors the model reads (a timed-out
remote task is canceled), never a stuck run. Such an error names the remote agent by its tool's
name and says what happened in the gateway's words: never the agent's URL (it may hold
credentials or internal hosts), and of what the agent said only what
:func:`gateway.upstream_explanation` lets through; the log gets one warning line (request id,
agent, reason, the URL without its user information and query).

Cards are fetched when the gateway starts, all at once and each within ``discovery_timeout``, so
a remote agent that is down never delays the start by more than that; its tool then describes
itself from the configuration and tries the card again at its next call. The tool's name is
fixed by the configuration (``name``, else the agent's name, else the last part of the URL), so
it never changes under a running model; its description comes from the card.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp

from gateway import ToolContext, redact_url, upstream_explanation
from gateway.agents.remote_config import RemoteAgentConfig
from gateway.protocols.a2a import A2AClient, A2AError, RemoteCard
from gateway.tools import Tool, ToolError

log = logging.getLogger(__name__)

#: Remote contexts are derived from the local conversation's id under this namespace.
_CONTEXTS = uuid.UUID("5d1c7f0e-7a4b-4c8e-9a43-2f7d6f1b8a21")


class RemoteAgent:
    """One remote agent, and the tool that calls it."""

    def __init__(self, config: RemoteAgentConfig, where: str) -> None:
        self.config = config
        self.where = where
        self.card: RemoteCard | None = None
        self.client: A2AClient | None = None
        #: Called when the card arrives (the agents using the tool refresh their tool lists).
        self.on_card: Callable[[], None] | None = None
        self.tool = Tool(
            self.call,
            name=config.tool_name,
            description=config.description
            or f"Delegate a task to the remote agent '{config.tool_name}'.",
            timeout=config.timeout,
        )

    async def discover(self) -> RemoteCard:
        """Fetch the card (at most ``discovery_timeout``) and describe the tool from it."""
        assert self.client is not None, "remote agents are used within the app's lifetime"
        limit = self.config.discovery_timeout
        try:
            async with asyncio.timeout(limit):
                if self.config.agent:
                    card = await self.client.agent(self.config.agent)
                else:
                    card = await self.client.card()
        except TimeoutError:
            raise A2AError(
                f"no agent card from {redact_url(self.config.url)} within {limit:g}s",
                reason=f"it sent no agent card within {limit:g}s",
            ) from None
        self.card = card
        if not self.config.description:
            self.tool.description = card.summary()
        if self.on_card is not None:
            self.on_card()
        return card

    async def call(self, task: str, ctx: ToolContext) -> str:
        """Delegate a task to a remote agent and return its answer.

        Args:
            task: What to ask the remote agent, in full: it does not see this conversation.
        """
        try:
            card = self.card or await self.discover()
            assert self.client is not None
            result = await self.client.delegate(card, task, context_id=_context(ctx), within=3600.0)
        except A2AError as exc:
            said = upstream_explanation(None, None, exc.message) if exc.code is not None else None
            raise self._failed(ctx, exc.reason, said) from None
        except TimeoutError:
            raise  # the tool's timeout: the tool says so
        except Exception as exc:
            raise self._failed(
                ctx, f"its answer could not be used ({type(exc).__name__})"
            ) from None
        if not result.ok:
            state = result.state.removeprefix("TASK_STATE_").lower()
            said = upstream_explanation(None, None, result.status_text)
            raise self._failed(ctx, f"its task ended {state}", said)
        return result.text

    def _failed(self, ctx: ToolContext, reason: str, said: str | None = None) -> ToolError:
        """The tool error for a failed call (``said``: what of the agent's words may be shown),
        logged as one line."""
        name = self.config.tool_name
        log.warning(
            "request %s, agent %s: the remote agent %s (%s) failed: %s",
            ctx.request_id or "-",
            ctx.agent,
            name,
            redact_url(self.config.url),
            reason,
        )
        message = f"the remote agent '{name}' failed: {reason}."
        return ToolError(f"{message} {said}" if said else message)


def _context(ctx: ToolContext) -> str | None:
    """The remote context for this conversation: one per local conversation (an A2A context or
    an AG-UI thread) and caller, so a remote agent called twice in it sees both calls."""
    local = ctx.extra.get("contextId") or ctx.extra.get("threadId")
    if not isinstance(local, str) or not local:
        return None
    return str(uuid.uuid5(_CONTEXTS, f"{ctx.principal.id}\n{ctx.agent}\n{local}"))


class RemoteAgents:
    """Every remote agent of the app: one HTTP session for all, cards fetched at startup."""

    def __init__(self) -> None:
        self.agents: list[RemoteAgent] = []

    def add(self, config: RemoteAgentConfig, where: str) -> RemoteAgent:
        remote = RemoteAgent(config, where)
        self.agents.append(remote)
        return remote

    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        """``cleanup_ctx``: open the session, fetch every card (failures are logged and retried
        at the tool's next call), and close it all with the app."""
        session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10.0)
        )
        for remote in self.agents:
            cfg = remote.config
            remote.client = A2AClient(cfg.url, cfg.api_key, headers=cfg.headers, session=session)
        results = await asyncio.gather(
            *(remote.discover() for remote in self.agents), return_exceptions=True
        )
        for remote, result in zip(self.agents, results, strict=True):
            if isinstance(result, BaseException):
                reason = result.reason if isinstance(result, A2AError) else type(result).__name__
                log.warning(
                    "%s: the remote agent %s (%s) cannot be used now: %s; its card is fetched "
                    "again when its tool is called",
                    remote.where,
                    remote.tool.name,
                    redact_url(remote.config.url),
                    reason,
                )
            else:
                log.info(
                    "%s: remote agent %r at %s", remote.where, result.name, redact_url(result.url)
                )
        try:
            yield
        finally:
            for remote in self.agents:
                if remote.client is not None:
                    await remote.client.close()
            await session.close()
