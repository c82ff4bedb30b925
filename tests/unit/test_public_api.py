"""The public API: every exported name resolves, and plugins/ is held to it.

Built-in plugins are held to the same API by import-linter's contracts in pyproject.toml (run by
scripts/test); the distributions in plugins/ and the documentation's example plugins
(docs/examples, whose ruff.toml extends it) by ruff's banned-api list in plugins/ruff.toml, which
this file checks covers every internal module.
"""

from __future__ import annotations

import importlib
import pkgutil
import tomllib

import pytest
from support import ROOT

import gateway

#: Packages whose __all__ is public API besides gateway's own.
PUBLIC = [
    "gateway.agents",
    "gateway.tools",
    "gateway.triggers",
    "gateway.runs",
    "gateway.protocols.openai",
    "gateway.protocols.anthropic",
    "gateway.protocols.agui",
    "gateway.protocols.a2a",
]


def every_module() -> list[str]:
    names = ["gateway"]
    for info in pkgutil.walk_packages(gateway.__path__, "gateway."):
        names.append(info.name)
    return names


def banned() -> set[str]:
    config = tomllib.loads((ROOT / "plugins" / "ruff.toml").read_text())
    return set(config["lint"]["flake8-tidy-imports"]["banned-api"])


def covered(module: str, bans: set[str]) -> bool:
    parts = module.split(".")
    return any(".".join(parts[:i]) in bans for i in range(1, len(parts) + 1))


@pytest.mark.parametrize("package", ["gateway", *PUBLIC])
def test_every_exported_name_resolves(package):
    module = importlib.import_module(package)
    assert module.__all__, f"{package} exports nothing"
    assert len(set(module.__all__)) == len(module.__all__)
    for name in module.__all__:
        assert getattr(module, name, None) is not None, f"{package}.{name} does not resolve"


def test_the_plugin_api_is_complete_for_each_kind():
    # What a plugin of each kind needs, by name (docs/plugins.md shows one of each).
    needs = {
        "protocol": [
            "ProtocolAdapter",
            "StreamEncoder",
            "read_json",
            "json_response",
            "SSEResponse",
        ],
        "backend": ["Backend", "BackendConfig", "HTTPBackend", "HTTPBackendConfig", "Upstream"],
        "stream": ["SSEDecoder", "SSEFrame", "FrameRelay", "Assembler", "new_id"],
        "auth": ["Authenticator", "Principal", "Unauthorized", "Forbidden"],
        "filter": ["Filter", "Outcome", "ChatRequest", "ChatResponse", "Event", "Exchange"],
        "session store": [
            "SessionStore",
            "Session",
            "SessionInfo",
            "Entry",
            "decode_messages",
            "trim",
        ],
        "shared state": ["SharedState", "RedisState"],
        "registration": ["hookimpl", "Register", "RegisterBackend", "RegisterListener"],
        "errors": ["GatewayError", "BadRequest", "UpstreamError", "UpstreamTimeout"],
    }
    missing = [
        (kind, n) for kind, names in needs.items() for n in names if n not in gateway.__all__
    ]
    assert not missing
    from gateway import agents, tools, triggers

    assert {"Listener", "ListenerConfig", "TriggerEvent", "Verifier", "Rejected"} <= set(
        triggers.__all__
    )
    assert {"Agent", "tool"} <= set(agents.__all__) and "Tool" in tools.__all__


def test_plugins_ruff_bans_every_internal_module_and_no_public_one():
    bans = banned()
    public = {"gateway", "gateway.protocols", *PUBLIC}
    for module in every_module():
        if module in public:
            assert not covered(module, bans), f"{module} is public but plugins/ruff.toml bans it"
        else:
            assert covered(module, bans), (
                f"{module} is internal: add it (or its package) to plugins/ruff.toml's banned-api"
            )
    # Every ban names a module that exists, so the list does not rot.
    modules = set(every_module())
    assert bans <= modules, sorted(bans - modules)


def test_the_documentations_example_plugins_are_held_to_the_same_list():
    examples = ROOT / "docs" / "examples"
    config = tomllib.loads((examples / "ruff.toml").read_text())
    assert (examples / config["extend"]).resolve() == ROOT / "plugins" / "ruff.toml"
    assert list((examples / "plugins").glob("*.py")), "no example plugins to hold"
