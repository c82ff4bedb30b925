"""The application's URL dispatcher: aiohttp's, with plain paths found in one dict.

aiohttp's :class:`~aiohttp.web.UrlDispatcher` resolves a request by decoding its path, walking
the path's parts through its index of resources and asking each candidate (a coroutine each) to
match. Nearly every request the gateway serves is for a plain path (``/v1/chat/completions``):
once the router is frozen, :class:`Dispatcher` keeps, for every path whose first candidate in
that index is a plain resource of exactly that path, the resource's routes by method, and a
request whose raw path is one of them (nothing to decode, no query) and whose method has a route
there gets that route at once. Everything else (dynamic routes, static files, sub-applications,
a method the path has no route for, so 405 and 404) goes through aiohttp's own resolution, which
would have found the same route first: what the application sees is unchanged.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.web_urldispatcher import PlainResource, UrlMappingMatchInfo

if TYPE_CHECKING:
    from aiohttp.web_urldispatcher import ResourceRoute

#: Paths whose raw form is their decoded form: no escapes, no dot segments, no empty segment.
_PLAIN_PATH = re.compile(r"/|(?:/[A-Za-z0-9_~-][A-Za-z0-9_.~-]*)+")

Routes = dict[str, "ResourceRoute"]


class Dispatcher(web.UrlDispatcher):
    """See the module's description."""

    def __init__(self) -> None:
        super().__init__()
        #: Raw path -> its plain resource's routes by method (``"*"`` for a route of any method),
        #: filled when the router is frozen (in place: the server looks requests up in it).
        self.plain: dict[str, Routes] = {}

    def freeze(self) -> None:
        super().freeze()
        self.plain.clear()
        if self._matched_sub_app_resources:  # matched before any path: no shortcut then
            return
        for key, candidates in self._resource_index.items():
            first = candidates[0] if candidates else None
            if (
                type(first) is not PlainResource
                or first.canonical != key
                or not _PLAIN_PATH.fullmatch(key)
            ):
                continue
            routes: Routes = {route.method: route for route in first}
            self.plain[key] = routes

    def plain_match(self, request: web.Request) -> UrlMappingMatchInfo | None:
        """The match of a request for a plain route, found without a coroutine; ``None``
        when :meth:`resolve` must look (not a plain path, or no route for its method)."""
        routes = self.plain.get(request.raw_path)
        if routes is not None:
            route = routes.get(request.method) or routes.get("*")
            if route is not None:
                return UrlMappingMatchInfo({}, route)
        return None

    async def resolve(self, request: web.Request) -> UrlMappingMatchInfo:
        return self.plain_match(request) or await super().resolve(request)
