"""The agent loop: an agent is a backend whose answer is several model calls with tools between.

Each step streams one model call (through the router, to whatever backend serves the agent's
model). Tool calls the model proposes for the agent's own tools run in the gateway, several at
once when several are proposed, and their results (failures included, marked as errors) go back
to the model in the next step. Calls of tools the client declared itself end the answer with
``finish_reason = tool_calls``, as every protocol expects. The loop ends with the model's final
answer, or with an error once ``max_steps`` model calls have not produced one.

What the client sees, as canonical events: a :class:`Start` per model step (a new assistant
message), text and reasoning as they are written, the agent's own tool calls as
:class:`ToolRunStart`/``Delta``/``End`` followed by :class:`ToolResult`, the client's tool calls
as ordinary :class:`ToolCallStart`/``Delta``/``End``, then the summed usage and one
:class:`Finish`. Protocols that cannot show server-side tool activity skip the ``ToolRun*`` and
``ToolResult`` events.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

import attrs

from gateway import (
    Backend,
    ChatRequest,
    Error,
    Event,
    Finish,
    GatewayError,
    Message,
    Part,
    ReasoningDelta,
    ReasoningPart,
    Start,
    TextDelta,
    TextPart,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallPart,
    ToolCallStart,
    ToolContext,
    ToolOutcome,
    ToolResult,
    ToolResultPart,
    ToolRunDelta,
    ToolRunEnd,
    ToolRunStart,
    UpstreamError,
    Usage,
    UsageEvent,
    new_id,
)
from gateway.agents.agent import Agent, MCPToolsConfig
from gateway.tools import Tool

if TYPE_CHECKING:
    from gateway import Exchange, Gateway, Route, ToolSource
    from gateway import Tool as ToolDefinition

log = logging.getLogger(__name__)

#: Put between the text of two model steps, for clients that see one message (OpenAI, Anthropic).
STEP_SEPARATOR = "\n\n"


class StepLimit(GatewayError):
    """The agent used all its model calls and the model still wanted tools."""

    status = 422
    kind = "agent"


@attrs.define(slots=True)
class _Call:
    """One tool call of a step, as it streams in."""

    id: str
    name: str
    server: bool
    index: int
    arguments: list[str] = attrs.Factory(list)
    ended: bool = False

    def end_event(self) -> Event:
        return ToolRunEnd(self.id) if self.server else ToolCallEnd(self.index)


class AgentBackend(Backend):
    """Serves one agent under its name (``agent:<name>`` in metrics and headers)."""

    kind = "agent"

    def __init__(
        self,
        agent: Agent,
        tools: Mapping[str, Tool],
        route: Route,
        gateway: Gateway,
        sources: Sequence[tuple[ToolSource, MCPToolsConfig]] = (),
    ) -> None:
        super().__init__(agent.name, agent, gateway)
        self.label = f"agent:{agent.name}"
        self.agent = agent
        self.own_tools = dict(tools)
        #: Live tool sources (MCP servers) and which of their tools the agent may use.
        self.sources = list(sources)
        self.tools: dict[str, Tool] = {}
        self.definitions: list[ToolDefinition] = []
        self.refresh_tools()
        self.route = route
        self.upstream_model = route.upstream_for(agent.model)
        self.instructions = [Message("system", [TextPart(agent.system)])] if agent.system else []

    @property
    def description(self) -> str | None:
        """What the agent says of itself (A2A cards show it)."""
        return self.agent.description

    def refresh_tools(self) -> None:
        """Describe the tools to the model anew (a remote agent's tool learnt its card, an MCP
        server connected, went away or changed its tools). The agent's own tools win a clash
        of names; among sources, the one listed first."""
        tools = dict(self.own_tools)
        for source, use in self.sources:
            for name, found in source.tools().items():
                if not use.allows(name):
                    continue
                if name in tools:
                    log.warning(
                        "agent %s: the tool %r of MCP server %r is hidden by another of that name",
                        self.agent.name,
                        name,
                        source.name,
                    )
                    continue
                tools[name] = found
        self.tools = tools
        self.definitions = [t.definition() for t in tools.values()]

    async def stream(self, request: ChatRequest, exchange: Exchange) -> AsyncGenerator[Event, None]:
        agent = self.agent
        client_tools = [t for t in request.tools or () if t.name not in self.tools]
        client_names = {t.name for t in client_tools}
        tools = [*self.definitions, *client_tools] or None
        messages = [*self.instructions, *request.messages]
        context = ToolContext(
            agent.name,
            exchange.principal,
            exchange.request_id,
            request.protocol,
            request.extra or {},
        )
        backend = self.route.backend
        usage: Usage | None = None
        wrote_text = False
        for step in range(agent.max_steps):
            step_request = self._step_request(request, messages, tools, first=step == 0)
            message_id = new_id("msg_")
            opened = False
            text: list[str] = []
            reasoning: list[str] = []
            calls: dict[int, _Call] = {}
            clients = 0
            finish: Finish | None = None
            attempts = self.gateway.pipeline.attempts
            async with aclosing(attempts.stream(backend, step_request, exchange)) as events:
                async for ev in events:
                    t = type(ev)
                    if t in _FORWARDED:
                        if not opened:
                            opened = True
                            if t is TextDelta and wrote_text:
                                yield TextDelta(STEP_SEPARATOR)
                            yield Start(message_id, request.model, int(time.time()))
                        if type(ev) is TextDelta:
                            text.append(ev.text)
                            wrote_text = True
                            yield ev
                        elif type(ev) is ReasoningDelta:
                            reasoning.append(ev.text)
                            yield ev
                        elif type(ev) is ToolCallStart:
                            server = ev.name not in client_names
                            call = _Call(ev.id, ev.name, server, -1 if server else clients)
                            calls[ev.index] = call
                            if server:
                                yield ToolRunStart(call.id, call.name)
                            else:
                                clients += 1
                                yield ToolCallStart(call.index, call.id, call.name)
                        elif type(ev) is ToolCallDelta:
                            found = calls.get(ev.index)
                            if found is not None and ev.arguments:
                                found.arguments.append(ev.arguments)
                                yield (
                                    ToolRunDelta(found.id, ev.arguments)
                                    if found.server
                                    else ToolCallDelta(found.index, ev.arguments)
                                )
                        elif type(ev) is ToolCallEnd:
                            found = calls.get(ev.index)
                            if found is not None and not found.ended:
                                found.ended = True
                                yield found.end_event()
                    elif type(ev) is UsageEvent:
                        usage = _add(usage, ev.usage)
                    elif type(ev) is Finish:
                        finish = ev
                    elif type(ev) is Error:
                        yield ev
                        return
                    # anything else (the step's own Start, raw frames) is not forwarded
            if finish is None:
                yield Error(
                    UpstreamError(f"the model of agent '{agent.name}' ended a step unfinished")
                )
                return
            for call in calls.values():
                if not call.ended:
                    call.ended = True
                    yield call.end_event()
            if not calls:
                if usage is not None:
                    yield UsageEvent(usage)
                reason = "stop" if finish.reason == "tool_calls" else finish.reason
                yield Finish(reason, finish.stop_sequence)
                return
            server_calls = [c for c in calls.values() if c.server]
            if server_calls and step == agent.max_steps - 1:
                log.warning("agent %s: max_steps (%d) reached", agent.name, agent.max_steps)
                yield Error(
                    StepLimit(
                        f"agent '{agent.name}' reached max_steps ({agent.max_steps} model calls) "
                        "without a final answer",
                        code="max_steps_exceeded",
                    )
                )
                return
            results: dict[str, ToolOutcome] = {}
            started = time.perf_counter()
            try:
                async with aclosing(self._run_tools(server_calls, context, exchange)) as outcomes:
                    async for call, outcome in outcomes:
                        results[call.id] = outcome
                        yield ToolResult(call.id, outcome.content, outcome.is_error, call.name)
            finally:
                # Tools are waited on like upstreams: keep them out of the gateway's overhead.
                exchange.upstream_seconds += time.perf_counter() - started
            messages = [
                *messages,
                Message("assistant", _assistant_parts(reasoning, text, calls.values())),
                *(
                    Message(
                        "tool",
                        [ToolResultPart(c.id, results[c.id].content, results[c.id].is_error)],
                    )
                    for c in server_calls
                ),
            ]
            if clients:
                if usage is not None:
                    yield UsageEvent(usage)
                yield Finish("tool_calls")
                return

    def _step_request(
        self,
        request: ChatRequest,
        messages: list[Message],
        tools: list[Any] | None,
        *,
        first: bool,
    ) -> ChatRequest:
        # Sampling parameters, limits and the client protocol's own fields carry over.
        return attrs.evolve(
            request,
            model=self.agent.model,
            messages=messages,
            stream=True,
            include_usage=True,
            tools=tools,
            # The client's choice applies to the first call only: "required" on every step
            # would never let the model answer.
            tool_choice=request.tool_choice if first else None,
            session_id=None,
            wire=None,
            upstream_model=self.upstream_model,
            raw_relay=False,
        )

    async def _run_tools(
        self, calls: Sequence[_Call], context: ToolContext, exchange: Exchange
    ) -> AsyncGenerator[tuple[_Call, ToolOutcome], None]:
        """Run the calls concurrently; yield each outcome as soon as it is ready."""
        timeout = self.agent.tool_timeout
        attempts = self.gateway.pipeline.attempts
        tasks = {
            asyncio.ensure_future(
                attempts.tool(call.name, call.id, self._run_one(call, context, timeout), exchange)
            ): call
            for call in calls
        }
        try:
            pending = set(tasks)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in sorted(done, key=lambda t: calls.index(tasks[t])):
                    yield tasks[task], task.result()
        finally:
            unfinished = [t for t in tasks if not t.done()]
            for task in unfinished:
                task.cancel()
            if unfinished:
                await asyncio.gather(*unfinished, return_exceptions=True)

    async def _run_one(self, call: _Call, context: ToolContext, limit: float) -> ToolOutcome:
        found = self.tools.get(call.name)
        if found is None:
            known = ", ".join(self.tools) or "none"
            return ToolOutcome(
                f"Error: there is no tool named {call.name!r} (tools: {known})", True
            )
        return await found.invoke("".join(call.arguments), context, limit)


_FORWARDED = frozenset({TextDelta, ReasoningDelta, ToolCallStart, ToolCallDelta, ToolCallEnd})


def _add(total: Usage | None, usage: Usage) -> Usage:
    if total is None:
        return Usage(usage.input_tokens, usage.output_tokens)
    return Usage(total.input_tokens + usage.input_tokens, total.output_tokens + usage.output_tokens)


def _assistant_parts(reasoning: list[str], text: list[str], calls: Any) -> list[Part]:
    parts: list[Part] = []
    if reasoning:
        parts.append(ReasoningPart("".join(reasoning)))
    if text:
        parts.append(TextPart("".join(text)))
    parts.extend(ToolCallPart(c.id, c.name, "".join(c.arguments) or "{}") for c in calls)
    return parts
