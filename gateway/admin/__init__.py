"""The admin API's gate: ``/admin/...`` routes answer only to the keys of ``[admin] keys``.

Admin keys are a set of their own: they call no model (the model routes' authenticators do
not know them), and the keys that call models (from ``[auth] keys`` or the database) never
reach ``/admin``. With no admin key configured, no admin route is added at all. Rooms that serve admin routes (virtual keys, the spend ledger) add them
with :func:`add_admin_route`; every answer is JSON, errors in the ``{"error": {...}}`` shape.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import attrs
from aiohttp import web

from gateway import Duration, Forbidden, Unauthorized, hookimpl

if TYPE_CHECKING:
    from gateway import Gateway

__all__ = ["AdminConfig", "add_admin_route"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@attrs.frozen
class AdminConfig:
    """``[admin]``: who may manage keys, teams and spend at run time."""

    #: Admin keys (``"${HOOKGATE_ADMIN_KEY}"``): the only callers of ``/admin/...``. None: no
    #: admin API.
    keys: tuple[str, ...] = ()
    #: Whether database keys (``hookgate keys``, ``/admin/keys``) may call models. Unset: when
    #: ``keys`` is set.
    virtual_keys: bool | None = None
    #: How long an instance trusts what it read of a database key. A change (revoke, rotate,
    #: update) made through any instance reaches the others at once through Redis when
    #: ``[redis] url`` is set; without Redis this is capped at one second.
    key_cache: Duration = Duration(10.0)

    def virtual_keys_on(self) -> bool:
        """Whether database keys may call models (and so budgets and the ledger are on)."""
        return bool(self.keys) if self.virtual_keys is None else self.virtual_keys


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _presented(request: web.Request) -> str | None:
    value = request.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-api-key") or None


def add_admin_route(
    gateway: Gateway, method: str, path: str, handler: Handler, *, name: str
) -> None:
    """Add an admin route (when admin keys are configured): ``handler`` runs only for a caller
    presenting one of ``[admin] keys``; others get 401 (no key) or 403 (any other key)."""
    cfg: AdminConfig = gateway.config.section("admin")
    if not cfg.keys:
        return
    digests = [_digest(k) for k in cfg.keys]

    async def guarded(request: web.Request) -> web.StreamResponse:
        key = _presented(request)
        if key is None:
            raise Unauthorized(
                "Missing admin key: send it as 'Authorization: Bearer <key>'.",
                code="missing_api_key",
            )
        d = _digest(key)
        if not any(hmac.compare_digest(d, a) for a in digests):
            raise Forbidden("This key may not use the admin API.", code="admin_key_required")
        return await handler(request)

    # auth=False: the model routes' authenticators must not see (or accept) admin keys here.
    gateway.add_route(method, path, guarded, name=name, auth=False)


@hookimpl
def gateway_config_sections(register: Any) -> None:
    register("admin", AdminConfig)
