"""Triggers: webhooks, pollers and listeners that start agent runs or call Python functions.

- :mod:`gateway.triggers.handlers`: events and the handlers that match them;
- :mod:`gateway.triggers.service`: the shared runner, state and agent runs of one app;
- :mod:`gateway.triggers.pollers`: ``[pollers.<name>]`` and :class:`PollerManager`;
- :mod:`gateway.triggers.listeners.base`: the listener base class and :class:`ListenerManager`,
  with the kinds ``redis-pubsub``, ``redis-stream``, ``sse`` and ``nats`` beside it;
- webhooks are in :mod:`gateway.triggers.webhooks` (:class:`~gateway.triggers.webhooks.WebhookRouter`).

The names exported here are the public API for listener kinds, webhook signature verifiers,
pollers and handlers; the modules themselves are internal.
"""

from __future__ import annotations

from gateway.triggers.handlers import Handler, HandlerConfig, HandlerError, TriggerEvent
from gateway.triggers.listeners.base import Listener, ListenerConfig, ListenerManager
from gateway.triggers.pollers import PollerConfig, PollerManager
from gateway.triggers.webhooks.config import WebhookConfig
from gateway.triggers.webhooks.router import WebhookRouter
from gateway.triggers.webhooks.verifier import Rejected, Verifier, any_equal, bad_signature

__all__ = [
    "Handler",
    "HandlerConfig",
    "HandlerError",
    "Listener",
    "ListenerConfig",
    "ListenerManager",
    "PollerConfig",
    "PollerManager",
    "Rejected",
    "TriggerEvent",
    "Verifier",
    "WebhookConfig",
    "WebhookRouter",
    "any_equal",
    "bad_signature",
]
