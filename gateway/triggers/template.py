"""Prompt templates filled from a payload: ``"Process payment: {data.object.id}"``.

The template comes from the configuration, the values from an outside caller, so this is a
field lookup and nothing more: a placeholder is a dotted path of dictionary keys and list
indexes (``{items.0.sku}``), never attribute access or a format spec (``str.format`` on a
payload object could reach ``__class__`` and beyond). ``{}`` is the whole payload as JSON; a
dictionary or list value is inserted as JSON; ``{{`` and ``}}`` are literal braces. A path the
payload does not have is a :class:`TemplateError` naming it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

_PART = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


class TemplateError(ValueError):
    """A template that cannot be filled (or parsed): says which field and why."""


class Template:
    """A parsed prompt template; :meth:`fill` renders it for one payload."""

    __slots__ = ("parts", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        #: Literal strings and field paths (tuples), in order.
        self.parts: list[str | tuple[str, ...]] = []
        pos = 0
        for m in _PART.finditer(source):
            if m.start() > pos:
                self.parts.append(source[pos : m.start()])
            token = m.group(0)
            if token in ("{{", "}}"):
                self.parts.append(token[0])
            elif m.group(1) is None:
                raise TemplateError(
                    f"unmatched {token!r} at character {m.start()} (write {token * 2} for a "
                    "literal brace)"
                )
            else:
                path = m.group(1).strip()
                if path and not all(path.split(".")):
                    raise TemplateError(f"empty part in the field {{{path}}}")
                self.parts.append(tuple(path.split(".")) if path else ())
            pos = m.end()
        if pos < len(source):
            self.parts.append(source[pos:])

    @property
    def fields(self) -> list[str]:
        return [".".join(p) for p in self.parts if isinstance(p, tuple)]

    def fill(self, payload: Any) -> str:
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            else:
                out.append(_text(lookup(payload, part)))
        return "".join(out)


def lookup(payload: Any, path: Sequence[str]) -> Any:
    """The value at ``path`` (keys and list indexes) in ``payload``."""
    value = payload
    for depth, key in enumerate(path):
        if isinstance(value, Mapping) and key in value:
            value = value[key]
        elif isinstance(value, list) and (index := _index(key, len(value))) is not None:
            value = value[index]
        else:
            where = ".".join(path[:depth]) or "the payload"
            raise TemplateError(
                f"the payload has no field {'.'.join(path)!r} (no {key!r} in {where})"
            )
    return value


def _index(key: str, length: int) -> int | None:
    if key.isdigit() and int(key) < length:
        return int(key)
    return None


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    return orjson.dumps(value).decode()
