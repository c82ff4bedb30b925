"""Importing what configuration names by path: ``"package.module:function"``."""

from __future__ import annotations

import importlib
from typing import Any


def import_path(path: str) -> Any:
    """The object at ``"package.module:attr"`` (or ``"package.module.attr"``; the attribute may
    be dotted). Raises :class:`ValueError` for a malformed path and :class:`ImportError`, with a
    message fit for a configuration error, for one that does not resolve."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"{path!r} is not a 'module:function' path")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(f"cannot import module {module_name!r} ({exc})") from None
    value: Any = module
    for part in attr.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise ImportError(f"module {module_name!r} has no attribute {attr!r}") from None
    return value
