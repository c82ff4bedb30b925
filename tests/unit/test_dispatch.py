"""The application's dispatcher resolves every request as aiohttp's own router does."""

from __future__ import annotations

import warnings

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from aiohttp.web_urldispatcher import MatchInfoError

from gateway.core.dispatch import Dispatcher


async def ok(request: web.Request) -> web.Response:
    return web.Response()


def routes(router: web.UrlDispatcher) -> None:
    """The same routes, in the same order, on any router."""
    router.add_route("POST", "/v1/chat/completions", ok)
    router.add_route("GET", "/v1/models", ok)
    router.add_route("GET", "/v1/models/{model:.+}", ok)
    router.add_route("GET", "/health", ok)
    router.add_route("HEAD", "/health", ok)
    router.add_route("*", "/any", ok)
    router.add_route("GET", "/slash/", ok)
    router.add_route("GET", "/first/{name}", ok)
    router.add_route("GET", "/first/fixed", ok)  # registered after a dynamic route of its path
    router.add_route("GET", "/", ok)
    router.add_route("GET", "/.well-known/thing", ok)
    router.add_route("GET", "/a.b/c~d_e-f", ok)


def app_with(router: web.UrlDispatcher) -> web.Application:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        app = web.Application(router=router)
    routes(app.router)
    app.freeze()
    return app


REQUESTS = [
    ("POST", "/v1/chat/completions"),
    ("GET", "/v1/chat/completions"),  # 405
    ("HEAD", "/v1/chat/completions"),
    ("POST", "/v1/chat/completions/"),
    ("POST", "/v1/chat/completions?x=1"),
    ("POST", "/v1/chat/%63ompletions"),
    ("POST", "/v1/chat/./completions"),
    ("POST", "/v1/x/../chat/completions"),
    ("POST", "//v1/chat/completions"),
    ("POST", "/V1/chat/completions"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/gpt-4o"),
    ("GET", "/v1/models/a/b"),
    ("GET", "/health"),
    ("HEAD", "/health"),
    ("POST", "/health"),
    ("DELETE", "/any"),
    ("PATCH", "/any"),
    ("GET", "/slash"),
    ("GET", "/slash/"),
    ("GET", "/first/fixed"),
    ("GET", "/first/other"),
    ("GET", "/"),
    ("POST", "/"),
    ("GET", "/.well-known/thing"),
    ("GET", "/a.b/c~d_e-f"),
    ("GET", "/nowhere"),
    ("GET", "/v1"),
]


def outcome(match: web.UrlMappingMatchInfo) -> tuple[object, ...]:
    if isinstance(match, MatchInfoError):
        exc = match.http_exception
        return ("error", exc.status, exc.headers.get("Allow"))
    return ("route", match.route, dict(match))


@pytest.mark.parametrize(("method", "path"), REQUESTS)
async def test_resolves_as_aiohttp(method: str, path: str) -> None:
    ours, theirs = app_with(Dispatcher()), app_with(web.UrlDispatcher())

    ours_match = await ours.router.resolve(make_mocked_request(method, path, app=ours))
    theirs_match = await theirs.router.resolve(make_mocked_request(method, path, app=theirs))
    got, want = outcome(ours_match), outcome(theirs_match)
    if got[0] == "route":
        # The same route of each app: the same position in its router's routes.
        assert got[1] is not None and want[1] is not None
        got = (got[0], list(ours.router.routes()).index(got[1]), got[2])
        want = (want[0], list(theirs.router.routes()).index(want[1]), want[2])
    assert got == want


async def test_plain_paths_are_found_without_aiohttp_resolution() -> None:
    app = app_with(Dispatcher())
    router = app.router
    assert isinstance(router, Dispatcher)
    assert set(router.plain) == {
        "/v1/chat/completions",
        "/v1/models",
        "/health",
        "/any",
        "/first/fixed",
        "/",
        "/a.b/c~d_e-f",
    }


async def test_a_domain_sub_application_turns_the_shortcut_off() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        app = web.Application(router=Dispatcher())
    sub = web.Application()
    sub.router.add_route("GET", "/health", ok)
    app.add_domain("example.com", sub)
    app.router.add_route("GET", "/health", ok)
    app.freeze()
    router = app.router
    assert isinstance(router, Dispatcher)
    assert router.plain == {}
    request = make_mocked_request("GET", "/health", headers={"Host": "example.com"}, app=app)
    match = await router.resolve(request)
    assert match.route in list(sub.router.routes())
