"""Remote A2A agents as tools: ``[agents.<name>] remote_agents = [...]``.

Each remote agent becomes one tool of the agent that lists it. The model calls it with a
``task`` (what to ask, in full); the tool sends it to the remote agent as an A2A task, waits for
the result and returns its text. A remote task that fails, an agent that cannot be reached and a
call that takes longer than the tool's timeout are tool errors the model reads (a timed-out
remote task is canceled), never a stuck run.

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

from gateway import ToolContext
from gateway.agents.remote_config import RemoteAgentConfig
from gateway.protocols.a2a import A2AClient, A2AError, RemoteCard
from gateway.tools import Tool

log = logging.getLogger(__name__)

#: Remote contexts are derived from the local conversation's id under this namespace.
_CONTEXTS = uuid.UUID("5d1c7f0e-7a4b-4c8e-9a43-2f7d6f1b8a21")


class RemoteTaskFailed(Exception):
    """The remote agent's task ended without completing."""


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
            or f"Delegate a task to the remote agent at {config.url}.",
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
            raise A2AError(f"no agent card from {self.config.url} within {limit:g}s") from None
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
        card = self.card or await self.discover()
        assert self.client is not None
        result = await self.client.delegate(card, task, context_id=_context(ctx), within=3600.0)
        if not result.ok:
            state = result.state.removeprefix("TASK_STATE_").lower()
            reason = result.status_text or "no reason given"
            raise RemoteTaskFailed(f"the remote agent's task {state}: {reason}")
        return result.text


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
                log.warning(
                    "%s: the remote agent at %s is not reachable now (%s); its tool %s will "
                    "try again when called",
                    remote.where,
                    remote.config.url,
                    str(result) or type(result).__name__,
                    remote.tool.name,
                )
            else:
                log.info("%s: remote agent %r at %s", remote.where, result.name, result.url)
        try:
            yield
        finally:
            for remote in self.agents:
                if remote.client is not None:
                    await remote.client.close()
            await session.close()
