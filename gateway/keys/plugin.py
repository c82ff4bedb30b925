"""The virtual keys plugin: the ``virtual-keys`` authenticator and the admin routes.

On when ``[admin] keys`` is set (or ``[admin] virtual_keys = true``): the keys live in the
database (``[database]``), beside the ``[auth] keys`` of the TOML file, which keep working.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway import hookimpl
from gateway.keys.admin import add_routes
from gateway.keys.auth import VirtualKeysAuthenticator
from gateway.keys.cache import KeyCache
from gateway.keys.store import KeyStore

if TYPE_CHECKING:
    from gateway import Gateway


def _enabled(gateway: Gateway) -> bool:
    on: bool = gateway.config.section("admin").virtual_keys_on()
    return on


def _authenticator(gateway: Gateway) -> VirtualKeysAuthenticator:
    redis = gateway.state.redis("admin.key_cache") if gateway.state.redis_configured else None
    store = KeyStore(gateway.state.database("admin.keys"))
    cache = KeyCache(float(gateway.config.section("admin").key_cache), redis)
    return VirtualKeysAuthenticator(store, cache)


@hookimpl
def gateway_register_auth(register: Any) -> None:
    def factory(gateway: Gateway) -> VirtualKeysAuthenticator | None:
        if not _enabled(gateway):
            return None
        return _authenticator(gateway)

    register("virtual-keys", factory)


@hookimpl
def gateway_configure_app(app: web.Application, gateway: Gateway) -> None:
    # The routes share the authenticator's store and cache (so a change drops its entries).
    auth = next(
        (a for a in gateway.authenticators if isinstance(a, VirtualKeysAuthenticator)), None
    )
    if auth is None:
        return
    app.cleanup_ctx.append(auth.cache.listen)
    add_routes(gateway, auth.store, auth.cache)
