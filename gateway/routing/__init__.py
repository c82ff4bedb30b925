"""Routing that survives its upstreams: targets, retries, fallbacks, circuit breaking.

A ``[models.<name>]`` with several ``targets`` (or ``retries``) is answered by a
:class:`Policy` (:mod:`.attempts`): it orders the targets (:mod:`.targets`), tries them one
attempt at a time, classifies each failure (:mod:`.failures`) to retry, move on or answer, and
keeps each target's circuit (:mod:`.circuit`: in memory, or in Redis when ``[redis]`` is set).
"""

from __future__ import annotations

from gateway.routing.attempts import Policy
from gateway.routing.circuit import Circuits, MemoryCircuits, RedisCircuits
from gateway.routing.failures import classify
from gateway.routing.targets import Target

__all__ = ["Circuits", "MemoryCircuits", "Policy", "RedisCircuits", "Target", "classify"]
