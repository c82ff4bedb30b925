"""The gateway's own OpenAPI document, and schemathesis against every operation in it: positive
and negative data, with a key and without, no 5xx and no answer outside the document."""

from __future__ import annotations

import time

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from support.processes import gateway_process

KEY = "sk-fuzz-0123456789"
CONFIG = f"""
[auth]
keys = ["{KEY}"]

[backends.echo]
kind = "echo"

[models.echo]
backend = "echo"

[agents.helper]
model = "echo"
"""
#: Examples per operation and generation mode: the whole run stays within about a minute.
EXAMPLES = 8
#: Operations left out: the console's page assets (files, not an API) and the WebSocket/SSE
#: attach, whose positive cases are streams that stay open.
SKIPPED = ("/ui", "/agui/ws")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    with gateway_process(config=CONFIG, directory=tmp_path_factory.mktemp("fuzz")) as gw:
        yield gw


def test_the_document_lists_every_route_with_its_key_requirement(gateway):
    doc = requests.get(gateway.url + "/openapi.json", timeout=10).json()
    assert doc["openapi"] == "3.1.0"
    paths = doc["paths"]
    for path in (
        "/v1/chat/completions",
        "/v1/embeddings",
        "/v1/models",
        "/v1/responses",
        "/v1/messages",
        "/v1/messages/count_tokens",
        "/agui/agents/{agent}/runs",
        "/a2a/{agent}",
        "/health",
        "/openapi.json",
    ):
        assert path in paths, path
    assert paths["/v1/chat/completions"]["post"]["security"]
    assert paths["/health"]["get"]["security"] == []
    chat = paths["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]
    assert chat["schema"]["properties"]["model"] == {"enum": ["echo"]}
    agent = paths["/a2a/{agent}"]["post"]["parameters"][0]
    assert agent["schema"] == {"enum": ["helper"]}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("keyed", [True, False], ids=["key", "no-key"])
def test_schemathesis_finds_no_5xx_and_no_undocumented_answer(gateway, mode, keyed):
    schema = schemathesis.openapi.from_url(gateway.url + "/openapi.json")
    headers = {"authorization": f"Bearer {KEY}"} if keyed else {}
    session = requests.Session()
    started = time.monotonic()
    ran = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.startswith(SKIPPED):
            continue

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def check(case):
            if case.headers is None:
                case.headers = {}
            case.headers.update(headers)
            case.call_and_validate(base_url=gateway.url, session=session, checks=CHECKS, timeout=10)

        try:
            check()
        except Unsatisfiable:
            # An operation with nothing to get wrong (no parameters, no body) has no negative
            # cases; its positive ones ran with the positive mode.
            assert mode == GenerationMode.NEGATIVE, operation.label
            continue
        ran += 1
    assert ran >= (15 if mode == GenerationMode.POSITIVE else 8)
    assert time.monotonic() - started < 240
    # The gateway is still healthy afterwards and logged no traceback.
    assert requests.get(gateway.url + "/health", timeout=5).status_code == 200
    assert "Traceback" not in gateway.output
