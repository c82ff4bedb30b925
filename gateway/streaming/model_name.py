"""The model name a client asked for, in answers relayed from an upstream as they came.

A response's ``model`` is the public name the client asked for, whatever target served it (the
``x-hookgate-served-model`` header says which). Answers the gateway encodes take that name from
the request; answers relayed as the upstream's bytes (the same-protocol fast path) carry the
upstream's name (its ``upstream_model``, or a dated variant of it), which is replaced in the
bytes: JSON strings cannot hold an unescaped quote, so ``"model":"..."`` (with any spacing) is
never part of content or of a tool call's arguments. When the asked name is shorter, the
member keeps its length (spaces after the colon, which JSON allows): replacing bytes by as many
is one pass over a read instead of two.
"""

from __future__ import annotations

import functools
import re

import orjson

#: A ``"model"`` member with a string value, as JSON bytes.
_FIELD = re.compile(rb'"model"\s*:\s*"(?:[^"\\]|\\.)*"')


def said(name: str) -> bytes:
    """The ``"model":"<name>"`` member for ``name``."""
    return b'"model":' + orjson.dumps(name)


def _as_long_as(member: bytes, other: bytes) -> bytes:
    """``member`` padded after its colon to the length of ``other`` (when it is shorter)."""
    short = len(other) - len(member)
    return member if short <= 0 else b'"model":' + b" " * short + member[8:]


def in_body(body: bytes, name: str, upstream: str | None = None) -> bytes:
    """A whole JSON answer with its (first) ``model`` member saying ``name``; ``upstream``, the
    name the answer gives (when decoded), finds the member without a pattern."""
    if upstream == name:
        return body
    if upstream:
        renamed = body.replace(*_members(upstream, name), 1)
        if renamed is not body:
            return renamed
    learnt = learn(body, name)
    if learnt is None or not learnt[0]:
        return body
    return body.replace(*learnt, 1)  # the first occurrence is the pattern's first match


@functools.lru_cache(maxsize=1024)
def _members(upstream: str, name: str) -> tuple[bytes, bytes]:
    """The member saying ``upstream`` as written compactly, and the one saying ``name`` that
    replaces it (a few names, asked for many times)."""
    theirs = said(upstream)
    return theirs, _as_long_as(said(name), theirs)


def learn(data: bytes, name: str) -> tuple[bytes, bytes] | None:
    """From the first bytes of a relayed stream that hold a ``model`` member: that member as the
    upstream writes it, and the member to write instead (``None``: none seen yet). Both are
    ``b""`` when the upstream already says ``name``."""
    match = _FIELD.search(data)
    if match is None:
        return None
    theirs, ours = match.group(), said(name)
    if theirs == ours:
        return b"", b""
    return theirs, _as_long_as(ours, theirs)
