"""Tools: Python functions an agent's model may call, described and run by the gateway.

``@tool`` turns a function (sync or async) into a :class:`Tool`: its name, description and JSON
schema come from the function itself (see :mod:`gateway.tools.schema`), and the decorated
function stays callable as before. When the model calls it, the JSON arguments are checked and
converted to the parameters' types, sync functions run in a worker thread, and every failure
(bad arguments, an exception, a timeout) becomes a result marked as an error, which goes back to
the model instead of ending the run.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import re
import typing
from collections.abc import Callable
from typing import Any, overload

import attrs
import cattrs
import orjson
from cattrs.preconf.json import make_converter

from gateway.canonical import Tool as ToolDefinition
from gateway.config.imports import import_path
from gateway.exchange import ANONYMOUS, Principal
from gateway.tools.schema import json_schema, parse_docstring

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: Converts JSON arguments to the parameters' types (enums, dates, records, unions).
_converter = make_converter()


@attrs.frozen
class ToolContext:
    """What a tool may know about the call it serves; a parameter annotated with this type
    receives it (and is left out of the schema the model sees).

    ``extra`` holds the client protocol's own fields of the request (for AG-UI: ``threadId``,
    ``runId``, ``state``, ``forwardedProps``).
    """

    agent: str
    principal: Principal = ANONYMOUS
    request_id: str = ""
    protocol: str = ""
    extra: typing.Mapping[str, Any] = attrs.Factory(dict)


class ToolError(Exception):
    """A failure a tool reports in its own words: the model reads ``Error: <message>``, and
    the gateway logs nothing (no traceback; the tool logs what it must). Raise it when the
    message is all a model or a client should see, for example when the underlying error
    carries a URL or a service's own words."""


@attrs.frozen
class ToolOutcome:
    """A tool's result as text for the model, and whether it is an error."""

    content: str
    is_error: bool = False


class Tool:
    """A function the model may call: its name, description, parameters schema and how to run it.

    Calling a ``Tool`` calls the function, so a decorated function keeps working as itself.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout: float | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"a tool must be callable, not {fn!r}")
        self.fn = fn
        fn_name = getattr(fn, "__name__", "")
        self.name = name or (fn_name if isinstance(fn_name, str) else "")
        if not _NAME.match(self.name):
            raise ValueError(
                f"tool name {self.name!r} must be 1-64 letters, digits, '_' or '-' (set name=...)"
            )
        summary, docs = parse_docstring(inspect.getdoc(fn))
        self.description = description if description is not None else summary
        self.timeout = timeout
        target = fn if inspect.isfunction(fn) or inspect.ismethod(fn) else type(fn).__call__
        self.is_async = inspect.iscoroutinefunction(target)
        try:
            hints = typing.get_type_hints(target, include_extras=True)
        except Exception as exc:
            raise TypeError(f"tool {self.name!r}: cannot resolve its type hints: {exc}") from exc
        self.context_param: str | None = None
        #: Parameter name -> its type hint, for converting arguments.
        self.types: dict[str, Any] = {}
        properties: dict[str, Any] = {}
        required: list[str] = []
        for param in inspect.signature(fn).parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
                raise TypeError(
                    f"tool {self.name!r}: parameter {param.name!r} must be an ordinary named "
                    "parameter (no *args, **kwargs or positional-only parameters)"
                )
            hint = hints.get(param.name, Any)
            if hint is ToolContext:
                self.context_param = param.name
                continue
            try:
                schema = json_schema(hint)
            except TypeError as exc:
                raise TypeError(f"tool {self.name!r}, parameter {param.name!r}: {exc}") from None
            if param.name in docs and "description" not in schema:
                schema["description"] = docs[param.name]
            if param.default is param.empty:
                required.append(param.name)
            else:
                default = _jsonable(param.default)
                if default is not _NO_JSON:
                    schema["default"] = default
            properties[param.name] = schema
            self.types[param.name] = hint
        self.parameters: dict[str, Any] = {"type": "object", "properties": properties}
        if required:
            self.parameters["required"] = required
        self.parameters["additionalProperties"] = False
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Tool {self.name}>"

    def definition(self) -> ToolDefinition:
        """The tool as the canonical model describes it to a backend."""
        return ToolDefinition(self.name, self.description or None, self.parameters)

    async def invoke(
        self, arguments: str, context: ToolContext, default_timeout: float
    ) -> ToolOutcome:
        """Run the tool for a model's call with JSON ``arguments``; never raises (except on
        cancellation): failures are error outcomes the model can read and act on. The tool's own
        ``timeout`` wins over ``default_timeout`` (the agent's); 0 means none."""
        try:
            kwargs = self._arguments(arguments)
        except ValueError as exc:
            return ToolOutcome(f"Error: invalid arguments for {self.name}: {exc}", True)
        if self.context_param is not None:
            kwargs[self.context_param] = context
        limit = self.timeout if self.timeout is not None else default_timeout
        try:
            async with asyncio.timeout(limit or None):
                if self.is_async:
                    value = await self.fn(**kwargs)
                else:
                    # A sync tool that overruns its timeout keeps its thread until it returns;
                    # its result is then discarded.
                    value = await asyncio.to_thread(self.fn, **kwargs)
        except TimeoutError:
            log.warning("tool %s timed out after %ss (agent %s)", self.name, limit, context.agent)
            return ToolOutcome(f"Error: {self.name} did not finish within {limit:g} seconds", True)
        except ToolError as exc:  # reported (and logged) by the tool itself
            return ToolOutcome(f"Error: {exc}", True)
        except Exception as exc:
            log.warning("tool %s failed (agent %s)", self.name, context.agent, exc_info=True)
            return ToolOutcome(f"Error: {type(exc).__name__}: {exc}", True)
        return ToolOutcome(result_text(value))

    def _arguments(self, arguments: str) -> dict[str, Any]:
        raw = json_arguments(arguments)
        problems = []
        unknown = sorted(set(raw) - set(self.types))
        if unknown:
            problems.append(f"unknown argument(s) {', '.join(unknown)}")
        missing = [k for k in self.parameters.get("required", ()) if k not in raw]
        if missing:
            problems.append(f"missing required argument(s) {', '.join(missing)}")
        if problems:
            raise ValueError("; ".join(problems))
        kwargs = {}
        for key, value in raw.items():
            hint = self.types[key]
            if hint is Any or hint is inspect.Parameter.empty:
                kwargs[key] = value
                continue
            try:
                kwargs[key] = _converter.structure(value, hint)
            except Exception as exc:
                details = "; ".join(cattrs.transform_error(exc, path=key))
                raise ValueError(details) from None
        return kwargs


_NO_JSON = object()


def json_arguments(arguments: str) -> dict[str, Any]:
    """A model's JSON arguments (``""`` for none) as an object; raises :class:`ValueError`
    saying what is wrong."""
    try:
        raw = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise ValueError("expected a JSON object of named arguments")
    return raw


def _jsonable(value: Any) -> Any:
    """``value`` as JSON data for a schema's ``default`` (``_NO_JSON`` when it has no JSON form)."""
    try:
        return orjson.loads(orjson.dumps(_converter.unstructure(value)))
    except (TypeError, orjson.JSONEncodeError):
        return _NO_JSON


def result_text(value: Any) -> str:
    """A tool's return value as the text the model reads: strings as they are, anything else
    as JSON (records, enums and dates included)."""
    if isinstance(value, str):
        return value
    try:
        return orjson.dumps(
            _converter.unstructure(value), default=_fallback, option=orjson.OPT_NON_STR_KEYS
        ).decode()
    except (TypeError, orjson.JSONEncodeError):
        return str(value)


def _fallback(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)  # pydantic models
    if callable(dump):
        return dump(mode="json")
    return str(value)


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *, name: str | None = None, description: str | None = None, timeout: float | None = None
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a function a tool: ``@tool`` or ``@tool(name=..., description=..., timeout=...)``.

    The name defaults to the function's, the description to its docstring (before any
    ``Args:`` section), each parameter's description to its entry there; ``timeout`` (seconds)
    overrides the agent's ``tool_timeout`` for this tool.
    """

    def make(f: Callable[..., Any]) -> Tool:
        return Tool(f, name=name, description=description, timeout=timeout)

    return make(fn) if fn is not None else make


def as_tool(value: Any) -> Tool:
    """A :class:`Tool` for ``value``: a tool already, or a plain callable described from itself."""
    return value if isinstance(value, Tool) else Tool(value)


def import_tool(path: str) -> Tool:
    """Import ``"package.module:function"`` (or ``"package.module.function"``) as a tool.

    Raises :class:`ImportError` or :class:`ValueError`/:class:`TypeError` with a message fit
    for a configuration error.
    """
    value = import_path(path)
    return as_tool(value)
