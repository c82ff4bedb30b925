"""Triggers: webhooks, pollers and listeners that start agent runs or call Python functions.

- :mod:`gateway.triggers.handlers`: events and the handlers that match them;
- :mod:`gateway.triggers.service`: the shared runner, state and agent runs of one app;
- :mod:`gateway.triggers.pollers`: ``[pollers.<name>]`` and :class:`PollerManager`;
- :mod:`gateway.triggers.listeners.base`: the listener base class and :class:`ListenerManager`,
  with the kinds ``redis-pubsub``, ``redis-stream``, ``sse`` and ``nats`` beside it;
- webhooks are in :mod:`gateway.triggers.webhooks` (:class:`~gateway.triggers.webhooks.WebhookRouter`).
"""

from __future__ import annotations

from gateway.triggers.handlers import Handler, HandlerConfig, HandlerError, TriggerEvent
from gateway.triggers.listeners.base import Listener, ListenerConfig, ListenerManager
from gateway.triggers.pollers import PollerConfig, PollerManager
from gateway.triggers.webhooks.router import WebhookRouter

__all__ = [
    "Handler",
    "HandlerConfig",
    "HandlerError",
    "Listener",
    "ListenerConfig",
    "ListenerManager",
    "PollerConfig",
    "PollerManager",
    "TriggerEvent",
    "WebhookRouter",
]
