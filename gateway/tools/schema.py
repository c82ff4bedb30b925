"""JSON schemas for tools, from a function's signature and docstring.

A tool's parameters are described to the model as a JSON schema. Writing it by hand duplicates
what the signature already says, so it is derived: type hints give the types (``str``, ``int``,
``float``, ``bool``, ``Optional``/unions, ``Literal``, enums, lists, tuples, sets, dicts,
``TypedDict``, attrs classes and dataclasses, dates, ``Annotated[T, "description"]``), defaults
make a parameter optional, and the docstring gives the tool's description and each parameter's
(Google ``Args:``, reST ``:param x:`` and NumPy ``Parameters`` sections are understood).
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import inspect
import re
import types
import typing
import uuid
from collections.abc import Mapping, Sequence
from pathlib import PurePath
from typing import Any, Literal, Union

import attrs

JSONSchema = dict[str, Any]

_SIMPLE: dict[Any, JSONSchema] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    type(None): {"type": "null"},
    datetime.datetime: {"type": "string", "format": "date-time"},
    datetime.date: {"type": "string", "format": "date"},
    datetime.time: {"type": "string", "format": "time"},
    uuid.UUID: {"type": "string", "format": "uuid"},
}
_ARRAYS = (list, tuple, set, frozenset, Sequence, typing.Sequence)
_JSON_TYPES = {str: "string", bool: "boolean", int: "integer", float: "number"}


def json_schema(tp: Any) -> JSONSchema:
    """The JSON schema of a type hint. Raises :class:`TypeError` for types with no JSON form."""
    if tp is Any or tp is inspect.Parameter.empty or tp is object:
        return {}
    if tp is None:
        return {"type": "null"}
    simple = _SIMPLE.get(tp)
    if simple is not None:
        return dict(simple)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        schema = json_schema(args[0])
        notes = [m for m in args[1:] if isinstance(m, str)]
        if notes:
            schema["description"] = " ".join(notes)
        return schema
    if origin is Union or origin is types.UnionType:
        return _union(args)
    if origin is Literal:
        return _enum(list(args))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _enum([m.value for m in tp])
    if isinstance(tp, type) and issubclass(tp, PurePath):
        return {"type": "string"}
    if tp in _ARRAYS or origin in _ARRAYS:
        return _array(origin or tp, args)
    if tp in (dict, Mapping) or origin in (dict, Mapping, typing.Mapping):
        mapping: JSONSchema = {"type": "object"}
        if len(args) == 2 and args[1] is not Any:
            mapping["additionalProperties"] = json_schema(args[1])
        return mapping
    if typing.is_typeddict(tp):
        hints = typing.get_type_hints(tp, include_extras=True)
        return _object(hints, {k: k in tp.__required_keys__ for k in hints}, {})
    if isinstance(tp, type) and (attrs.has(tp) or dataclasses.is_dataclass(tp)):
        return _record(tp)
    raise TypeError(f"cannot describe {tp!r} to a model as JSON")


def _union(args: tuple[Any, ...]) -> JSONSchema:
    rest = [a for a in args if a is not type(None)]
    nullable = len(rest) < len(args)
    if len(rest) == 1:
        schema = json_schema(rest[0])
        if not nullable:
            return schema
        kind = schema.get("type")
        if isinstance(kind, str):
            # The compact form models (and OpenAI's strict mode) read best: "type": [t, "null"].
            schema["type"] = [kind, "null"]
            if "enum" in schema:
                schema["enum"] = [*schema["enum"], None]
            return schema
        return {"anyOf": [schema, {"type": "null"}]}
    options = [json_schema(a) for a in rest]
    if nullable:
        options.append({"type": "null"})
    return {"anyOf": options}


def _enum(values: list[Any]) -> JSONSchema:
    kinds = {_JSON_TYPES.get(type(v)) for v in values}
    schema: JSONSchema = {"enum": values}
    if len(kinds) == 1 and None not in kinds:
        schema = {"type": kinds.pop(), "enum": values}
    return schema


def _array(origin: Any, args: tuple[Any, ...]) -> JSONSchema:
    schema: JSONSchema = {"type": "array"}
    if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        schema["prefixItems"] = [json_schema(a) for a in args]
        schema["minItems"] = schema["maxItems"] = len(args)
        return schema
    if args and args[0] is not Any:
        schema["items"] = json_schema(args[0])
    if origin in (set, frozenset):
        schema["uniqueItems"] = True
    return schema


def _record(tp: type) -> JSONSchema:
    hints = typing.get_type_hints(tp, include_extras=True)
    if attrs.has(tp):
        fields = {f.name: f.default is attrs.NOTHING for f in attrs.fields(tp) if f.init}
    else:
        fields = {
            f.name: f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            for f in dataclasses.fields(tp)
            if f.init
        }
    _, docs = parse_docstring(inspect.getdoc(tp))
    return _object({k: hints.get(k, Any) for k in fields}, fields, docs)


def _object(
    hints: Mapping[str, Any], required: Mapping[str, bool], docs: Mapping[str, str]
) -> JSONSchema:
    properties = {}
    for name, hint in hints.items():
        schema = json_schema(hint)
        if name in docs and "description" not in schema:
            schema["description"] = docs[name]
        properties[name] = schema
    schema = {"type": "object", "properties": properties}
    needed = [k for k in hints if required.get(k)]
    if needed:
        schema["required"] = needed
    return schema


# --- docstrings --------------------------------------------------------------------------------

_GOOGLE_ARGS = re.compile(
    r"^(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments):\s*$"
)
_GOOGLE_SECTION = re.compile(
    r"^(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments|Returns?|Yields?|Raises|"
    r"Examples?|Notes?|Warnings?|See Also|References|Attributes|Todo):\s*$"
)
_GOOGLE_ENTRY = re.compile(r"^\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_REST_PARAM = re.compile(r"^:param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)$")
_REST_FIELD = re.compile(r"^:\w+")
_NUMPY_ENTRY = re.compile(r"^(\w+)\s*(?::.*)?$")
_NUMPY_RULE = re.compile(r"^-{3,}\s*$")


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """The description (the text before the first section) and each parameter's description."""
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    params: dict[str, str] = {}
    end = len(lines)
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if _GOOGLE_SECTION.match(stripped) and _indent(line) == 0:
            end = min(end, i)
            if _GOOGLE_ARGS.match(stripped):
                i = _google_args(lines, i + 1, params)
                continue
        elif i + 1 < len(lines) and _NUMPY_RULE.match(lines[i + 1].strip()) and stripped:
            end = min(end, i)
            if stripped in ("Parameters", "Other Parameters", "Keyword Arguments"):
                i = _numpy_args(lines, i + 2, params)
                continue
        elif _REST_FIELD.match(stripped):
            end = min(end, i)
            m = _REST_PARAM.match(stripped)
            if m:
                text = [m.group(2)]
                i += 1
                while i < len(lines) and lines[i].strip() and _indent(lines[i]) > 0:
                    text.append(lines[i].strip())
                    i += 1
                params[m.group(1)] = " ".join(t for t in text if t)
                continue
        i += 1
    description = "\n".join(lines[:end]).strip()
    return description, params


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _google_args(lines: list[str], i: int, params: dict[str, str]) -> int:
    """Read the entries of an ``Args:`` section starting at line ``i``; returns the next line."""
    level: int | None = None
    current: str | None = None
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        indent = _indent(line)
        if indent == 0:
            break
        if level is None:
            level = indent
        m = _GOOGLE_ENTRY.match(line.strip()) if indent == level else None
        if m:
            current = m.group(1)
            params[current] = m.group(2).strip()
        elif current is not None:
            params[current] = f"{params[current]} {line.strip()}".strip()
        i += 1
    return i


def _numpy_args(lines: list[str], i: int, params: dict[str, str]) -> int:
    current: str | None = None
    while i < len(lines):
        line = lines[i]
        if i + 1 < len(lines) and _NUMPY_RULE.match(lines[i + 1].strip()):
            break
        if not line.strip():
            i += 1
            continue
        if _indent(line) == 0:
            m = _NUMPY_ENTRY.match(line.strip())
            if not m:
                break
            current = m.group(1)
            params[current] = ""
        elif current is not None:
            params[current] = f"{params[current]} {line.strip()}".strip()
        i += 1
    return i
