"""What a request log record says, and the redaction of bodies."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from typing import Any

from gateway import ChatRequest, ChatResponse, Exchange, Message, Outcome

REDACTED = "[redacted]"


class Redactor:
    """Replaces secrets in text (``patterns``) with ``[redacted]``."""

    def __init__(self, patterns: Iterable[str]) -> None:
        patterns = list(patterns)
        for p in patterns:
            try:
                re.compile(p)
            except re.error as exc:
                raise ValueError(f"redact: {p!r} is not a regular expression: {exc}") from None
        joined = "|".join(f"(?:{p})" for p in patterns)
        self.pattern = re.compile(joined) if joined else None

    def __call__(self, text: str) -> str:
        return self.pattern.sub(REDACTED, text) if self.pattern is not None else text


def messages(items: Iterable[Message], redact: Redactor) -> list[dict[str, Any]]:
    """Messages as ``{role, content: [{type, text | name, arguments}]}``, text redacted."""
    out = []
    for m in items:
        parts: list[dict[str, Any]] = []
        for p in m.parts:
            text = getattr(p, "text", None)
            if isinstance(text, str):
                parts.append({"type": "text", "text": redact(text)})
            elif hasattr(p, "arguments") and hasattr(p, "name"):
                parts.append(
                    {"type": "tool_call", "name": p.name, "arguments": redact(str(p.arguments))}
                )
            else:
                parts.append({"type": type(p).__name__})
        out.append({"role": m.role, "content": parts})
    return out


def record(
    request: ChatRequest,
    ex: Exchange,
    outcome: Outcome,
    bodies: tuple[Redactor, ChatResponse | None] | None,
) -> dict[str, Any]:
    """The record of one request: always its metadata; ``bodies`` (the redactor and the answer)
    when they are opted in."""
    p = ex.principal
    usage = outcome.usage
    err = outcome.error
    now = time.time()
    rec: dict[str, Any] = {
        "ts": now,
        "request_id": ex.request_id,
        "route": ex.route.name,
        "protocol": request.protocol,
        "principal": p.name,
        "key_id": p.attributes.get("key_id") or p.id,
        "team_id": p.attributes.get("team_id"),
        "model": ex.model or request.model,
        "target": f"{ex.backend}/{request.upstream_model or request.model}" if ex.backend else None,
        "stream": outcome.stream,
        "status": outcome.status,
        "error": None
        if err is None
        else {"kind": err.kind, "code": err.code, "status": err.status},
        "usage": None
        if usage is None
        else {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens},
        "cost": ex.cost,
        "latency_ms": round((time.perf_counter() - ex.started) * 1000, 3),
        "upstream_ms": round(ex.upstream_seconds * 1000, 3),
    }
    if bodies is not None:
        redact, response = bodies
        rec["request"] = {"messages": messages(request.messages, redact)}
        rec["response"] = (
            None
            if response is None
            else {
                "messages": messages([response.message], redact),
                "finish_reason": response.finish_reason,
            }
        )
    return rec
