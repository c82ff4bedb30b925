"""The documentation: the configuration reference generated from the config classes is complete,
and the README stays short and points into the docs."""

from __future__ import annotations

import re
import sys
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest

from gateway.config.sections import CORE_SECTIONS
from gateway.core.plugins import BUILTINS, get_plugin_manager
from gateway.core.registry import Registry

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "docs" / "hooks"))

import config_reference  # noqa: E402


@pytest.fixture(scope="module")
def registry() -> Registry:
    pm = get_plugin_manager(autoload=False, plugins=list(BUILTINS.items()))
    registry = Registry.collect_sections(pm)
    registry.collect(pm)
    return registry


@pytest.fixture(scope="module")
def reference() -> str:
    return config_reference.render()


def blocks(page: str) -> dict[str, tuple[str, set[str]]]:
    """The page's tables by the class that structures them: (heading, keys in the table)."""
    found: dict[str, tuple[str, set[str]]] = {}
    for block in re.split(r"\n(?=#{2,6} )", page):
        heading = block.split("\n", 1)[0]
        owner = re.search(r"structured by `([\w.]+)`", block)
        if owner is not None:
            keys = set(re.findall(r"^\| `(\w+)` \|", block, re.MULTILINE))
            found[owner.group(1)] = (heading, keys)
    return found


def config_classes(registry: Registry) -> Iterator[type]:
    """Every attrs class a configuration file reaches: the sections, the kinds of backends and
    listeners, and the classes their fields hold."""
    roots: list[Any] = [*CORE_SECTIONS.values(), *(r.value for r in registry.sections.values())]
    roots += [r.config for r in registry.backends.values()]
    kinds = getattr(registry, "listeners", None) or registry.triggers
    roots += [r.config for r in kinds.values()]
    seen: set[type] = set()
    todo = list(roots)
    while todo:
        item = todo.pop()
        if isinstance(item, type) and attrs.has(item):
            if item in seen:
                continue
            seen.add(item)
            yield item
            todo += typing.get_type_hints(item).values()
        else:
            todo += typing.get_args(item)


def qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def test_every_field_of_every_config_class_is_in_the_reference(
    registry: Registry, reference: str
) -> None:
    tables = blocks(reference)
    classes = list(config_classes(registry))
    assert len(classes) >= 20  # the core's and every built-in plugin's
    for cls in classes:
        documented: set[str] = set()
        for base in cls.__mro__:
            documented |= tables.get(qualname(base), ("", set()))[1]
        missing = {f.name for f in attrs.fields(cls)} - documented
        assert not missing, f"{qualname(cls)}: not in the reference: {sorted(missing)}"
        # A class documented only through a base still has its own table for what it adds.
        own = {f.name for f in attrs.fields(cls)} - {
            f.name for b in cls.__mro__[1:] if attrs.has(b) for f in attrs.fields(b)
        }
        if own:
            assert qualname(cls) in tables, f"{qualname(cls)} has no table"


def test_every_section_and_kind_has_a_heading(registry: Registry, reference: str) -> None:
    headings = [heading for heading, _ in blocks(reference).values()]
    for name, type_ in [
        *CORE_SECTIONS.items(),
        *((r.name, r.value) for r in registry.sections.values()),
    ]:
        table = f"[{name}.<name>]" if typing.get_origin(type_) in (dict, Mapping) else f"[{name}]"
        assert any(f"`{table}" in h for h in headings), f"no heading for {table}"
    for kind in registry.backends.names():
        assert any(f'`[backends.<name>] kind = "{kind}"`' in h for h in headings), kind
    kinds = getattr(registry, "listeners", None) or registry.triggers
    for kind in kinds.names():
        assert any(f'`[listeners.<name>] kind = "{kind}"`' in h for h in headings), kind


def test_the_reference_shows_types_defaults_and_comments(reference: str) -> None:
    server = reference.split("### `[server]`", 1)[1].split("\n### ", 1)[0]
    assert "| `port` | port (0-65535) | `8000` |" in server
    assert '| `drain_timeout` | duration | `"30s"` | On SIGTERM/SIGINT, how long' in server
    assert '| `max_body_size` | size | `"16MiB"` |' in server
    webhooks = reference.split("### `[webhooks.<name>]`", 1)[1]
    assert "| `verifier` | string | *required* | stripe \\| slack" in webhooks
    assert "#### `[[webhooks.<name>.on]]`" in webhooks
    openai = reference.split('`[backends.<name>] kind = "openai"`', 1)[1].split("\n#", 1)[0]
    assert '| `max_tokens_field` | `"max_tokens"` \\| `"max_completion_tokens"` |' in openai
    # The ``kind`` every backend table has is documented once, above the kinds.
    assert "| `kind` |" not in openai


def test_durations_and_sizes_read_like_the_example_configuration() -> None:
    assert config_reference.duration(86400) == "24h"
    assert config_reference.duration(90) == "1m30s"
    assert config_reference.duration(0.5) == "500ms"
    assert config_reference.duration(0) == "0s"
    assert config_reference.size(16 * 1024**2) == "16MiB"
    assert config_reference.size(1000) == ""


def test_no_generated_page_is_committed() -> None:
    assert not (ROOT / "docs" / config_reference.PAGE).exists()


def test_readme_is_short_and_its_links_into_the_docs_exist() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 200
    links = re.findall(r"\]\(((?:docs|config|plugins)/[^)#]+)", readme)
    assert any(link.startswith("docs/") for link in links)
    for link in links:
        assert (ROOT / link).exists(), link
