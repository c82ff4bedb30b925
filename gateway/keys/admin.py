"""``/admin/keys`` and ``/admin/teams``: JSON, for admin keys only (see :mod:`gateway.admin`).

=================================  ========================================================
``POST /admin/keys``               create: ``{name, team, models, rpm, tpm, budget,
                                   expires_at, metadata}`` -> ``{key, secret}`` (201)
``GET /admin/keys``                list (``?team=``, ``?revoked=true``) -> ``{data: [...]}``
``GET /admin/keys/{id}``           one key
``PATCH /admin/keys/{id}``         change any of the create fields
``POST /admin/keys/{id}/rotate``   a new secret -> ``{key, secret}``
``POST /admin/keys/{id}/revoke``   revoke (also ``DELETE /admin/keys/{id}``)
``POST /admin/teams``              create: ``{id, name, rpm, tpm, budget, metadata}``
``GET /admin/teams``, ``GET|PATCH /admin/teams/{id}``
=================================  ========================================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from gateway import BadRequest, json_response, read_json
from gateway.admin import add_admin_route

if TYPE_CHECKING:
    from gateway import Gateway
    from gateway.keys.cache import KeyCache
    from gateway.keys.store import KeyStore


#: What ``?revoked=`` may say (``""``: not given).
_YES_NO = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False, "": False}


def add_routes(gateway: Gateway, store: KeyStore, cache: KeyCache) -> None:
    async def create_key(request: web.Request) -> web.Response:
        key, secret = await store.create_key(await read_json(request))
        return json_response({"key": key.to_json(), "secret": secret}, status=201)

    async def list_keys(request: web.Request) -> web.Response:
        said = request.query.get("revoked", "").lower()
        if said not in _YES_NO:
            raise BadRequest(
                f"'revoked' must be true or false, not {request.query['revoked']!r}.",
                param="revoked",
            )
        keys = await store.keys(team=request.query.get("team"), revoked=_YES_NO[said])
        return json_response({"object": "list", "data": [k.to_json() for k in keys]})

    async def show_key(request: web.Request) -> web.Response:
        return json_response((await store.key(request.match_info["id"])).to_json())

    async def update_key(request: web.Request) -> web.Response:
        key = await store.update_key(request.match_info["id"], await read_json(request))
        await cache.changed(key.digest)
        return json_response(key.to_json())

    async def rotate_key(request: web.Request) -> web.Response:
        key, secret, old = await store.rotate_key(request.match_info["id"])
        await cache.changed(old)
        return json_response({"key": key.to_json(), "secret": secret})

    async def revoke_key(request: web.Request) -> web.Response:
        key = await store.revoke_key(request.match_info["id"])
        await cache.changed(key.digest)
        return json_response(key.to_json())

    async def create_team(request: web.Request) -> web.Response:
        team = await store.create_team(await read_json(request))
        return json_response(team.to_json(), status=201)

    async def list_teams(request: web.Request) -> web.Response:
        teams = await store.teams()
        return json_response({"object": "list", "data": [t.to_json() for t in teams]})

    async def show_team(request: web.Request) -> web.Response:
        return json_response((await store.team(request.match_info["id"])).to_json())

    async def update_team(request: web.Request) -> web.Response:
        team = await store.update_team(request.match_info["id"], await read_json(request))
        await cache.changed("*")
        return json_response(team.to_json())

    for method, path, handler, name in (
        ("POST", "/admin/keys", create_key, "admin.keys.create"),
        ("GET", "/admin/keys", list_keys, "admin.keys.list"),
        ("GET", "/admin/keys/{id}", show_key, "admin.keys.show"),
        ("PATCH", "/admin/keys/{id}", update_key, "admin.keys.update"),
        ("POST", "/admin/keys/{id}/rotate", rotate_key, "admin.keys.rotate"),
        ("POST", "/admin/keys/{id}/revoke", revoke_key, "admin.keys.revoke"),
        ("DELETE", "/admin/keys/{id}", revoke_key, "admin.keys.revoke"),
        ("POST", "/admin/teams", create_team, "admin.teams.create"),
        ("GET", "/admin/teams", list_teams, "admin.teams.list"),
        ("GET", "/admin/teams/{id}", show_team, "admin.teams.show"),
        ("PATCH", "/admin/teams/{id}", update_team, "admin.teams.update"),
    ):
        add_admin_route(gateway, method, path, handler, name=name)
