"""Agent cards held to each A2A version's normative definition, as the official a2a-sdk ships it.

- **1.0**: the specification's source of truth is ``a2a.proto`` (package ``lf.a2a.v1``); its
  published JSON schema (``a2a-protocol.org/v1.0.0/spec/a2a.json``, which calls itself a
  "non-normative JSON Schema bundle extracted from proto definitions") is generated from it,
  with ``additionalProperties: false`` on every message and no required fields. :func:`check_card_1`
  parses the card with protobuf's JSON parser against the SDK's compiled ``lf.a2a.v1.AgentCard``
  without ignoring unknown fields (what the generated schema checks: every name known, every
  value of its type), then checks the fields the proto marks ``REQUIRED`` (which the generated
  schema leaves out).
- **0.3**: the SDK's 0.3 types (``a2a.compat.v0_3.types``) are generated from 0.3's
  ``specification/json/a2a.json``; :func:`check_card_03` validates the card with them and
  refuses any key they do not know (they would drop it silently).
"""

from __future__ import annotations

from typing import Any

from a2a.compat.v0_3 import types as types_v03
from a2a.types.a2a_pb2 import AgentCard
from google.api import field_behavior_pb2
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor


def _missing_required(message: Any, descriptor: Descriptor, at: str) -> list[str]:
    missing = []
    for field in descriptor.fields:
        behaviors = field.GetOptions().Extensions[field_behavior_pb2.field_behavior]
        value = getattr(message, field.name)
        repeated = field.is_repeated
        if field_behavior_pb2.REQUIRED in behaviors:
            present = (
                len(value) > 0
                if repeated
                else message.HasField(field.name)
                if field.message_type is not None
                else value != field.default_value
            )
            if not present:
                missing.append(f"{at}{field.json_name}")
        if field.message_type is not None and not field.message_type.GetOptions().map_entry:
            if repeated:
                for i, item in enumerate(value):
                    missing += _missing_required(
                        item, field.message_type, f"{at}{field.json_name}[{i}]."
                    )
            elif message.HasField(field.name):
                missing += _missing_required(value, field.message_type, f"{at}{field.json_name}.")
    return missing


def check_card_1(card: dict[str, Any]) -> AgentCard:
    """Fail unless ``card`` is a valid A2A 1.0 ``AgentCard``; returns it parsed."""
    parsed = json_format.ParseDict(card, AgentCard())  # unknown fields raise ParseError
    missing = _missing_required(parsed, AgentCard.DESCRIPTOR, "")
    assert not missing, f"1.0 card lacks required fields: {missing}"
    return parsed


def _unknown(given: Any, kept: Any, at: str) -> list[str]:
    if isinstance(given, dict) and isinstance(kept, dict):
        out = [f"{at}{k}" for k in given if k not in kept]
        for k in given.keys() & kept.keys():
            out += _unknown(given[k], kept[k], f"{at}{k}.")
        return out
    if isinstance(given, list) and isinstance(kept, list):
        return [
            u
            for i, (g, k) in enumerate(zip(given, kept, strict=True))
            for u in _unknown(g, k, f"{at}{i}.")
        ]
    return []


def check_card_03(card: dict[str, Any]) -> types_v03.AgentCard:
    """Fail unless ``card`` is a valid A2A 0.3 ``AgentCard`` with no field 0.3 lacks."""
    parsed = types_v03.AgentCard.model_validate(card)
    kept = parsed.model_dump(mode="json", by_alias=True, exclude_unset=True)
    unknown = _unknown(card, kept, "")
    assert not unknown, f"0.3 card has fields 0.3 does not define: {unknown}"
    return parsed
