"""A2A tasks from an agent's canonical events, and tasks folded from their stream results.

:class:`TaskTranslator` turns one agent run into the task's 1.0 stream results: the submitted
task, ``working``, the answer as chunks of one artifact, the agent's own tool calls and their
results as ``working`` status messages (data parts), and a final status (``completed``,
``failed`` or ``canceled``). It keeps the task as those results leave it (:attr:`task`), by the
same :func:`apply` that folds a stored event log back into a task for any instance.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson

from gateway import (
    JSON,
    Error,
    Event,
    Finish,
    GatewayError,
    TextDelta,
    ToolResult,
    ToolRunDelta,
    ToolRunEnd,
    ToolRunStart,
    Usage,
    UsageEvent,
    new_id,
)
from gateway.protocols.a2a.wire import (
    CANCELED,
    COMPLETED,
    FAILED,
    INTERRUPTED,
    SUBMITTED,
    TERMINAL,
    WORKING,
    text_message,
    timestamp,
)

#: The name of the artifact that holds an agent's answer.
ANSWER = "answer"

_STATUS_PREFIX = b'{"statusUpdate":{"status":{"state":"'
_ENDING = frozenset(s.encode() for s in TERMINAL | INTERRUPTED)

#: The last event of a task whose producing instance stopped without ending it (ids are added
#: when it is read, see :func:`lost_result`).
LOST = orjson.dumps({"statusUpdate": {"status": {"state": FAILED}, "lost": True}})


def is_ending(data: bytes) -> bool:
    """Whether a stored stream result ends its stream (a terminal or interrupted status).

    Status updates are written with ``status`` first, so this reads a fixed prefix: text the
    model wrote can never look like it (quotes inside JSON strings are escaped).
    """
    if not data.startswith(_STATUS_PREFIX):
        return False
    state = data[len(_STATUS_PREFIX) : data.find(b'"', len(_STATUS_PREFIX))]
    return state in _ENDING


def status_update(
    task_id: str, context_id: str, state: str, message: dict[str, JSON] | None = None, **more: JSON
) -> dict[str, JSON]:
    """A ``statusUpdate`` stream result (``status`` first: see :func:`is_ending`)."""
    status: dict[str, JSON] = {"state": state}
    if message is not None:
        status["message"] = message
    status["timestamp"] = timestamp()
    return {"statusUpdate": {"status": status, "taskId": task_id, "contextId": context_id, **more}}


def lost_result(task_id: str, context_id: str) -> dict[str, JSON]:
    text = "The task was lost: the gateway running it stopped before it ended."
    message = text_message("ROLE_AGENT", text, new_id("msg-"), taskId=task_id, contextId=context_id)
    return status_update(task_id, context_id, FAILED, message, metadata={"code": "task_lost"})


def apply(task: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """Fold one stream result into ``task`` (changed in place, and returned): a status replaces
    the status and its message joins the history; artifact chunks replace or extend their
    artifact. A ``task`` result replaces everything."""
    if "task" in result:
        task.clear()
        task.update(copy.deepcopy(result["task"]))
    elif "statusUpdate" in result:
        status = result["statusUpdate"]["status"]
        task["status"] = status
        message = status.get("message")
        if message is not None:
            history = task.setdefault("history", [])
            if not any(m.get("messageId") == message.get("messageId") for m in history):
                history.append(message)
        metadata = result["statusUpdate"].get("metadata")
        if metadata and status.get("state") in TERMINAL:
            task["metadata"] = {**task.get("metadata", {}), **metadata}
    elif "artifactUpdate" in result:
        update = result["artifactUpdate"]
        artifact = update["artifact"]
        artifacts = task.setdefault("artifacts", [])
        current = next((a for a in artifacts if a["artifactId"] == artifact["artifactId"]), None)
        if current is None or not update.get("append"):
            if current is not None:
                artifacts.remove(current)
            artifacts.append(copy.deepcopy(artifact))
        else:
            parts = current.setdefault("parts", [])
            for part in artifact.get("parts", ()):
                if (
                    parts
                    and "text" in part
                    and set(part) == {"text"}
                    and set(parts[-1]) == {"text"}
                ):
                    parts[-1] = {"text": parts[-1]["text"] + part["text"]}
                else:
                    parts.append(dict(part))
    elif "message" in result:
        task.setdefault("history", []).append(result["message"])
    return task


def trimmed(
    task: dict[str, Any], history_length: int | None, artifacts: bool = True
) -> dict[str, Any]:
    """``task`` with at most ``history_length`` of its latest messages (``None``: all; 0: none)
    and, unless ``artifacts``, without its artifacts."""
    out = dict(task)
    if history_length is not None:
        history = task.get("history") or []
        kept = history[len(history) - history_length :] if history_length else []
        if kept:
            out["history"] = kept
        else:
            out.pop("history", None)
    if not artifacts:
        out.pop("artifacts", None)
    return out


def state_of(task: dict[str, Any]) -> str:
    return str((task.get("status") or {}).get("state", ""))


class TaskTranslator:
    """Turns one agent run's canonical events into its task's stream results.

    The interface :class:`~gateway.runs.Runs` expects of a translator: ``start()``,
    ``add(event)``, ``failed(error)``, ``cancelled()`` each return the results to append, and
    ``done`` is set once the final status went out.
    """

    def __init__(
        self,
        task_id: str,
        context_id: str,
        message: dict[str, JSON],
        metadata: dict[str, JSON] | None = None,
    ) -> None:
        self.task_id = task_id
        self.context_id = context_id
        self.message = {**message, "taskId": task_id, "contextId": context_id}
        self.metadata = metadata
        self.task: dict[str, Any] = {}
        self.done = False
        self.usage: Usage | None = None
        self._text: list[str] = []
        self._held: str | None = None  # the latest answer chunk, sent once the next comes
        self._sent_chunk = False
        self._calls: dict[str, tuple[str, list[str]]] = {}  # id -> (name, argument fragments)
        self._artifact = new_id("art-")

    def _out(self, *results: dict[str, JSON]) -> list[dict[str, JSON]]:
        for result in results:
            apply(self.task, result)
        return list(results)

    def _task(self, state: str) -> dict[str, JSON]:
        task: dict[str, JSON] = {
            "id": self.task_id,
            "contextId": self.context_id,
            "status": {"state": state, "timestamp": timestamp()},
            "history": [self.message],
        }
        if self.metadata:
            task["metadata"] = self.metadata
        return task

    def started(self) -> dict[str, JSON]:
        """The task as it is once its run starts (working), for its first record."""
        return self._task(WORKING)

    def start(self) -> list[dict[str, JSON]]:
        return self._out({"task": self._task(SUBMITTED)}, self._status(WORKING))

    def add(self, ev: Event) -> list[dict[str, JSON]]:
        if self.done:
            return []
        if type(ev) is TextDelta:
            if not ev.text:
                return []
            self._text.append(ev.text)
            out = self._flush(last=False)
            self._held = ev.text
            return self._out(*out)
        if type(ev) is ToolRunStart:
            self._calls[ev.id] = (ev.name, [])
            return self._out(*self._flush(last=False))
        if type(ev) is ToolRunDelta:
            call = self._calls.get(ev.id)
            if call is not None:
                call[1].append(ev.arguments)
            return []
        if type(ev) is ToolRunEnd:
            call = self._calls.get(ev.id)
            if call is None:
                return []
            name, fragments = call
            data = {
                "type": "tool_call",
                "id": ev.id,
                "name": name,
                "arguments": _json("".join(fragments)),
            }
            return self._out(self._status(WORKING, self._agent([{"data": data}])))
        if type(ev) is ToolResult:
            data = {
                "type": "tool_result",
                "id": ev.call_id,
                "name": ev.name or self._calls.get(ev.call_id, ("", []))[0],
                "content": ev.content,
                "isError": ev.is_error,
            }
            return self._out(self._status(WORKING, self._agent([{"data": data}])))
        if type(ev) is UsageEvent:
            self.usage = ev.usage
            return []
        if type(ev) is Finish:
            reply = self._agent([{"text": "".join(self._text)}])
            metadata: dict[str, JSON] = {}
            if self.usage is not None:
                metadata["usage"] = {
                    "inputTokens": self.usage.input_tokens,
                    "outputTokens": self.usage.output_tokens,
                }
            if ev.reason not in ("stop", "tool_calls"):
                metadata["finishReason"] = ev.reason
            self.done = True
            extra = {"metadata": metadata} if metadata else {}
            return self._out(*self._flush(last=True), self._status(COMPLETED, reply, **extra))
        if type(ev) is Error:
            return self.failed(ev.error)
        return []

    def failed(self, err: GatewayError) -> list[dict[str, JSON]]:
        """The run failed: the final status says why (its message, and ``metadata.code``)."""
        if self.done:
            return []
        self.done = True
        metadata: dict[str, JSON] = {"code": err.code or err.kind}
        if err.retry_after is not None:
            metadata["retryAfter"] = max(1, round(err.retry_after))
        message = self._agent([{"text": err.message}])
        return self._out(*self._flush(last=True), self._status(FAILED, message, metadata=metadata))

    def cancelled(self) -> list[dict[str, JSON]]:
        if self.done:
            return []
        self.done = True
        message = self._agent([{"text": "The task was canceled."}])
        return self._out(*self._flush(last=True), self._status(CANCELED, message))

    # -- helpers

    def _status(
        self, state: str, message: dict[str, JSON] | None = None, **more: JSON
    ) -> dict[str, JSON]:
        return status_update(self.task_id, self.context_id, state, message, **more)

    def _agent(self, parts: list[dict[str, JSON]]) -> dict[str, JSON]:
        return {
            "messageId": new_id("msg-"),
            "role": "ROLE_AGENT",
            "parts": parts,
            "taskId": self.task_id,
            "contextId": self.context_id,
        }

    def _flush(self, *, last: bool) -> list[dict[str, JSON]]:
        """The held answer chunk as an artifact update (``lastChunk`` when the answer ends)."""
        if self._held is None:
            return []
        text, self._held = self._held, None
        append = self._sent_chunk
        self._sent_chunk = True
        artifact = {"artifactId": self._artifact, "name": ANSWER, "parts": [{"text": text}]}
        return [
            {
                "artifactUpdate": {
                    "taskId": self.task_id,
                    "contextId": self.context_id,
                    "artifact": artifact,
                    "append": append,
                    "lastChunk": last,
                }
            }
        ]


def _json(text: str) -> JSON:
    """Tool arguments as JSON data when they parse, else as the text they are."""
    try:
        return orjson.loads(text or "{}")
    except orjson.JSONDecodeError:
        return text
