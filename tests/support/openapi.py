"""Validation of what the gateway sends against OpenAI's published OpenAPI document.

The document (``tests/support/specs/openai-openapi.json``, MIT, see its LICENSE beside it) still uses OpenAPI 3.0's
``nullable: true`` in places; JSON Schema validators need it as an explicit null, so the schemas
are rewritten once when loaded.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC = Path(__file__).resolve().parent / "specs" / "openai-openapi.json"
URI = "urn:openai-openapi"


def _nullable(node: Any) -> Any:
    if isinstance(node, list):
        return [_nullable(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: _nullable(v) for k, v in node.items()}
    if node.pop("nullable", False):
        if "enum" in node and None not in node["enum"]:
            node["enum"] = [*node["enum"], None]
        if isinstance(node.get("type"), str):
            node["type"] = [node["type"], "null"]
        elif "type" not in node:
            node = {"anyOf": [node, {"type": "null"}]}
    return node


@functools.cache
def _registry() -> Registry:
    spec = _nullable(json.loads(SPEC.read_text()))
    return Registry().with_resource(
        URI, Resource.from_contents(spec, default_specification=DRAFT202012)
    )


@functools.cache
def validator(component: str) -> jsonschema.Draft202012Validator:
    schema = {"$ref": f"{URI}#/components/schemas/{component}"}
    return jsonschema.Draft202012Validator(schema, registry=_registry())


def validate(obj: Any, component: str) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``obj`` conforms to the named component."""
    errors = sorted(validator(component).iter_errors(obj), key=lambda e: list(e.path))
    if errors:
        raise AssertionError(
            f"{component}: " + "; ".join(f"{list(e.path)}: {e.message}" for e in errors[:5])
        )
