"""Agent cards: the ones this gateway publishes, and reading the ones remote agents publish.

Each agent gets a card, and the gateway one listing its agents as skills. A card comes in the
form of the protocol version asked for, each valid against that version's schema:

- **1.0** (``/.well-known/agent-card.json`` asked without ``A2A-Version`` or with 1.x):
  ``supportedInterfaces`` naming the JSON-RPC url for 1.0 and for 0.3, security schemes in
  1.0's shape;
- **0.3** (the same path asked with ``A2A-Version: 0.3``, and ``/.well-known/agent.json``, where
  0.2 and 0.3 clients looked first): 0.3's ``url``, ``preferredTransport`` and
  ``protocolVersion``, security schemes in 0.3's (OpenAPI) shape, so a 1.x client that reads it
  talks 0.3.

The gateway card carries an extension (:data:`AGENTS_EXTENSION`) listing each agent's card, so
:class:`~gateway.protocols.a2a.client.A2AClient` can discover them.
"""

from __future__ import annotations

from typing import Any

import attrs

from gateway.protocols.a2a.wire import INPUT_MODES, OUTPUT_MODES, V03, V1

#: The extension of the gateway's card whose ``params.agents`` lists ``{name, url, card}``.
AGENTS_EXTENSION = "urn:hookgate:a2a:agents:v1"
CARD_PATH = "/.well-known/agent-card.json"
LEGACY_CARD_PATH = "/.well-known/agent.json"

_KEY_HELP = "An API key of this gateway"


@attrs.frozen
class AgentInfo:
    """What a card says about one agent."""

    name: str
    description: str
    #: The agent's tools as (name, description).
    tools: tuple[tuple[str, str], ...] = ()


def _skills(info: AgentInfo) -> list[dict[str, Any]]:
    skills = [
        {
            "id": info.name,
            "name": info.name,
            "description": info.description,
            "tags": ["agent", *(name for name, _ in info.tools)],
        }
    ]
    for name, description in info.tools:
        skills.append(
            {
                "id": f"{info.name}.{name}",
                "name": name,
                "description": description or f"The tool {name} of agent {info.name}.",
                "tags": ["tool"],
            }
        )
    return skills


def _security_1() -> dict[str, Any]:
    return {
        "securitySchemes": {
            "bearer": {
                "httpAuthSecurityScheme": {
                    "scheme": "Bearer",
                    "description": f"{_KEY_HELP}, as 'Authorization: Bearer <key>'.",
                }
            },
            "apiKey": {
                "apiKeySecurityScheme": {
                    "location": "header",
                    "name": "x-api-key",
                    "description": f"{_KEY_HELP}, as 'x-api-key: <key>'.",
                }
            },
        },
        "securityRequirements": [
            {"schemes": {"bearer": {"list": []}}},
            {"schemes": {"apiKey": {"list": []}}},
        ],
    }


def _security_03() -> dict[str, Any]:
    return {
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": f"{_KEY_HELP}, as 'Authorization: Bearer <key>'.",
            },
            "apiKey": {
                "type": "apiKey",
                "in": "header",
                "name": "x-api-key",
                "description": f"{_KEY_HELP}, as 'x-api-key: <key>'.",
            },
        },
        "security": [{"bearer": []}, {"apiKey": []}],
    }


def card(
    *,
    name: str,
    description: str,
    version: str,
    url: str,
    skills: list[dict[str, Any]],
    secured: bool,
    form: str,
    extensions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A card in ``form`` ``"1.0"`` or ``"0.3"`` (see the module's docstring)."""
    capabilities: dict[str, Any] = {"streaming": True, "pushNotifications": False}
    if extensions:
        capabilities["extensions"] = extensions
    out: dict[str, Any] = {"name": name, "description": description, "version": version}
    if form == V1:
        out["supportedInterfaces"] = [
            {"url": url, "protocolBinding": "JSONRPC", "protocolVersion": V1},
            {"url": url, "protocolBinding": "JSONRPC", "protocolVersion": V03},
        ]
    else:
        out["url"] = url
        out["preferredTransport"] = "JSONRPC"
        out["protocolVersion"] = "0.3.0"
    out["capabilities"] = capabilities
    out["defaultInputModes"] = INPUT_MODES
    out["defaultOutputModes"] = OUTPUT_MODES
    out["skills"] = skills
    if secured:
        out.update(_security_1() if form == V1 else _security_03())
    return out


def agent_card(info: AgentInfo, url: str, version: str, secured: bool, form: str) -> dict[str, Any]:
    return card(
        name=info.name,
        description=info.description,
        version=version,
        url=url,
        skills=_skills(info),
        secured=secured,
        form=form,
    )


def gateway_card(
    infos: list[AgentInfo],
    base: str,
    *,
    name: str,
    description: str,
    version: str,
    secured: bool,
    form: str,
    agent_url: Any,
) -> dict[str, Any]:
    """The gateway's card: its agents as skills, and in :data:`AGENTS_EXTENSION` where each
    agent's own card is. ``agent_url(name)`` is an agent's JSON-RPC url."""
    skills = [
        {
            "id": info.name,
            "name": info.name,
            "description": info.description,
            "tags": ["agent", *(tool for tool, _ in info.tools)],
        }
        for info in infos
    ]
    agents = [
        {"name": info.name, "url": agent_url(info.name), "card": agent_url(info.name) + CARD_PATH}
        for info in infos
    ]
    extension = {
        "uri": AGENTS_EXTENSION,
        "description": "The agents of this gateway, each with a card and a JSON-RPC url of its own.",
        "required": False,
        "params": {"agents": agents},
    }
    return card(
        name=name,
        description=description,
        version=version,
        url=f"{base}/a2a",
        skills=skills,
        secured=secured,
        form=form,
        extensions=[extension],
    )


# --- remote cards -------------------------------------------------------------------------------


class CardError(ValueError):
    """A remote card that cannot be used (not a card, or no JSON-RPC interface)."""


@attrs.frozen
class RemoteCard:
    """A remote agent's card, as much of it as calling the agent needs.

    ``url`` and ``protocol`` are the JSON-RPC interface chosen (1.0 when offered, else 0.3);
    ``auth`` is how the card asks for a key: ``"bearer"``, the name of a header, or ``None``.
    ``agents`` lists the agents a gateway card points to (see :data:`AGENTS_EXTENSION`) as
    ``(name, card url)``. ``raw`` is the card as it came.
    """

    name: str
    description: str
    version: str
    url: str
    protocol: str
    streaming: bool
    skills: tuple[dict[str, Any], ...]
    auth: str | None
    agents: tuple[tuple[str, str], ...]
    raw: dict[str, Any]

    @classmethod
    def parse(cls, obj: Any) -> RemoteCard:
        if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
            raise CardError("not an agent card (no name)")
        url, protocol = _interface(obj)
        capabilities = obj.get("capabilities")
        if not isinstance(capabilities, dict):
            capabilities = {}
        skills = tuple(s for s in obj.get("skills") or () if isinstance(s, dict))
        agents: list[tuple[str, str]] = []
        for ext in capabilities.get("extensions") or ():
            if isinstance(ext, dict) and ext.get("uri") == AGENTS_EXTENSION:
                for agent in (ext.get("params") or {}).get("agents") or ():
                    if isinstance(agent, dict) and agent.get("name") and agent.get("card"):
                        agents.append((str(agent["name"]), str(agent["card"])))
        return cls(
            name=obj["name"],
            description=str(obj.get("description") or ""),
            version=str(obj.get("version") or ""),
            url=url,
            protocol=protocol,
            streaming=bool(capabilities.get("streaming")),
            skills=skills,
            auth=_auth(obj.get("securitySchemes")),
            agents=tuple(agents),
            raw=obj,
        )

    def summary(self) -> str:
        """The card as a tool description: what the agent does, and its skills."""
        lines = [self.description or f"The remote agent {self.name}."]
        for skill in self.skills:
            text = skill.get("description") or skill.get("name") or ""
            examples = [e for e in skill.get("examples") or () if isinstance(e, str)]
            if examples:
                text += " (e.g. " + "; ".join(examples[:3]) + ")"
            if text and text != lines[0]:
                lines.append(f"- {skill.get('name') or skill.get('id')}: {text}")
        return "\n".join(lines)


def _interface(obj: dict[str, Any]) -> tuple[str, str]:
    """The JSON-RPC url and protocol version to use: 1.x first, then 0.2/0.3."""
    offered: list[tuple[str, str]] = []
    for iface in obj.get("supportedInterfaces") or ():
        if isinstance(iface, dict) and str(iface.get("protocolBinding", "")).upper() == "JSONRPC":
            offered.append((str(iface.get("url", "")), str(iface.get("protocolVersion") or V1)))
    if not offered and isinstance(obj.get("url"), str):
        version = str(obj.get("protocolVersion") or "0.3.0")
        if str(obj.get("preferredTransport") or "JSONRPC").upper() == "JSONRPC":
            offered.append((obj["url"], version))
        for iface in obj.get("additionalInterfaces") or ():
            if isinstance(iface, dict) and str(iface.get("transport", "")).upper() == "JSONRPC":
                offered.append((str(iface.get("url", "")), version))
    for prefix, protocol in (("1", V1), ("0.3", V03), ("0.2", V03)):
        for url, version in offered:
            if url and version.removeprefix("v").startswith(prefix):
                return url, protocol
    raise CardError("the card offers no JSON-RPC interface of protocol 1.x or 0.3")


def _auth(schemes: Any) -> str | None:
    if not isinstance(schemes, dict) or not schemes:
        return None
    header = None
    for scheme in schemes.values():
        if not isinstance(scheme, dict):
            continue
        http = scheme.get("httpAuthSecurityScheme")
        if http is None and scheme.get("type") == "http":
            http = scheme
        if isinstance(http, dict) and str(http.get("scheme", "")).lower() == "bearer":
            return "bearer"
        key = scheme.get("apiKeySecurityScheme")
        if key is None and scheme.get("type") == "apiKey":
            key = {"location": scheme.get("in"), "name": scheme.get("name")}
        if isinstance(key, dict) and key.get("location") == "header" and key.get("name"):
            header = header or str(key["name"])
    return header or "bearer"
