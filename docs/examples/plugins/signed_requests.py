"""An authenticator for signed requests: callers hold a secret, not an API key.

A client sends ``x-client: <id>``, ``x-timestamp: <Unix seconds>`` and ``x-signature: <hex
HMAC-SHA256 of "<timestamp>\\n<METHOD>\\n<path?query>\\n<body>">``. A request without
``x-client`` is left to the other authenticators (API keys, say); a signed one that does not
check out is refused::

    [signed_requests]
    tolerance = "5m"

    [signed_requests.clients]
    build-bot = "${BUILD_BOT_SECRET}"
"""

from __future__ import annotations

import hashlib
import hmac
import time

import attrs
from aiohttp import web

from gateway import (
    Authenticator,
    Duration,
    Gateway,
    Principal,
    RegisterAuth,
    RegisterSection,
    Unauthorized,
    hookimpl,
)


@attrs.frozen
class SignedRequestsConfig:
    """``[signed_requests]``: no clients (the default) leaves the authenticator off."""

    #: Client id -> its signing secret (use "${ENV_VAR}").
    clients: dict[str, str] = attrs.field(factory=dict, repr=False)
    #: Signatures older (or newer) than this are refused as replays.
    tolerance: Duration = Duration(300.0)


def signature(secret: bytes, timestamp: str, method: str, path: str, body: bytes) -> str:
    message = b"\n".join([timestamp.encode(), method.encode(), path.encode(), body])
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


class SignedRequests(Authenticator):
    name = "signed-requests"

    def __init__(self, config: SignedRequestsConfig) -> None:
        self.secrets = {client: secret.encode() for client, secret in config.clients.items()}
        self.tolerance = float(config.tolerance)

    async def authenticate(self, request: web.Request, credential: str | None) -> Principal | None:
        client = request.headers.get("x-client")
        if client is None:
            return None  # not signed: another authenticator may know the caller
        secret = self.secrets.get(client)
        stamp = request.headers.get("x-timestamp", "")
        if secret is None or not stamp.isdigit():
            raise Unauthorized("Unknown client or malformed signature.", code="bad_signature")
        if abs(time.time() - int(stamp)) > self.tolerance:
            raise Unauthorized("The signature has expired.", code="stale_signature")
        body = await request.read()  # aiohttp keeps it: the handler reads it again
        expected = signature(secret, stamp, request.method, request.path_qs, body)
        if not hmac.compare_digest(expected, request.headers.get("x-signature", "")):
            raise Unauthorized("The signature does not match the request.", code="bad_signature")
        # The id scopes the caller's sessions and limits; never put a secret in it.
        return Principal(id=f"signed:{client}", name=client)


@hookimpl
def gateway_config_sections(register: RegisterSection) -> None:
    register("signed_requests", SignedRequestsConfig)


@hookimpl
def gateway_register_auth(register: RegisterAuth) -> None:
    def factory(gateway: Gateway) -> SignedRequests | None:
        config: SignedRequestsConfig = gateway.config.section("signed_requests")
        return SignedRequests(config) if config.clients else None  # enabled turns auth on

    register("signed-requests", factory)
