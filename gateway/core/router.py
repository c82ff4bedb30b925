"""Model routing: the public model name a client asks for -> a backend and an upstream model.

Exact names are one dict lookup. Glob names (``"gpt-*"``, ``"*"``) are tried in file order, and
a name they resolve is remembered (up to a bound, so arbitrary names cannot grow memory).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

import attrs

from gateway.config.sections import ModelConfig
from gateway.errors import Forbidden, NotFound
from gateway.exchange import Principal

if TYPE_CHECKING:
    from gateway.backends.base import Backend

_CACHE_LIMIT = 4096


@attrs.frozen
class Route:
    """Where one model name goes. ``name`` is the ``[models.<name>]`` key that matched."""

    name: str
    backend: Backend
    upstream_model: str | None

    def upstream_for(self, model: str) -> str:
        return self.upstream_model or model


class Router:
    def __init__(self, models: Mapping[str, ModelConfig], backends: Mapping[str, Backend]) -> None:
        self.exact: dict[str, Route] = {}
        self.patterns: list[tuple[re.Pattern[str], Route]] = []
        for name, cfg in models.items():
            route = Route(name, backends[cfg.backend], cfg.upstream_model)
            if any(ch in name for ch in "*?["):
                self.patterns.append((re.compile(fnmatch.translate(name)), route))
            else:
                self.exact[name] = route
        self.descriptions = {name: cfg.description for name, cfg in models.items()}
        self._cache: dict[str, Route] = {}

    def add(
        self,
        name: str,
        backend: Backend,
        upstream_model: str | None = None,
        description: str | None = None,
    ) -> None:
        """Route the exact name ``name`` to ``backend``: for plugins that serve model names of
        their own (agents). Called while the app is built; a name already routed exactly is a
        :class:`ValueError`."""
        if name in self.exact:
            raise ValueError(f"the model name {name!r} is already routed")
        self.exact[name] = Route(name, backend, upstream_model)
        self.descriptions[name] = description
        self._cache.pop(name, None)

    def resolve(self, model: str, principal: Principal) -> Route:
        """The route for ``model``; 404 ``model_not_found`` when none, 403 when the key may not."""
        route = self.exact.get(model) or self._cache.get(model)
        if route is None:
            for pattern, candidate in self.patterns:
                if pattern.match(model):
                    route = candidate
                    if len(self._cache) < _CACHE_LIMIT:
                        self._cache[model] = route
                    break
            else:
                raise NotFound(
                    f"The model '{model}' does not exist or you do not have access to it.",
                    param="model",
                    code="model_not_found",
                )
        if (
            principal.models is not None
            and model not in principal.models
            and route.name not in principal.models
        ):
            raise Forbidden(
                f"This API key may not use the model '{model}'.",
                param="model",
                code="model_not_allowed",
            )
        return route

    def listed(self, principal: Principal) -> list[str]:
        """The exact model names this caller may use (globs are not listed)."""
        return [name for name in self.exact if principal.models is None or name in principal.models]
