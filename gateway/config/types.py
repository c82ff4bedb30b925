"""The value types every configuration section may use, and the private cattrs converter that
turns TOML into frozen attrs objects.

Plugins declare their own sections through ``gateway_config_sections``; they use the same value
types (:class:`Duration`, :class:`ByteSize`, :class:`Url`) so every file reads alike.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal, Protocol, TypeGuard, get_args, get_origin
from urllib.parse import urlsplit

import cattrs
from cattrs.errors import ForbiddenExtraKeysError

# --- value types -------------------------------------------------------------------------------

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib)?", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 1000**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "gib": 1024**3,
}


class Duration(float):
    """Seconds. TOML may say a number of seconds, or ``"500ms"``, ``"30s"``, ``"15m"``, ``"1h30m"``."""

    @classmethod
    def parse(cls, value: Any) -> Duration:
        if isinstance(value, bool):
            raise ValueError("not a duration")
        if isinstance(value, int | float):
            seconds = float(value)
        elif isinstance(value, str):
            text = value.strip().lower().replace(" ", "")
            pos, seconds = 0, 0.0
            for m in _DURATION_PART.finditer(text):
                if m.start() != pos:
                    break
                seconds += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
                pos = m.end()
            if not text or pos != len(text):
                raise ValueError(f'not a duration: {value!r} (say e.g. "30s", "15m", "24h")')
        else:
            raise ValueError("not a duration")
        if seconds < 0:
            raise ValueError("a duration cannot be negative")
        return cls(seconds)


class ByteSize(int):
    """Bytes. TOML may say a number, or ``"512KiB"``, ``"16MB"``, ``"1GiB"``."""

    @classmethod
    def parse(cls, value: Any) -> ByteSize:
        if isinstance(value, bool):
            raise ValueError("not a size")
        if isinstance(value, int):
            size = value
        elif isinstance(value, str):
            m = _SIZE.fullmatch(value.strip())
            if not m:
                raise ValueError(f'not a size: {value!r} (say e.g. "16MB" or "512KiB")')
            size = int(float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "b").lower()])
        else:
            raise ValueError("not a size")
        if size < 0:
            raise ValueError("a size cannot be negative")
        return cls(size)


class Url(str):
    """An absolute http(s) URL (redis:// and other schemes are checked by their own plugin)."""

    schemes: tuple[str, ...] = ("http", "https")

    @classmethod
    def parse(cls, value: Any) -> Url:
        if not isinstance(value, str):
            raise ValueError("not a URL")
        parts = urlsplit(value)
        if parts.scheme not in cls.schemes or not parts.netloc:
            raise ValueError(
                f"not a URL: {value!r} (expected {' or '.join(cls.schemes)}://host...)"
            )
        return cls(value.rstrip("/"))


class Port(int):
    """A TCP port number (0 picks a free one)."""

    @classmethod
    def parse(cls, value: Any) -> Port:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
            raise ValueError("not a port number (0-65535)")
        return cls(value)


class Count(int):
    """A whole number of at least 1."""

    @classmethod
    def parse(cls, value: Any) -> Count:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError("expected a whole number of at least 1")
        return cls(value)


class NonNegative(int):
    """A whole number of at least 0 (where 0 usually means "no limit")."""

    @classmethod
    def parse(cls, value: Any) -> NonNegative:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError("expected a whole number of at least 0")
        return cls(value)


#: Seconds between the heartbeats a worker sends its supervisor (see gateway.server.workers).
HEARTBEAT = 1.0


class WorkerTimeout(Duration):
    """How long a worker may stay silent: more than the heartbeat interval, or healthy workers
    whose next beat is merely a little late would be killed."""

    @classmethod
    def parse(cls, value: Any) -> WorkerTimeout:
        seconds = Duration.parse(value)
        if seconds <= HEARTBEAT:
            raise ValueError(
                f"must be more than the workers' heartbeat interval ({HEARTBEAT:g}s), "
                f"got {seconds:g}s"
            )
        return cls(seconds)


class LogLevel(str):
    LEVELS = ("debug", "info", "warning", "error", "critical")

    @classmethod
    def parse(cls, value: Any) -> LogLevel:
        if not isinstance(value, str) or value.lower() not in cls.LEVELS:
            raise ValueError(f"expected one of {', '.join(cls.LEVELS)}")
        return cls(value.lower())


class AccessLogFormat(str):
    FORMATS = ("text", "json")

    @classmethod
    def parse(cls, value: Any) -> AccessLogFormat:
        if not isinstance(value, str) or value not in cls.FORMATS:
            raise ValueError(f"expected one of {', '.join(cls.FORMATS)}")
        return cls(value)


def _strict(kind: type, accept: tuple[type[Any], ...], what: str) -> Any:
    def structure(value: Any, _: type) -> Any:
        if isinstance(value, bool) and kind is not bool:
            raise ValueError(f"expected {what}, got a boolean")
        if not isinstance(value, accept):
            raise ValueError(f"expected {what}, got {_describe(value)}")
        return kind(value) if kind is float else value

    return structure


def _primitive(kind: type, accept: tuple[type[Any], ...], what: str) -> Any:
    """The hook for a primitive type and its subclasses: value types (``Duration`` is a float)
    parse themselves, the primitive itself is checked strictly (no ``"8000"`` for a port)."""
    strict = _strict(kind, accept, what)

    def structure(value: Any, type_: type) -> Any:
        if type_ is not kind and _parses(type_):
            return type_.parse(value)
        return strict(value, type_)

    return structure


def _describe(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str):
        return f"the string {value!r}"
    return repr(value)


def make_converter() -> cattrs.Converter:
    """The private converter: strict primitive types, unknown keys forbidden, gateway value types."""
    conv = cattrs.Converter(forbid_extra_keys=True)
    for kind, accept, what in (
        (str, (str,), "a string"),
        (int, (int,), "an integer"),
        (float, (int, float), "a number"),
        (bool, (bool,), "true or false"),
    ):
        conv.register_structure_hook(kind, _primitive(kind, accept, what))
    # Any class with a ``parse(value)`` classmethod (the value types above, and plugins' own) is
    # structured by calling it; its ValueError message becomes the error at the value's path.
    conv.register_structure_hook_func(_parses, lambda v, t: t.parse(v))
    return conv


class _ValueType(Protocol):
    """A class that builds its instances from config values (``Duration.parse("5s")``)."""

    def parse(self, value: Any) -> Any: ...


def _parses(type_: Any) -> TypeGuard[_ValueType]:
    """Whether ``type_`` is a class with a ``parse`` classmethod (a value type)."""
    return isinstance(type_, type) and any(
        isinstance(c.__dict__.get("parse"), classmethod) for c in type_.__mro__
    )


def format_errors(exc: BaseException, path: str) -> list[str]:
    """Turn a cattrs structuring error into ``"a.b.c: message"`` lines."""
    return [
        _dotted(line)
        for line in cattrs.transform_error(exc, path="$." + path, format_exception=_format)
    ]


def _format(exc: BaseException, type_: type | None) -> str:
    if isinstance(exc, ForbiddenExtraKeysError):
        return f"unknown key{'s' if len(exc.extra_fields) > 1 else ''} " + ", ".join(
            sorted(repr(k) for k in exc.extra_fields)
        )
    if isinstance(exc, KeyError):
        return "required but missing"
    if isinstance(exc, AttributeError):
        return "expected a table"
    if get_origin(type_) is Literal:
        return "expected one of " + ", ".join(str(v) for v in get_args(type_))
    if isinstance(exc, ValueError):
        return str(exc)
    if isinstance(exc, TypeError):
        return f"expected {_type_name(type_)}" if type_ is not None else "invalid value"
    return f"invalid value ({type(exc).__name__})"


def _type_name(type_: Any) -> str:
    origin = getattr(type_, "__origin__", None)
    if origin in (list, tuple):
        return "a list"
    if origin in (dict, Mapping):
        return "a table"
    return getattr(type_, "__name__", str(type_))


_SUBSCRIPT = re.compile(r"\[['\"]?([^'\"\]]+)['\"]?\]")


def _dotted(line: str) -> str:
    """``"invalid ... @ $.backends['local'].base_url"`` -> ``"backends.local.base_url: invalid ..."``."""
    message, _, where = line.rpartition(" @ ")
    if not _:
        return line
    path = _SUBSCRIPT.sub(lambda m: "." + m.group(1), where.removeprefix("$").removeprefix("."))
    if message.startswith("extra fields found"):
        message = message.replace("extra fields found", "unknown keys")
    return f"{path.strip('.')}: {message}"
