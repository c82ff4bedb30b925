"""Signed webhooks that start agent runs: ``POST /webhooks/{name}``.

Each ``[webhooks.<name>]`` names a signature scheme (a verifier plugin: ``stripe``, ``slack``,
``github``, ``standard``, ``hmac-sha256`` or a plugin's) and handlers for event types; see
:mod:`gateway.triggers.webhooks.endpoint` for the path of one delivery and :class:`WebhookRouter` for the
Python API.
"""

from __future__ import annotations

from gateway.triggers.webhooks.config import WebhookConfig
from gateway.triggers.webhooks.router import WebhookRouter
from gateway.triggers.webhooks.verifier import Rejected, Verifier

__all__ = ["Rejected", "Verifier", "WebhookConfig", "WebhookRouter"]
