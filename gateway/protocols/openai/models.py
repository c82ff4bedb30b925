"""``GET /v1/models``: the model names a caller may use, in OpenAI's or Anthropic's shape.

Exact names are listed as configured. A glob route (``"gpt-*"``) lists the concrete names it
serves: those its configuration names, and, when it sends the client's name upstream as it
is (no ``upstream_model``), those of the upstream's own model list that it matches. Upstream
lists are cached for :data:`TTL` seconds per backend; one that fails is left out (logged), so
a down upstream never fails the list.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from gateway import Exchange, GatewayError, Principal

log = logging.getLogger(__name__)

#: Seconds an upstream's model list is kept.
TTL = 300.0
#: Models carry this creation time (the gateway does not know the real one).
CREATED = 1_700_000_000


class ModelLister:
    """Lists the names of one gateway's routes, with the upstream lists cached."""

    def __init__(self, gateway: Any) -> None:
        self.gateway = gateway
        self._cache: dict[str, tuple[float, list[str]]] = {}

    async def names(self, ex: Exchange) -> list[str]:
        router = self.gateway.router
        principal = ex.principal
        out = dict.fromkeys(router.listed(principal))
        models = self.gateway.config.models
        for pattern, route in router.patterns:
            config = models.get(route.name)
            candidates = list(config.names) if config is not None else []
            if route.upstream_model is None:
                candidates += await self._upstream(route.backend, ex)
            for name in candidates:
                if pattern.match(name) and _allowed(principal, name, route.name):
                    out.setdefault(name)
        return list(out)

    async def _upstream(self, backend: Any, ex: Exchange) -> list[str]:
        now = time.monotonic()
        cached = self._cache.get(backend.name)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            names = await backend.list_models(ex) or []
        except GatewayError as err:
            log.warning("backend '%s': no model list (%s)", backend.name, err.message)
            names = []
        self._cache[backend.name] = (now + TTL, names)
        return names


def _allowed(principal: Principal, name: str, route: str) -> bool:
    return principal.models is None or name in principal.models or route in principal.models


def openai_model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": CREATED, "owned_by": "hookgate"}


def anthropic_model(name: str, description: str | None) -> dict[str, Any]:
    """A model in Anthropic's ``ModelInfo`` shape."""
    return {
        "type": "model",
        "id": name,
        "display_name": description or name,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(CREATED)),
        "lifecycle": "active",
        "capabilities": None,
        "deprecated_at": None,
        "retires_at": None,
        "line": None,
        "max_input_tokens": None,
        "max_tokens": None,
    }


def anthropic_page(models: list[dict[str, Any]], query: Any) -> dict[str, Any]:
    """One page of Anthropic's model list, honouring ``limit``, ``after_id`` and ``before_id``."""
    ids = [m["id"] for m in models]
    start, end = 0, len(models)
    if query.get("after_id") in ids:
        start = ids.index(query["after_id"]) + 1
    if query.get("before_id") in ids:
        end = ids.index(query["before_id"])
    try:
        limit = max(1, min(1000, int(query.get("limit", 20))))
    except ValueError:
        limit = 20
    backwards = "before_id" in query and "after_id" not in query
    if backwards:
        start = max(start, end - limit)
    page = models[start : min(end, start + limit)]
    return {
        "data": page,
        "has_more": start > 0 if backwards else start + len(page) < end,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
    }
