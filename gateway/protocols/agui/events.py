"""AG-UI 1.0 on the wire: RunAgentInput in, events out (full, and the opt-in compact form).

Events are JSON objects with camelCase keys, optional fields omitted (never ``null``) and an
integer millisecond ``timestamp``, as ``@ag-ui/client`` and ``ag_ui.core`` require. Their order
follows the protocol's rules: RUN_STARTED first; text content only inside an open text message;
every text message, reasoning message and tool call closed before RUN_FINISHED; nothing after
RUN_FINISHED or RUN_ERROR.

The opt-in compact form is in :mod:`gateway.protocols.agui.compact`.
"""

from __future__ import annotations

import re
import time
from typing import Any

import attrs

from gateway import (
    JSON,
    BadRequest,
    ChatRequest,
    Error,
    Event,
    Finish,
    GatewayError,
    ImagePart,
    Message,
    OpaquePart,
    Part,
    ReasoningDelta,
    Start,
    TextDelta,
    TextPart,
    Tool,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallPart,
    ToolCallStart,
    ToolResult,
    ToolResultPart,
    ToolRunDelta,
    ToolRunEnd,
    ToolRunStart,
    Usage,
    UsageEvent,
    new_id,
)

PROTOCOL = "agui"
TERMINAL = frozenset({"RUN_FINISHED", "RUN_ERROR"})


# --- RunAgentInput -> canonical -----------------------------------------------------------------


@attrs.frozen
class RunInput:
    """A decoded RunAgentInput: the run's identity and the chat request it asks for."""

    thread_id: str
    run_id: str
    request: ChatRequest


def decode_run_input(body: Any, agent: str | None = None) -> RunInput:
    """Validate and decode a RunAgentInput. ``agent`` is the name from the URL path, if any;
    otherwise ``forwardedProps.agent`` names it. Raises :class:`BadRequest` naming the field."""
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a RunAgentInput JSON object.")
    thread_id = _required_id(body, "threadId")
    run_id = _required_id(body, "runId")
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list):
        raise BadRequest("'messages' is required and must be an array.", param="messages")
    props = body.get("forwardedProps")
    if props is not None and not isinstance(props, dict):
        raise BadRequest("'forwardedProps' must be an object.", param="forwardedProps")
    if agent is None:
        named = (props or {}).get("agent")
        if not isinstance(named, str) or not named:
            raise BadRequest(
                "Name the agent: POST /agui/agents/{name}/runs, or forwardedProps.agent.",
                param="forwardedProps.agent",
            )
        agent = named
    messages = [m for i, raw in enumerate(raw_messages) if (m := _message(raw, i)) is not None]
    context = body.get("context")
    if context:
        messages.insert(0, _context_message(context))
    extra: dict[str, JSON] = {"threadId": thread_id, "runId": run_id}
    for key in ("state", "forwardedProps", "parentRunId"):
        if body.get(key) is not None:
            extra[key] = body[key]
    request = ChatRequest(
        model=agent,
        messages=messages,
        protocol=PROTOCOL,
        stream=True,
        tools=_tools(body.get("tools")),
        extra=extra,
    )
    return RunInput(thread_id, run_id, request)


#: What a thread or run id may hold: it names keys in the run store and goes back in headers.
_ID = re.compile(r"[\x21-\x7e]{1,256}")


def _required_id(body: dict[str, Any], key: str) -> str:
    value = _required_str(body, key)
    if not _ID.fullmatch(value):
        raise BadRequest(
            f"'{key}' must be 1 to 256 printable ASCII characters without spaces.", param=key
        )
    return value


def _required_str(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"'{key}' is required and must be a non-empty string.", param=key)
    return value


def _message(m: Any, i: int) -> Message | None:
    where = f"messages[{i}]"
    if not isinstance(m, dict):
        raise BadRequest(f"'{where}' must be an object.", param=where)
    role = m.get("role")
    content = m.get("content")
    name = m.get("name") if isinstance(m.get("name"), str) else None
    if role in ("system", "developer"):
        if not isinstance(content, str):
            raise BadRequest(f"'{where}.content' must be a string.", param=f"{where}.content")
        return Message(role, [TextPart(content)], name)
    if role == "user":
        return Message("user", _parts(content, where), name)
    if role == "assistant":
        parts: list[Part] = []
        if isinstance(content, str) and content:
            parts.append(TextPart(content))
        elif content is not None and not isinstance(content, str):
            raise BadRequest(f"'{where}.content' must be a string.", param=f"{where}.content")
        calls = m.get("toolCalls") or []
        if not isinstance(calls, list):
            raise BadRequest(f"'{where}.toolCalls' must be an array.", param=f"{where}.toolCalls")
        for j, call in enumerate(calls):
            at = f"{where}.toolCalls[{j}]"
            fn = call.get("function") if isinstance(call, dict) else None
            if not (
                isinstance(fn, dict)
                and isinstance(call.get("id"), str)
                and isinstance(fn.get("name"), str)
            ):
                raise BadRequest(
                    f"'{at}' must have an 'id' and a 'function' with a 'name'.", param=at
                )
            args = fn.get("arguments")
            parts.append(
                ToolCallPart(call["id"], fn["name"], args if isinstance(args, str) else "{}")
            )
        return Message("assistant", parts, name)
    if role == "tool":
        call_id = m.get("toolCallId")
        if not isinstance(call_id, str) or not call_id:
            raise BadRequest(
                f"'{where}.toolCallId' is required for tool messages.", param=f"{where}.toolCallId"
            )
        error = m.get("error")
        result: str | list[Part] = content if isinstance(content, str) else _parts(content, where)
        if isinstance(error, str) and error and not result:
            result = error
        return Message("tool", [ToolResultPart(call_id, result, is_error=bool(error))])
    if role in ("activity", "reasoning"):
        return None  # UI-only messages: nothing a model reads
    raise BadRequest(
        f"'{where}.role' must be one of developer, system, user, assistant, tool.",
        param=f"{where}.role",
    )


def _parts(content: Any, where: str) -> list[Part]:
    if isinstance(content, str):
        return [TextPart(content)]
    if not isinstance(content, list):
        raise BadRequest(
            f"'{where}.content' must be a string or an array of parts.", param=f"{where}.content"
        )
    parts: list[Part] = []
    for j, p in enumerate(content):
        at = f"{where}.content[{j}]"
        if not isinstance(p, dict) or not isinstance(p.get("type"), str):
            raise BadRequest(f"'{at}' must be an object with a 'type'.", param=at)
        kind = p["type"]
        if kind == "text":
            if not isinstance(p.get("text"), str):
                raise BadRequest(f"'{at}.text' must be a string.", param=f"{at}.text")
            parts.append(TextPart(p["text"]))
        elif kind == "image" and isinstance(p.get("source"), dict):
            source = p["source"]
            mime = source.get("mimeType")
            if source.get("type") == "data":
                parts.append(ImagePart(data=source.get("value"), media_type=mime))
            else:
                parts.append(ImagePart(url=source.get("value"), media_type=mime))
        elif kind == "binary" and str(p.get("mimeType", "")).startswith("image/"):
            if p.get("url"):
                parts.append(ImagePart(url=p["url"], media_type=p["mimeType"]))
            else:
                parts.append(ImagePart(data=p.get("data"), media_type=p["mimeType"]))
        else:
            parts.append(OpaquePart(PROTOCOL, p))
    return parts


def _context_message(context: Any) -> Message:
    if not isinstance(context, list) or not all(
        isinstance(c, dict) and isinstance(c.get("value"), str) for c in context
    ):
        raise BadRequest(
            "'context' must be an array of {description, value} strings.", param="context"
        )
    lines = [f"- {c.get('description') or 'context'}: {c['value']}" for c in context]
    return Message("system", [TextPart("Context from the application:\n" + "\n".join(lines))])


def _tools(tools: Any) -> list[Tool] | None:
    if tools is None:
        return None
    if not isinstance(tools, list):
        raise BadRequest("'tools' must be an array.", param="tools")
    out = []
    for i, t in enumerate(tools):
        if not isinstance(t, dict) or not isinstance(t.get("name"), str) or not t["name"]:
            raise BadRequest(f"'tools[{i}].name' is required.", param=f"tools[{i}].name")
        params = t.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise BadRequest(
                f"'tools[{i}].parameters' must be a JSON schema object.",
                param=f"tools[{i}].parameters",
            )
        out.append(Tool(t["name"], t.get("description") or None, params))
    return out or None


# --- canonical events -> AG-UI events ----------------------------------------------------------


def _now() -> int:
    return int(time.time() * 1000)


class EventTranslator:
    """Turns one run's canonical events into AG-UI events, keeping the protocol's order.

    ``start()`` opens the run; ``add(event)`` translates each event; ``cancelled()`` and
    ``failed(error)`` end it early. Every method returns the events to send (possibly none);
    after the terminal event, ``done`` is set and nothing more is produced.
    """

    __slots__ = (
        "_calls",
        "_clients",
        "_message",
        "_reasoning",
        "_text",
        "_used",
        "done",
        "model",
        "pending",
        "run_id",
        "thread_id",
        "usage",
    )

    def __init__(self, thread_id: str, run_id: str, model: str = "") -> None:
        self.thread_id = thread_id
        self.run_id = run_id
        self.model = model
        self._message: str | None = None  # the current assistant message id
        self._used: set[str] = set()  # message ids whose text message was already sent
        self._text: str | None = None  # the open text message, if any
        self._reasoning: str | None = None  # the open reasoning message, if any
        self._calls: dict[str, bool] = {}  # open tool calls: id -> True
        self._clients: dict[int, str] = {}  # client tool call index -> id (this step)
        self.usage: Usage | None = None
        self.pending: list[str] = []  # client tool calls left for the application
        self.done = False

    def start(self) -> list[dict[str, JSON]]:
        return [
            {
                "type": "RUN_STARTED",
                "threadId": self.thread_id,
                "runId": self.run_id,
                "timestamp": _now(),
            }
        ]

    def add(self, ev: Event) -> list[dict[str, JSON]]:
        if self.done:
            return []
        out: list[dict[str, JSON]] = []
        if type(ev) is TextDelta:
            if ev.text:
                self._close_reasoning(out)
                if self._text is None:
                    self._open_text(out)
                out.append(self._ev("TEXT_MESSAGE_CONTENT", messageId=self._text, delta=ev.text))
        elif type(ev) is ToolCallStart or type(ev) is ToolRunStart:
            self._close_reasoning(out)
            if type(ev) is ToolCallStart:
                self._clients[ev.index] = ev.id
                self.pending.append(ev.id)
            self._calls[ev.id] = True
            start = self._ev("TOOL_CALL_START", toolCallId=ev.id, toolCallName=ev.name)
            if self._message is not None:
                start["parentMessageId"] = self._message
            out.append(start)
        elif type(ev) is ToolCallDelta or type(ev) is ToolRunDelta:
            call = self._clients.get(ev.index) if type(ev) is ToolCallDelta else ev.id
            if call in self._calls and ev.arguments:
                out.append(self._ev("TOOL_CALL_ARGS", toolCallId=call, delta=ev.arguments))
        elif type(ev) is ToolCallEnd or type(ev) is ToolRunEnd:
            call = self._clients.get(ev.index) if type(ev) is ToolCallEnd else ev.id
            if call is not None and self._calls.pop(call, False):
                out.append(self._ev("TOOL_CALL_END", toolCallId=call))
        elif type(ev) is ToolResult:
            result = self._ev(
                "TOOL_CALL_RESULT",
                messageId=new_id("msg_"),
                toolCallId=ev.call_id,
                content=ev.content,
                role="tool",
            )
            if ev.is_error:
                result["metadata"] = {"isError": True}
            out.append(result)
        elif type(ev) is ReasoningDelta:
            if ev.text:
                if self._reasoning is None:
                    self._close_text(out)
                    self._reasoning = new_id("rsn_")
                    out.append(self._ev("REASONING_START", messageId=self._reasoning))
                    out.append(
                        self._ev(
                            "REASONING_MESSAGE_START", messageId=self._reasoning, role="reasoning"
                        )
                    )
                out.append(
                    self._ev("REASONING_MESSAGE_CONTENT", messageId=self._reasoning, delta=ev.text)
                )
        elif type(ev) is Start:
            self._close_open(out, calls=False)
            self._message = ev.id or new_id("msg_")
            self._clients = {}
        elif type(ev) is UsageEvent:
            self.usage = ev.usage
        elif type(ev) is Finish:
            self._close_open(out)
            finished = self._terminal("RUN_FINISHED", threadId=self.thread_id, runId=self.run_id)
            if self.pending:
                finished["outcome"] = {"type": "success", "pendingToolCallIds": self.pending}
            out.append(finished)
        elif type(ev) is Error:
            out.extend(self.failed(ev.error))
        return out

    def cancelled(self) -> list[dict[str, JSON]]:
        """The run was cancelled: close what is open and finish with a cancelled outcome."""
        if self.done:
            return []
        out: list[dict[str, JSON]] = []
        self._close_open(out)
        finished = self._terminal("RUN_FINISHED", threadId=self.thread_id, runId=self.run_id)
        finished["outcome"] = {"type": "cancelled"}
        out.append(finished)
        return out

    def failed(self, err: GatewayError) -> list[dict[str, JSON]]:
        """The run failed: RUN_ERROR with the error's message and code."""
        if self.done:
            return []
        return [self._terminal("RUN_ERROR", message=err.message, code=err.code or err.kind)]

    # -- helpers

    @staticmethod
    def _ev(kind: str, **fields: JSON) -> dict[str, JSON]:
        return {"type": kind, **fields, "timestamp": _now()}

    def _terminal(self, kind: str, **fields: JSON) -> dict[str, JSON]:
        self.done = True
        event = self._ev(kind, **fields)
        if self.usage is not None:
            usage: dict[str, JSON] = {
                "inputTokens": self.usage.input_tokens,
                "outputTokens": self.usage.output_tokens,
                "totalTokens": self.usage.total_tokens,
            }
            if self.model:
                usage["model"] = self.model
            event["usage"] = [usage]
        return event

    def _open_text(self, out: list[dict[str, JSON]]) -> None:
        message = self._message
        if message is None or message in self._used:
            # Text after this message's text was closed (or before any Start): a new message.
            message = self._message = new_id("msg_")
        self._used.add(message)
        self._text = message
        out.append(self._ev("TEXT_MESSAGE_START", messageId=message, role="assistant"))

    def _close_text(self, out: list[dict[str, JSON]]) -> None:
        if self._text is not None:
            out.append(self._ev("TEXT_MESSAGE_END", messageId=self._text))
            self._text = None

    def _close_reasoning(self, out: list[dict[str, JSON]]) -> None:
        if self._reasoning is not None:
            out.append(self._ev("REASONING_MESSAGE_END", messageId=self._reasoning))
            out.append(self._ev("REASONING_END", messageId=self._reasoning))
            self._reasoning = None

    def _close_open(self, out: list[dict[str, JSON]], calls: bool = True) -> None:
        self._close_reasoning(out)
        self._close_text(out)
        if calls:
            for call in list(self._calls):
                out.append(self._ev("TOOL_CALL_END", toolCallId=call))
            self._calls.clear()


def sse_frame(seq: int, data: bytes) -> bytes:
    """One full-format SSE frame: the event's number as ``id:`` (for Last-Event-ID), its JSON."""
    return b"id: %d\ndata: %s\n\n" % (seq, data)
