"""The configuration reference, generated from the configuration classes when the site is built.

An mkdocs hook (``hooks:`` in mkdocs.yml): ``on_files`` adds ``reference/configuration.md``, made
from the core's sections (``CORE_SECTIONS``) and every built-in plugin's
(``gateway_config_sections``), with one table per kind for ``[backends.<name>]`` and
``[listeners.<name>]`` and one for every nested table (``[[webhooks.<name>.on]]``). Each key
shows its type, its default and the ``#:`` comment above its field in the source, so the page
is as current as the code and nothing generated is committed.
"""

from __future__ import annotations

import inspect
import json
import re
import textwrap
import types
import typing
from collections.abc import Iterator, Mapping
from functools import cache
from typing import Any

import attrs
import griffe
from rst_roles import markdown  # docs/hooks, on the path while mkdocs loads hooks

PAGE = "reference/configuration.md"

#: Sections whose tables are structured by their ``kind`` key, and the registry table (by its
#: attribute name, newest first) that holds the kinds with their config classes.
KINDED = {"backends": ("backends",), "listeners": ("listeners", "triggers")}


@attrs.frozen
class Key:
    """One row: a key of a TOML table."""

    name: str
    type: str
    default: str
    doc: str


@attrs.frozen
class Table:
    """One TOML table (or array of tables) and the class that structures it."""

    path: str
    cls: type
    owner: str
    core: bool
    intro: str
    keys: tuple[Key, ...]
    level: int = 3

    @property
    def anchor(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.path.lower().replace("<name>", "name")).strip("-")

    @property
    def qualname(self) -> str:
        return f"{self.cls.__module__}.{self.cls.__qualname__}"


# --- collecting --------------------------------------------------------------------------------


def collect() -> list[Table]:
    """Every table of the configuration: the core's sections, then the plugins' by name."""
    from gateway.config.sections import CORE_SECTIONS
    from gateway.core.plugins import BUILTINS, get_plugin_manager
    from gateway.core.registry import Registry

    pm = get_plugin_manager(autoload=False, plugins=list(BUILTINS.items()))
    registry = Registry.collect_sections(pm)
    registry.collect(pm)
    tables: list[Table] = []
    for name, type_ in CORE_SECTIONS.items():
        tables += _section(name, type_, "the core", True, registry)
    for reg in sorted(registry.sections.values(), key=lambda r: r.name):
        if reg.name not in CORE_SECTIONS:
            tables += _section(reg.name, reg.value, f"plugin `{reg.plugin}`", False, registry)
    return tables


def _section(name: str, type_: Any, owner: str, core: bool, registry: Any) -> list[Table]:
    """The tables of one top-level section: itself (or what all its kinds share), one per kind,
    and what they nest."""
    if typing.get_origin(type_) in (dict, Mapping):
        path, cls = f"[{name}.<name>]", typing.get_args(type_)[1]
    else:
        path, cls = f"[{name}]", type_
    if name not in KINDED:
        return list(_tables(path, cls, owner, core))
    kinds = _kinds(registry, KINDED[name])
    if not attrs.has(cls):
        cls = common_base([reg.config for reg in kinds.values()])
    tables = list(
        _tables(
            path, cls, owner, core, intro="`kind` picks one of the kinds below, which add keys."
        )
    )
    shared = {f.name for f in attrs.fields(cls)}
    for kind, reg in sorted(kinds.items()):
        tables += _tables(
            f'{path} kind = "{kind}"',
            reg.config,
            f"plugin `{reg.plugin}`",
            core,
            intro=f"Besides the keys of every `{path}` table above:" if shared else "",
            level=4,
            skip=shared,
        )
    return tables


def _kinds(registry: Any, names: tuple[str, ...]) -> dict[str, Any]:
    for name in names:
        table = getattr(registry, name, None)
        if table is not None:
            return {reg.name: reg for reg in table.values()}
    raise LookupError(f"the registry has none of {names}")


def common_base(classes: list[type]) -> type:
    """The most derived attrs class every one of ``classes`` inherits."""
    for base in classes[0].__mro__:
        if attrs.has(base) and all(issubclass(c, base) for c in classes):
            return base
    raise TypeError(f"{classes} share no attrs base class")


def _tables(
    path: str,
    cls: type,
    owner: str,
    core: bool,
    intro: str = "",
    level: int = 3,
    skip: frozenset[str] | set[str] = frozenset(),
) -> Iterator[Table]:
    """The table for ``cls`` at ``path``, then the tables its fields nest."""
    hints = _hints(cls)
    comments = field_comments(cls)
    keys = []
    nested = []
    for field in attrs.fields(cls):
        if field.name in skip:
            continue
        type_ = hints.get(field.name, field.type)
        keys.append(Key(field.name, type_name(type_), default(field), comments.get(field.name, "")))
        inner = _attrs_class(type_)
        if inner is not None:
            many = typing.get_origin(type_) in (tuple, list)
            base = path.split(" ")[0].strip("[]")
            sub = f"[[{base}.{field.name}]]" if many else f"[{base}.{field.name}]"
            nested.append((sub, inner))
    doc = docstring(cls)
    intro = "\n\n".join(p for p in (doc, intro) if p)
    yield Table(path, cls, owner, core, intro, tuple(keys), level)
    for sub, inner in nested:
        yield from _tables(sub, inner, owner, core, level=level + 1)


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # a name only imported for type checking: keep the annotations' text
        return {}


def _attrs_class(type_: Any) -> type | None:
    """The attrs class a field holds (directly, optionally, or as list items), if any."""
    if isinstance(type_, type) and attrs.has(type_):
        return type_
    for arg in typing.get_args(type_):
        found = _attrs_class(arg)
        if found is not None:
            return found
    return None


# --- the ``#:`` comments -----------------------------------------------------------------------


def field_comments(cls: type) -> dict[str, str]:
    """The ``#:`` comments above the fields of ``cls`` and of its bases, read by griffe."""
    found = _griffe(cls.__module__.partition(".")[0])[f"{cls.__module__}.{cls.__qualname__}"]
    return {
        name: member.docstring.value
        for name, member in found.all_members.items()
        if member.docstring is not None
    }


@cache
def _griffe(package: str) -> Any:
    loaded = griffe.load(package, extensions=griffe.load_extensions("griffe_sphinx"))
    return {obj.path: obj for obj in _walk(loaded)}


def _walk(obj: Any) -> Iterator[Any]:
    yield obj
    for member in obj.members.values():
        if not member.is_alias and (member.is_module or member.is_class):
            yield from _walk(member)


# --- types and defaults ------------------------------------------------------------------------


def type_name(type_: Any) -> str:
    """How a field's type reads in TOML terms."""
    from gateway.config import types as t

    if isinstance(type_, str):
        return f"`{type_}`"
    names = {
        str: "string",
        int: "integer",
        float: "number",
        bool: "boolean",
        t.Duration: "duration",
        t.ByteSize: "size",
        t.Count: "integer ≥ 1",
        t.NonNegative: "integer ≥ 0",
        t.Port: "port (0-65535)",
        t.Url: "http(s) URL",
    }
    if type_ in names:
        return names[type_]
    if type_ is t.LogLevel:
        return " | ".join(f'`"{level}"`' for level in t.LogLevel.LEVELS)
    if type_ is typing.Any:
        return "any"
    origin, args = typing.get_origin(type_), typing.get_args(type_)
    if origin is typing.Literal:
        return " | ".join(f"`{json.dumps(a)}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        kept = [a for a in args if a is not type(None)]
        return " or ".join(type_name(a) for a in kept)
    if origin in (tuple, list):
        return f"list of {_plural(type_name(args[0]))}" if args else "list"
    if origin in (dict, Mapping):
        return f"table of {_plural(type_name(args[1]))}" if len(args) == 2 else "table"
    if isinstance(type_, type) and attrs.has(type_):
        parses = isinstance(type_.__dict__.get("parse"), classmethod)
        return "string or table" if parses else "table"
    if isinstance(type_, type):
        # A value type of a plugin's own: its name, and what its docstring's first sentence says.
        first = re.split(r"(?<=\.)\s", inspect.getdoc(type_) or "", maxsplit=1)[0]
        return f"`{type_.__name__}`: {markdown(first)}" if first else f"`{type_.__name__}`"
    return str(type_)


def _plural(name: str) -> str:
    words = ("string", "table", "integer", "number", "boolean", "duration", "size")
    parts = name.split(" or ")
    for i, part in enumerate(parts):
        for word in words:
            if part.startswith(word):
                parts[i] = word + "s" + part[len(word) :]
                break
    return " or ".join(parts)


def default(field: attrs.Attribute) -> str:  # type: ignore[type-arg]
    """A field's default as TOML, or *required*."""
    value = field.default
    if value is attrs.NOTHING:
        return "*required*"
    if isinstance(value, attrs.Factory):  # type: ignore[arg-type]
        value = value.factory(None) if value.takes_self else value.factory()  # type: ignore[attr-defined]
    if value is None:
        return "*unset*"
    return f"`{toml_value(value)}`"


def toml_value(value: Any) -> str:
    from gateway.config.types import ByteSize, Duration

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Duration):
        return json.dumps(duration(float(value)))
    if isinstance(value, ByteSize):
        return json.dumps(size(int(value))) if size(int(value)) else str(int(value))
    if isinstance(value, str):
        return json.dumps(str(value))
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    return repr(value)


def duration(seconds: float) -> str:
    """``"24h"``, ``"1m30s"``, ``"500ms"``: the way the example configuration writes them."""
    if seconds and seconds < 1:
        return f"{seconds * 1000:g}ms"
    whole, rest = divmod(seconds, 1)
    if rest:
        return f"{seconds:g}s"
    parts, left = [], int(whole)
    for unit, length in (("h", 3600), ("m", 60), ("s", 1)):
        count, left = divmod(left, length)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def size(count: int) -> str:
    for unit, length in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if count and count % length == 0:
            return f"{count // length}{unit}"
    return ""


# --- Markdown ----------------------------------------------------------------------------------

_CODE = re.compile(r"(``?)(.+?)\1")


def docstring(cls: type) -> str:
    """A class's docstring as Markdown; a paragraph after one ending in ``::`` is a code block."""
    paragraphs = re.split(r"\n\s*\n", inspect.cleandoc(cls.__doc__ or ""))
    out: list[str] = []
    for paragraph in paragraphs:
        if out and out[-1].endswith("::"):
            out.append("```toml\n" + textwrap.dedent(paragraph) + "\n```")
        else:
            out.append(paragraph)
    return "\n\n".join(p if p.startswith("```") else markdown(p) for p in out)


def cell(text: str) -> str:
    """``text`` made safe for one table cell: pipes, angle brackets and stars escaped outside
    code spans."""
    out, pos = [], 0
    for m in _CODE.finditer(text):
        out.append(_escape(text[pos : m.start()]))
        out.append(m.group(0))
        pos = m.end()
    out.append(_escape(text[pos:]))
    return "".join(out).replace("\n", " ")


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;").replace("*", "\\*")


def render(tables: list[Table] | None = None) -> str:
    """The whole reference page."""
    tables = collect() if tables is None else tables
    out = [
        "# Configuration reference",
        "",
        "Every table and key hookgate's configuration file accepts, with the built-in plugins",
        "installed: generated from the configuration classes when this site is built, so it is",
        "as current as the code. [The configuration guide](../configuration.md) explains how the",
        "file is read (secrets from the environment, durations and sizes, precedence), and",
        "`config/hookgate.toml` is the commented example. A key that is absent takes its",
        "default; *required* keys have none; *unset* means the option is off or its value comes",
        "from elsewhere, as its description says. Unknown keys are errors.",
        "",
        'Durations are a number of seconds or a string such as `"500ms"`, `"30s"`,',
        '`"15m"`, `"1h30m"`; sizes a number of bytes or a string such as `"512KiB"` or',
        '`"16MB"`. A plugin\'s section exists only while that plugin is enabled.',
        "",
    ]
    core = True
    out += ["## Core sections", ""]
    for table in tables:
        if core and not table.core:
            out += ["## Plugin sections", ""]
            core = False
        out += [
            f"{'#' * table.level} `{table.path}` {{ #{table.anchor} }}",
            "",
        ]
        if table.intro:
            out += [table.intro, ""]
        out += [
            f"Owned by {table.owner}; structured by `{table.qualname}`.",
            "",
            "| Key | Type | Default | Description |",
            "| --- | --- | --- | --- |",
        ]
        for key in table.keys:
            out.append(f"| `{key.name}` | {cell(key.type)} | {key.default} | {cell(key.doc)} |")
        out.append("")
    return "\n".join(out)


# --- the mkdocs hook ---------------------------------------------------------------------------


def on_files(files: Any, config: Any) -> Any:
    """Add the generated page to the site."""
    from mkdocs.structure.files import File

    if files.get_file_from_path(PAGE) is not None:
        raise RuntimeError(f"docs/{PAGE} is generated at build time; remove the committed copy")
    files.append(File.generated(config, PAGE, content=render()))
    return files
