"""Model routing: the public model name a client asks for -> a backend and an upstream model,
or, for a model with several targets or retries, the :class:`~gateway.routing.Policy` that
tries them (see :mod:`gateway.routing`).

Exact names are one dict lookup. Glob names (``"gpt-*"``, ``"*"``) are tried in file order, and
a name they resolve is remembered (up to a bound, so arbitrary names cannot grow memory).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import attrs

from gateway.config.sections import ModelConfig
from gateway.errors import Forbidden, NotFound
from gateway.exchange import Principal
from gateway.routing import Circuits, Policy, Target

if TYPE_CHECKING:
    from gateway.backends.base import Backend
    from gateway.core.metrics import Metrics

_CACHE_LIMIT = 4096


@attrs.frozen
class Route:
    """Where one model name goes. ``name`` is the ``[models.<name>]`` key that matched;
    ``backend`` and ``upstream_model`` are its (first) target's. ``policy`` is set when the
    route has several targets or retries; ``served`` names its one target when the upstream
    model is fixed (``x-hookgate-served-model``)."""

    name: str
    backend: Backend
    upstream_model: str | None
    policy: Policy | None = None
    served: str = ""

    def upstream_for(self, model: str) -> str:
        return self.upstream_model or model


def _route(
    name: str,
    cfg: ModelConfig,
    backends: Mapping[str, Backend],
    circuits: Circuits | None,
    metrics: Metrics | None,
) -> Route:
    targets = [
        Target(
            backends[t.backend],
            t.upstream_model or cfg.upstream_model,
            int(t.weight),
            int(cfg.retries if t.retries is None else t.retries),
            f"{name}/{i}:{t.backend}",
        )
        for i, t in enumerate(cfg.target_list())
    ]
    first = targets[0]
    policy = None
    if (len(targets) > 1 or first.retries) and circuits is not None and metrics is not None:
        policy = Policy(name, cfg, targets, circuits, metrics)
    served = f"{first.backend.label}/{first.upstream_model}" if first.upstream_model else ""
    return Route(name, first.backend, first.upstream_model, policy, served)


class Router:
    def __init__(
        self,
        models: Mapping[str, ModelConfig],
        backends: Mapping[str, Backend],
        circuits: Callable[[], Circuits] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        """``circuits`` makes the circuit store when a route needs one (routes with several
        targets or retries); without it (or ``metrics``) every route answers from its first
        target alone."""
        self.exact: dict[str, Route] = {}
        self.patterns: list[tuple[re.Pattern[str], Route]] = []
        needs = any(
            len(m.target_list()) > 1 or m.retries or any(t.retries for t in m.targets)
            for m in models.values()
        )
        store = circuits() if circuits is not None and needs else None
        for name, cfg in models.items():
            route = _route(name, cfg, backends, store, metrics)
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

    def policies(self) -> list[Policy]:
        """The routes' policies (routes with several targets or retries)."""
        seen = [*self.exact.values(), *(route for _, route in self.patterns)]
        return [route.policy for route in seen if route.policy is not None]

    def listed(self, principal: Principal) -> list[str]:
        """The exact model names this caller may use (globs are not listed)."""
        return [name for name in self.exact if principal.models is None or name in principal.models]
