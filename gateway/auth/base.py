"""What an authenticator is."""

from __future__ import annotations

from typing import ClassVar

from aiohttp import web

from gateway.exchange import Principal


class Authenticator:
    """Recognises callers. Registered with ``gateway_register_auth``; every enabled one is
    asked in registration order, for each request to a route that needs auth, until one
    returns a principal. When all decline the request is refused with 401."""

    name: ClassVar[str] = ""

    async def authenticate(self, request: web.Request, credential: str | None) -> Principal | None:
        """The caller making ``request``, or ``None`` to decline (the next authenticator is
        asked).

        ``credential`` is the API key the request presents (the bearer token, ``x-api-key``,
        or the ``?token=`` of routes that allow it), or ``None`` when it presents none; an
        authenticator may recognise the caller by anything else in the request (a client
        certificate in ``request.transport.get_extra_info("peercert")``, a cookie, a
        signature). Raising a :class:`~gateway.errors.GatewayError` (``Forbidden``,
        ``Unauthorized``) ends the request with that error, in the route's protocol, without
        asking the others."""
        raise NotImplementedError

    def principal(self, name: str | None) -> Principal | None:
        """The caller called ``name`` (``None``: this authenticator's first one), for work the
        gateway starts by itself on a caller's behalf (runs started by triggers); ``None`` when
        this authenticator knows no such caller."""
        return None
