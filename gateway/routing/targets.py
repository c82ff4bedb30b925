"""A route's targets and the order one request tries them in.

The strategy picks the first target (``fallback``: the configured order; ``weighted``: at random
by weight; ``least-busy``: fewest requests in flight in this process; ``latency``: lowest recent
time to first content); the other targets follow as fallbacks, in the same order. Open circuits
are left out. With affinity, a request that carries a session key goes first to the target that
key hashes to among the healthy ones (rendezvous hashing: every instance picks the same one, and
only a failing target's sessions move), so an upstream's prompt cache keeps hitting.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs

from gateway.routing.circuit import OPEN, Health

if TYPE_CHECKING:
    from gateway.backends.base import Backend
    from gateway.canonical import ChatRequest
    from gateway.exchange import Exchange

#: Weight of the newest time to first byte in a target's moving average.
_LATENCY_WEIGHT = 0.3


@attrs.define(eq=False)
class Target:
    """One backend (and upstream model) that may answer a route, with what this process saw of
    it: requests in flight and the moving average of its time to first content."""

    backend: Backend
    upstream_model: str | None
    weight: int
    retries: int
    #: Names it in metrics, ``/health`` and the circuit's keys: ``<model>/<backend>[/<upstream>]``.
    key: str
    inflight: int = 0
    latency: float | None = None

    @property
    def accepts_prefill(self) -> bool:
        return bool(getattr(self.backend.config, "accepts_prefill", False))

    def served(self, model: str) -> str:
        """``<kind>:<backend>/<upstream model>``, as ``x-hookgate-served-model`` says it."""
        return f"{self.backend.label}/{self.upstream_model or model}"

    def observe_latency(self, seconds: float) -> None:
        last = self.latency
        self.latency = seconds if last is None else last + _LATENCY_WEIGHT * (seconds - last)


def order(
    strategy: str, targets: Sequence[Target], health: Sequence[Health]
) -> list[tuple[Target, Health]]:
    """The targets whose circuit is not open, in the order ``strategy`` tries them."""
    usable = [(t, h) for t, h in zip(targets, health, strict=True) if h.state != OPEN]
    if strategy == "weighted" and len(usable) > 1:
        # Weighted random order without replacement (Efraimidis-Spirakis keys).
        usable.sort(key=lambda th: random.random() ** (1.0 / th[0].weight), reverse=True)
    elif strategy == "least-busy":
        usable.sort(key=lambda th: th[0].inflight)
    elif strategy == "latency":
        # Targets not measured yet go first, so each gets measured.
        usable.sort(key=lambda th: -1.0 if th[0].latency is None else th[0].latency)
    return usable


def affinity_key(affinity: str, req: ChatRequest, ex: Exchange) -> str | None:
    """The value that keeps a session on one target: the session id, the request's ``user``,
    or the named request header."""
    if affinity == "session":
        return req.session_id
    if affinity == "user" and req.user:
        return req.user
    http = ex.http
    return http.headers.get(affinity) if http is not None else None


def prefer(key: str, planned: list[tuple[Target, Health]]) -> list[tuple[Target, Health]]:
    """``planned`` with the target ``key`` belongs to first (weighted rendezvous hashing over
    the targets whose circuit is closed; the others keep their order)."""
    best, best_score = -1, -math.inf
    for i, (target, health) in enumerate(planned):
        if health.state != "closed":
            continue
        digest = hashlib.blake2b(f"{key}\0{target.key}".encode(), digest_size=8).digest()
        unit = (int.from_bytes(digest, "big") + 1) / (2**64 + 1)
        score = -target.weight / math.log(unit)
        if score > best_score:
            best, best_score = i, score
    if best <= 0:
        return planned
    return [planned[best], *planned[:best], *planned[best + 1 :]]
