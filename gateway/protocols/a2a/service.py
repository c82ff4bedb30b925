"""A2A tasks run by agents: created, waited on, read, listed, cancelled and followed from any
instance.

A task is an agent run (through the pipeline, like any request for the agent's name) produced
in the background by :class:`~gateway.runs.Runs`: its stream results go to an event log in the
run store (memory, or Redis Streams), which streams, blocking calls and subscriptions follow and
which any instance can cancel. The task itself is kept in the :class:`~gateway.protocols.a2a.tasks.TaskStore`
when it starts and when its run ends. Tasks belong to the principal that created them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

import orjson

from gateway import ChatRequest, Error, Event, GatewayError, Message, NotFound, TextPart
from gateway.protocols.a2a.jsonrpc import (
    InvalidParams,
    TaskNotCancelable,
    TaskNotFound,
    UnsupportedOperation,
)
from gateway.protocols.a2a.task_events import (
    LOST,
    TaskTranslator,
    apply,
    is_ending,
    lost_result,
    state_of,
)
from gateway.protocols.a2a.tasks import MemoryTaskStore, RedisTaskStore, TaskRecord, TaskStore
from gateway.protocols.a2a.wire import (
    CANCELED,
    COMPLETED,
    PROTOCOL,
    TERMINAL,
    WORKING,
    text_of,
    to_canonical,
)
from gateway.runs import MemoryRunStore, Run, RunKey, Runs, RunStore

if TYPE_CHECKING:
    from gateway import Exchange, Gateway

log = logging.getLogger(__name__)

#: How long a finished task's event log stays (the task itself stays ``task_ttl``): long enough
#: for the calls that follow a task to its end, since finished tasks take no subscriptions.
LOG_TTL = 300.0
#: Longest wait for a live view of a running task before falling back to its stored record.
LIVE_WAIT = 1.0


class TaskService:
    """The tasks of one application."""

    def __init__(
        self,
        gateway: Gateway,
        *,
        store: str,
        task_ttl: float,
        max_kept: int,
        max_events: int,
        context_messages: int,
    ) -> None:
        self.pipeline = gateway.pipeline
        self.router = gateway.router
        self.context_messages = context_messages
        state = gateway.state
        if store == "auto" and not state.redis_configured and state.workers > 1:
            log.warning(
                "A2A tasks are kept by each of the %d workers: reading or cancelling a task "
                "works only through the worker that ran it; set [redis] url",
                state.workers,
            )
            kind = "memory"
        else:
            kind = state.choose("a2a.store", store)
        self.logs: RunStore
        self.tasks: TaskStore
        if kind == "redis":
            from gateway.runs import RedisRunStore

            redis = state.redis("a2a.store")
            self.logs = RedisRunStore(
                redis, LOG_TTL, space="a2a", what="A2A tasks", terminal=is_ending, lost=LOST
            )
            self.tasks = RedisTaskStore(redis, task_ttl)
        else:
            self.logs = MemoryRunStore(LOG_TTL, max_kept)
            self.tasks = MemoryTaskStore(task_ttl, max_kept)
        self.max_events = max_events
        #: The records of tasks whose runs this instance produces.
        self._started: dict[RunKey, TaskRecord] = {}

    def setup(self, streams: set[asyncio.Task[Any]]) -> None:
        """Produce runs among the gateway's ``streams`` (a drain that runs out of time ends
        them); called while the app is built, once the gateway has that set."""
        self.runs = Runs(self.logs, max_events=self.max_events, streams=streams, on_end=self._ended)

    async def start(self) -> None:
        await self.logs.start()

    async def close(self) -> None:
        await self.runs.shutdown()
        await self.logs.close()

    # -- creating tasks

    async def create(
        self,
        agent: str,
        message: dict[str, Any],
        ex: Exchange,
        metadata: dict[str, Any] | None = None,
    ) -> TaskRecord:
        """Start a task running ``agent`` on a user ``message`` (1.0, checked). A message the
        agent cannot take is refused (raised); once the task exists, whatever goes wrong (a
        rate limit, a failed upstream) ends it as failed, with the reason."""
        owner = ex.principal.id
        self.router.resolve(agent, ex.principal)
        if message.get("taskId"):
            await self._refuse_continuation(owner, agent, message)
        prompt = to_canonical(message)
        context_id = message.get("contextId") or str(uuid.uuid4())
        history = await self._history(owner, context_id) if message.get("contextId") else []
        task_id = str(uuid.uuid4())
        extra: dict[str, Any] = {"taskId": task_id, "contextId": context_id}
        if metadata:
            extra["metadata"] = metadata
        request = ChatRequest(
            model=agent,
            messages=[*history, prompt],
            protocol=PROTOCOL,
            stream=True,
            extra=extra,
        )
        translator = TaskTranslator(task_id, context_id, message, metadata)
        now = time.time()
        record = TaskRecord(translator.started(), agent, now, now)
        run = Run(task_id, context_id, owner)
        if not await self.logs.reserve(run):
            raise GatewayError("A task id was issued twice; retry.")
        try:
            await self.tasks.put(owner, record)
        except BaseException:
            with contextlib.suppress(GatewayError):
                await self.logs.release(run)
            raise
        self._started[run.key] = record
        self.runs.launch(
            run, translator, None, _failures_as_events(self.pipeline.stream(request, ex))
        )
        return record

    async def _refuse_continuation(self, owner: str, agent: str, message: dict[str, Any]) -> None:
        """A message naming a task: this gateway's tasks never wait for input, so the task has
        ended or is still working, and takes no more messages either way."""
        record = await self.find(owner, message["taskId"], agent)
        context_id = message.get("contextId")
        if context_id and context_id != record.context_id:
            raise InvalidParams(
                f"The task '{record.id}' belongs to context '{record.context_id}', not "
                f"'{context_id}'.",
                param="message.contextId",
            )
        state = state_of(await self.current(owner, record))
        if state in TERMINAL:
            raise UnsupportedOperation(
                f"The task '{record.id}' has ended ({state}) and takes no more messages; to go "
                f"on with the conversation, send a message with contextId '{record.context_id}' "
                "and no taskId.",
                param="message.taskId",
            )
        raise UnsupportedOperation(
            f"The task '{record.id}' is still working; wait for it (SubscribeToTask) or cancel "
            "it before sending more.",
            param="message.taskId",
        )

    async def _history(self, owner: str, context_id: str) -> list[Message]:
        """The conversation of a context's completed tasks, for the agent: user messages and
        the agent's answers, the latest ``context_messages`` of them."""
        if not self.context_messages:
            return []
        messages: list[Message] = []
        for record in await self.tasks.context(owner, context_id):
            if state_of(record.task) != COMPLETED:
                continue
            for m in record.task.get("history") or ():
                if m.get("role") == "ROLE_USER":
                    with contextlib.suppress(GatewayError):
                        messages.append(to_canonical(m))
                else:
                    text = text_of(m.get("parts"))
                    if text:
                        messages.append(Message("assistant", [TextPart(text)]))
        kept = messages[-self.context_messages :]
        while kept and kept[0].role != "user":
            kept.pop(0)
        return kept

    async def _ended(self, run: Run, translator: Any) -> None:
        started = self._started.pop(run.key, None)
        if started is not None:
            record = TaskRecord(translator.task, started.agent, started.created, time.time())
            await self.tasks.put(run.owner, record)

    # -- reading tasks

    async def find(self, owner: str, task_id: Any, agent: str | None = None) -> TaskRecord:
        """The caller's task (of ``agent``, when the call came to an agent's own endpoint);
        another key's tasks are not found."""
        if not isinstance(task_id, str) or not task_id:
            raise InvalidParams("'id' must be a task id.", param="id")
        record = await self.tasks.get(owner, task_id)
        if record is None or (agent is not None and record.agent != agent):
            raise TaskNotFound(f"No task '{task_id}'.", param="id", code="task_not_found")
        return record

    def _result(self, record: TaskRecord, data: bytes) -> bytes:
        return orjson.dumps(lost_result(record.id, record.context_id)) if data == LOST else data

    async def current(self, owner: str, record: TaskRecord) -> dict[str, Any]:
        """The task now: its record when it has ended, else folded from its live event log
        (a task whose instance died ends here as failed)."""
        if state_of(record.task) in TERMINAL:
            return record.task
        task = apply({}, {"task": record.task})  # the log replaces it, from its first event
        lost = False
        try:
            async with asyncio.timeout(LIVE_WAIT):
                source = self.runs.follow(owner, record.id, 0)
                async with aclosing(source):
                    async for _, batch in source:
                        for data in batch:
                            lost = lost or data == LOST
                            apply(task, orjson.loads(self._result(record, data)))
                        break
        except TimeoutError:
            return record.task
        except NotFound:
            lost = True
            apply(task, lost_result(record.id, record.context_id))
        if lost:
            # The instance that ran the task stopped before it ended: record how it ended.
            await self.tasks.put(owner, TaskRecord(task, record.agent, record.created, time.time()))
        return task

    async def events(
        self, owner: str, record: TaskRecord, *, snapshot: bool = False
    ) -> AsyncGenerator[bytes, None]:
        """The task's stream results (1.0 JSON) until it ends. With ``snapshot``, what happened
        so far comes first as one ``task`` result (a subscription)."""
        source = self.runs.follow(owner, record.id, 0)
        async with aclosing(source):
            async for _, batch in source:
                if snapshot:
                    snapshot = False
                    task: dict[str, Any] = {}
                    for data in batch:
                        apply(task, orjson.loads(self._result(record, data)))
                    yield orjson.dumps({"task": task})
                    continue
                for data in batch:
                    yield self._result(record, data)

    async def wait(self, owner: str, record: TaskRecord) -> dict[str, Any]:
        """The task once it ends (a blocking SendMessage)."""
        task: dict[str, Any] = {}
        async with aclosing(self.events(owner, record)) as results:
            async for data in results:
                apply(task, orjson.loads(data))
        return task

    async def cancel(self, owner: str, record: TaskRecord, within: float) -> dict[str, Any]:
        """Cancel the task wherever its run is produced (its upstream request stops with it) and
        return it canceled; a task that ends first is not cancelable."""
        if state_of(await self.current(owner, record)) in TERMINAL:
            raise TaskNotCancelable(
                f"The task '{record.id}' has already ended.", code="task_not_cancelable"
            )
        await self.runs.cancel(owner, record.id)
        try:
            async with asyncio.timeout(within):
                task = await self.wait(owner, record)
        except (TimeoutError, NotFound):
            return await self.current(owner, record)
        state = state_of(task)
        if state in TERMINAL and state != CANCELED:
            raise TaskNotCancelable(
                f"The task '{record.id}' ended ({state}) before it could be canceled.",
                code="task_not_cancelable",
            )
        return task

    async def list(
        self,
        owner: str,
        agent: str | None,
        *,
        context_id: str | None,
        state: str | None,
        after: float | None,
        page_size: int,
        page_token: str | None,
    ) -> tuple[list[TaskRecord], str, int]:
        """One page of the caller's tasks, the most recently changed first (changed after the
        time ``after``, when given), the token of the next page ("" at the end) and how many
        tasks match. A token points after the last task of its page, so tasks that change
        meanwhile never make a page fail."""
        matching = sorted(
            (
                r
                for r in await self.tasks.list(owner)
                if (agent is None or r.agent == agent)
                and (context_id is None or r.context_id == context_id)
                and (state is None or _listed_state(r) == state)
                and (after is None or r.updated > after)
            ),
            key=_order,
            reverse=True,
        )
        start = 0
        if page_token:
            cursor = _cursor(page_token)
            start = next((i for i, r in enumerate(matching) if _order(r) < cursor), len(matching))
        page = matching[start : start + page_size]
        more = start + page_size < len(matching)
        token = _token(page[-1]) if page and more else ""
        return page, token, len(matching)


async def _failures_as_events(
    events: AsyncGenerator[Event, None],
) -> AsyncGenerator[Event, None]:
    """The pipeline's events, a failure it raises (before its first event) as an Error event:
    the task has started, so the failure is its outcome."""
    try:
        async for ev in events:
            yield ev
    except GatewayError as err:
        yield Error(err)
    finally:
        await events.aclose()


def _listed_state(record: TaskRecord) -> str:
    state = state_of(record.task)
    return WORKING if state not in TERMINAL else state


def _order(record: TaskRecord) -> tuple[float, str]:
    return record.updated, record.id


def _token(record: TaskRecord) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([record.updated, record.id])).decode()


def _cursor(token: str) -> tuple[float, str]:
    try:
        updated, task_id = orjson.loads(base64.urlsafe_b64decode(token.encode()))
        return float(updated), str(task_id)
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise InvalidParams("'pageToken' is not a token of this list.", param="pageToken") from None
