"""What triggers produce (:class:`TriggerEvent`) and what they do with it (:class:`Handler`).

Every trigger (a webhook delivery, a poller's tick, a listener's message) becomes one
:class:`TriggerEvent` with a type. Handlers match types and either start an agent run with a
prompt filled from the payload (``agent`` + ``prompt``), or call a Python function (``call``),
or both: the function's result (a dictionary, a list of them, or ``None``) is then what the
prompt is filled from, one run per item.

A pattern matches a type exactly, as a glob (``"issues.*"``, ``"*"``), or as its leading dotted
part: ``"issues"`` matches ``"issues.opened"``.
"""

from __future__ import annotations

import asyncio
import fnmatch
import inspect
import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from gateway import import_path
from gateway.triggers.template import Template, TemplateError


@attrs.frozen
class TriggerEvent:
    """One thing that happened, as a handler sees it."""

    #: ``"webhook:stripe"``, ``"poller:mentions"``, ``"listener:orders"``.
    source: str
    #: What routes it: Stripe's ``type``, ``issues.opened``, a channel or subject, ``"tick"``.
    type: str
    #: The parsed body or message (a JSON value; text that is not JSON is ``{"text": ...}``).
    payload: Any
    #: The delivery's HTTP headers (lower-case names), or the message's attributes.
    headers: Mapping[str, str] = attrs.field(factory=dict)
    #: The delivery or message id, when the source has one.
    id: str | None = None
    #: 1 for a first delivery; more when a message is delivered again after a failure.
    attempt: int = 1


@attrs.frozen
class HandlerConfig:
    """One handler: ``event`` pattern, and ``agent`` + ``prompt``, ``call``, or all three."""

    #: Event types this handler takes (see the module docstring); "*" takes every event.
    event: str = "*"
    #: An agent (or any model name) to run; its run is an AG-UI run like any other.
    agent: str | None = None
    #: The run's user message, filled from the payload: "Process payment: {data.object.id}".
    #: Without one, the payload itself (as JSON) is the message.
    prompt: str | None = None
    #: A Python callable, "package.module:function", sync or async.
    call: str | None = None


class HandlerError(Exception):
    """A handler could not run for this event (a prompt field missing, a failed run)."""


def matches(pattern: str, kind: str) -> bool:
    """Whether the event type ``kind`` matches ``pattern`` (see the module docstring)."""
    return (
        pattern == "*"
        or pattern == kind
        or kind.startswith(pattern + ".")
        or fnmatch.fnmatchcase(kind, pattern)
    )


class Handler:
    """A compiled :class:`HandlerConfig` (or a Python function registered by an embedder)."""

    def __init__(
        self,
        event: str = "*",
        *,
        agent: str | None = None,
        prompt: str | None = None,
        call: Callable[..., Any] | str | None = None,
    ) -> None:
        if agent is None and call is None:
            raise ValueError("a handler needs 'agent' (with 'prompt') or 'call'")
        if prompt is not None and agent is None:
            raise ValueError("'prompt' needs an 'agent' to send it to")
        self.event = event
        self.agent = agent
        self.template = Template(prompt if prompt is not None else "{}")
        self.function: Callable[..., Any] | None = None
        self.arity = 0
        self.wants_event = False
        if call is not None:
            self.function = import_callable(call) if isinstance(call, str) else call
            if not callable(self.function):
                raise ValueError(f"{call!r} is not callable")
            self.arity, self.wants_event = _calling(self.function)

    @classmethod
    def from_config(cls, cfg: HandlerConfig) -> Handler:
        return cls(cfg.event, agent=cfg.agent, prompt=cfg.prompt, call=cfg.call)

    def __repr__(self) -> str:
        target = f"agent {self.agent!r}" if self.agent else ""
        if self.function is not None:
            name = getattr(self.function, "__qualname__", repr(self.function))
            target = f"{name}()" + (f" -> {target}" if target else "")
        return f"<handler {self.event!r}: {target}>"

    def matches(self, kind: str) -> bool:
        return matches(self.event, kind)

    async def call(self, event: TriggerEvent) -> Any:
        """Call the function with what it accepts of ``(payload, headers)`` and ``event=``."""
        fn = self.function
        assert fn is not None
        args = (event.payload, dict(event.headers))[: self.arity]
        kwargs = {"event": event} if self.wants_event else {}
        if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)  # noqa: B004 - an object with an async __call__
        ):
            return await fn(*args, **kwargs)
        result = await asyncio.to_thread(fn, *args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result

    def prompts(self, source: Any) -> list[str]:
        """The prompts for the runs this handler starts from ``source`` (the payload, or what
        the function returned: a dictionary, a list of them, or ``None`` for no run)."""
        items = [] if source is None else source if isinstance(source, list) else [source]
        try:
            return [self.template.fill(item) for item in items]
        except TemplateError as exc:
            raise HandlerError(f"prompt {self.template.source!r}: {exc}") from None


def import_callable(path: str) -> Callable[..., Any]:
    """``"package.module:function"`` (or ``"package.module.function"``), imported."""
    try:
        found: Callable[..., Any] = import_path(path)  # Handler checks that it is callable
    except ImportError as exc:
        raise ValueError(str(exc)) from None
    return found


def _calling(fn: Callable[..., Any]) -> tuple[int, bool]:
    """How many of ``(payload, headers)`` ``fn`` takes positionally, and whether it takes
    ``event=``."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 2, False
    wants_event = any(
        p.name == "event" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params
    )
    positional = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "event"
    ]
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return 2, wants_event
    return min(2, len(positional)), wants_event


_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]+")


def slug(text: str, limit: int = 96) -> str:
    """``text`` made safe for a run id."""
    return _UNSAFE.sub("-", text)[:limit].strip("-") or "x"
