"""Docstrings use reStructuredText roles (``:class:`~gateway.Backend```) and ``::`` before
literal blocks; these helpers make them read well in Markdown, for the API reference (a griffe
extension, ``extensions:`` in mkdocs.yml) and the configuration reference."""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:class|meth|func|mod|data|attr|exc|obj):`(~?)([^`]+)`")


def markdown(text: str) -> str:
    """``text`` with roles turned into code spans (``~`` keeps the last name only) and a
    trailing ``::`` into ``:``."""

    def role(m: re.Match[str]) -> str:
        name = m.group(2)
        return f"`{name.rsplit('.', 1)[-1] if m.group(1) else name}`"

    return re.sub(r"::$", ":", _ROLE.sub(role, text), flags=re.MULTILINE)


class RstRoles(griffe.Extension):
    """Rewrite the docstrings of a loaded package with :func:`markdown`, once it is whole (so
    docstrings other extensions made, such as ``#:`` comments, are rewritten too)."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        _rewrite(pkg)


def _rewrite(obj: griffe.Object) -> None:
    if obj.docstring is not None:
        obj.docstring.value = markdown(obj.docstring.value)
    for member in obj.members.values():
        if not member.is_alias:
            _rewrite(member)  # type: ignore[arg-type]
