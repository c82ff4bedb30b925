"""API keys from ``[auth] keys``: plain strings, or tables with a name and allowed models.

Keys are compared by their SHA-256 digests with ``hmac.compare_digest``, so neither the lookup
nor the comparison takes a time that depends on how much of a guess was right, and the keys
themselves are kept only as digests. A caller's id (which scopes its sessions and limits) is
derived from the digest, so it is the same on every instance and never reveals the key.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Any

import attrs
from aiohttp import web

from gateway import Authenticator, Principal, hookimpl

log = logging.getLogger(__name__)


@attrs.frozen
class KeyConfig:
    """One API key: ``{name = "ci", key = "${CI_KEY}", models = ["llama"], rpm = 60}``."""

    key: str
    name: str | None = None
    #: Public model names (or ``[models]`` globs) this key may use; all when absent.
    models: tuple[str, ...] | None = None
    #: Requests and tokens per minute this key may use; ``[limits]`` decides when absent, and 0
    #: means no limit.
    rpm: int | None = None
    tpm: int | None = None

    @classmethod
    def parse(cls, value: Any) -> KeyConfig:
        if isinstance(value, str):
            value = {"key": value}
        if not isinstance(value, dict):
            raise ValueError("expected a key string or a table {key, name, models, rpm, tpm}")
        unknown = set(value) - {"key", "name", "models", "rpm", "tpm"}
        if unknown:
            raise ValueError(f"unknown keys {', '.join(sorted(map(repr, unknown)))}")
        key, name, models = value.get("key"), value.get("name"), value.get("models")
        if not isinstance(key, str) or not key:
            raise ValueError("'key' must be a non-empty string")
        if name is not None and not isinstance(name, str):
            raise ValueError("'name' must be a string")
        if models is not None and not (
            isinstance(models, list) and all(isinstance(m, str) for m in models)
        ):
            raise ValueError("'models' must be a list of model names")
        limits = {}
        for field in ("rpm", "tpm"):
            limit = value.get(field)
            if limit is not None and (
                isinstance(limit, bool) or not isinstance(limit, int) or limit < 0
            ):
                raise ValueError(f"'{field}' must be a whole number of at least 0 (0: no limit)")
            limits[field] = limit
        return cls(key, name, tuple(models) if models is not None else None, **limits)


@attrs.frozen
class AuthConfig:
    """``[auth]``. No keys: the gateway is open (development only; a warning says so)."""

    keys: tuple[KeyConfig, ...] = ()


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class KeysAuthenticator(Authenticator):
    name = "keys"

    def __init__(self, keys: tuple[KeyConfig, ...]) -> None:
        self.table: dict[bytes, tuple[bytes, Principal]] = {}
        self.named: dict[str, Principal] = {}
        for i, k in enumerate(keys):
            d = digest(k.key)
            pid = "key-" + d.hex()[:16]
            principal = Principal(
                id=pid,
                name=k.name or f"key{i + 1}",
                models=frozenset(k.models) if k.models is not None else None,
                rpm=k.rpm,
                tpm=k.tpm,
            )
            self.table[d] = (d, principal)
            self.named.setdefault(principal.name, principal)

    async def authenticate(self, request: web.Request, credential: str | None) -> Principal | None:
        if not credential:
            return None
        d = digest(credential)
        found = self.table.get(d)
        if found is None or not hmac.compare_digest(found[0], d):
            return None
        return found[1]

    def principal(self, name: str | None) -> Principal | None:
        if name is None:
            return next(iter(self.named.values()), None)
        return self.named.get(name)


@hookimpl
def gateway_config_sections(register: Any) -> None:
    register("auth", AuthConfig)


@hookimpl
def gateway_register_auth(register: Any) -> None:
    def factory(gateway: Any) -> KeysAuthenticator | None:
        keys = gateway.config.section("auth").keys
        return KeysAuthenticator(keys) if keys else None

    register("keys", factory)
