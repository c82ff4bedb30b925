"""``remote_agents`` entries: which remote A2A agent an agent may delegate to, and how."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import attrs

from gateway import Duration, Url, proxy_for

_FIELDS = {
    "url",
    "agent",
    "name",
    "api_key",
    "headers",
    "timeout",
    "discovery_timeout",
    "description",
}
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]+")


@attrs.frozen
class RemoteAgentConfig:
    """One entry of ``remote_agents``: a URL, or a table::

    { url = "https://partner.example/a2a/research", api_key = "${PARTNER_KEY}" }
    { url = "https://gw.example", agent = "research", name = "research", timeout = "2m" }
    """

    #: The agent's base URL or card URL; with ``agent``, the base URL of a gateway serving it.
    url: str
    #: The agent's name at that gateway (found through the gateway's card).
    agent: str | None = None
    #: The tool's name; default: ``agent``, else the last part of the URL's path.
    name: str | None = None
    #: Sent where the remote card asks for a key (``Authorization: Bearer`` or its header).
    api_key: str | None = None
    headers: dict[str, str] = attrs.Factory(dict)
    #: How long one call may take (default: the agent's ``tool_timeout``).
    timeout: float | None = None
    #: How long fetching the card may take at startup.
    discovery_timeout: float = 5.0
    #: The tool's description until the card is known (default: a generic one).
    description: str | None = None

    @classmethod
    def parse(cls, value: Any) -> RemoteAgentConfig:
        if isinstance(value, RemoteAgentConfig):
            return value
        if isinstance(value, str):
            value = {"url": value}
        if not isinstance(value, dict):
            raise ValueError("expected a URL or a table {url, agent, name, api_key, timeout, ...}")
        unknown = set(value) - _FIELDS
        if unknown:
            raise ValueError(f"unknown keys {', '.join(sorted(map(repr, unknown)))}")
        fields: dict[str, Any] = {"url": str(Url.parse(value.get("url")))}
        # A proxy the client cannot speak to (SOCKS) is a startup error, not a failing call.
        proxy_for(fields["url"])
        for key in ("agent", "name", "api_key", "description"):
            if value.get(key) is not None:
                if not isinstance(value[key], str) or not value[key]:
                    raise ValueError(f"'{key}' must be a non-empty string")
                fields[key] = value[key]
        headers = value.get("headers", {})
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise ValueError("'headers' must be a table of strings")
        fields["headers"] = dict(headers)
        for key in ("timeout", "discovery_timeout"):
            if value.get(key) is not None:
                fields[key] = float(Duration.parse(value[key]))
        made = cls(**fields)
        if not _NAME_CHARS.sub("", made.tool_name) or len(made.tool_name) > 64:
            raise ValueError(f"cannot make a tool name of {made.tool_name!r}; set 'name'")
        return made

    @property
    def tool_name(self) -> str:
        if self.name or self.agent:
            return str(self.name or self.agent)
        path = [p for p in urlsplit(self.url).path.split("/") if p]
        if path and path[-1].endswith(".json"):
            path = path[:-1]
        if path and path[-1] == ".well-known":
            path = path[:-1]
        raw = path[-1] if path else (urlsplit(self.url).hostname or "remote").split(".")[0]
        return _NAME_CHARS.sub("_", raw).strip("_") or "remote"
