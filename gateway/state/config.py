"""``[redis]``: where shared state lives when there is more than one gateway process."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import attrs

from gateway.config.types import Count, Duration


class RedisUrl(str):
    """``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` (TLS) or ``unix:///path``.
    The empty string means no Redis: state is kept in the process."""

    schemes = ("redis", "rediss", "unix")

    @classmethod
    def parse(cls, value: Any) -> RedisUrl:
        if not isinstance(value, str):
            raise ValueError("not a Redis URL")
        if value == "":
            return cls("")
        parts = urlsplit(value)
        if parts.scheme not in cls.schemes or not (parts.netloc or parts.path):
            raise ValueError(
                f"not a Redis URL: {_masked(value)!r} (expected redis://host:6379/0, "
                "rediss://... or unix:///path/to/socket)"
            )
        return cls(value)

    def masked(self) -> str:
        """The URL with its password hidden, for logs and error messages."""
        return _masked(self)


def _masked(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


@attrs.frozen
class RedisConfig:
    """``[redis]``. With no ``url`` nothing connects to Redis and state that must be shared
    across processes stays in memory, so ``--workers`` above 1 is refused for it."""

    #: ``HOOKGATE_REDIS_URL``. Empty: no Redis.
    url: RedisUrl = RedisUrl("")
    #: Put before every key, so several gateways (or tests) can share one server.
    prefix: str = "hookgate:"
    #: Connections each process keeps at most; a request waits for a free one up to ``timeout``.
    max_connections: Count = Count(50)
    #: Longest wait to open a connection.
    connect_timeout: Duration = Duration(1.0)
    #: Longest wait for one command (or script) to answer, and for a free pooled connection.
    timeout: Duration = Duration(1.0)
