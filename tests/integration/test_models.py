"""``GET /v1/models`` lists what a caller can use: exact names, the names glob routes serve
(configured, and from the upstream's own list, cached), in OpenAI's shape for the openai SDK and
in Anthropic's for the anthropic SDK (``models.list()`` and ``models.retrieve()``)."""

from __future__ import annotations

import anthropic
import openai
import pytest
from fakes import anthropic_upstream, openai_upstream
from support.configs import both_config


def config(upstream, claude_upstream, **auth) -> dict:
    cfg = both_config(upstream, claude_upstream)
    cfg["models"].update(
        {
            "gpt-*": {"backend": "up", "names": ["gpt-configured", "not-a-gpt"]},
            "claude-*": {"backend": "claude", "description": "Claude, any"},
            "fixed-*": {"backend": "up", "upstream_model": "up-model", "names": ["fixed-a"]},
        }
    )
    if auth:
        cfg["auth"] = auth
    return cfg


EVERY = [
    "gpt-test",
    "claude-test",
    "gpt-configured",
    "gpt-fake-1",
    "gpt-fake-2",
    "claude-fake-1",
    "claude-fake-2",
    "fixed-a",
]


async def test_globs_list_configured_and_upstream_names(
    make_gateway, upstream, claude_upstream, sdk
):
    gateway = await make_gateway(config(upstream, claude_upstream))
    listed = [m.id async for m in sdk(gateway).models.list()]
    assert listed == EVERY
    # the upstream lists are cached; the route with a fixed upstream model asks for none
    assert [m.id async for m in sdk(gateway).models.list()] == EVERY
    assert upstream.app[openai_upstream.MODEL_LISTS] == ["/v1/models"]
    assert len(claude_upstream.app[anthropic_upstream.MODEL_LISTS]) == 1
    model = await sdk(gateway).models.retrieve("gpt-fake-2")
    assert model.id == "gpt-fake-2" and model.object == "model"


async def test_anthropic_sdk_gets_anthropic_shapes(
    make_gateway, upstream, claude_upstream, claude_sdk
):
    gateway = await make_gateway(config(upstream, claude_upstream))
    api = claude_sdk(gateway)
    page = await api.models.list(limit=3)
    assert [m.id for m in page.data] == EVERY[:3] and page.has_more
    assert all(m.type == "model" and m.created_at.year == 2023 for m in page.data)
    every = [m.id async for m in await api.models.list(limit=3)]  # the SDK pages on
    assert every == EVERY
    info = await api.models.retrieve("claude-fake-2")
    assert info.id == "claude-fake-2" and info.type == "model" and info.display_name
    with pytest.raises(anthropic.NotFoundError):
        await api.models.retrieve("nope")


async def test_a_key_lists_only_its_models(make_gateway, upstream, claude_upstream, sdk):
    keys = [{"name": "gpt", "key": "sk-gpt", "models": ["gpt-*", "claude-fake-1"]}]
    gateway = await make_gateway(config(upstream, claude_upstream, keys=keys))
    listed = [m.id async for m in sdk(gateway, api_key="sk-gpt").models.list()]
    assert listed == ["gpt-configured", "gpt-fake-1", "gpt-fake-2", "claude-fake-1"]


async def test_a_down_upstream_leaves_only_its_names_out(make_gateway, upstream, sdk, caplog):
    cfg = config(upstream, upstream)
    cfg["backends"]["claude"]["base_url"] = "http://127.0.0.1:9"  # nothing listens there
    gateway = await make_gateway(cfg)
    listed = [m.id async for m in sdk(gateway).models.list()]
    assert "gpt-fake-1" in listed and not any(n.startswith("claude-fake") for n in listed)
    assert any("no model list" in r.getMessage() for r in caplog.records)
    with pytest.raises(openai.NotFoundError):
        await sdk(gateway).models.retrieve("nope")
