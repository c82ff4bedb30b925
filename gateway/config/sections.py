"""The core's own sections of the configuration (``[server]``, ``[plugins]``, ``[models]``,
``[backends]``, ``[redis]``, ``[database]``), and :class:`Config`, the whole structured configuration.

Plugins declare their own sections through ``gateway_config_sections``; they are reached with
:meth:`Config.section`.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import attrs

from gateway.config.types import (
    AccessLogFormat,
    ByteSize,
    Count,
    Duration,
    LogLevel,
    NonNegative,
    Port,
    WorkerTimeout,
)


@attrs.frozen
class ServerConfig:
    """``[server]``: where and how the gateway listens."""

    host: str = "127.0.0.1"
    port: Port = Port(8000)
    workers: Count = Count(1)
    log_level: LogLevel = LogLevel("info")
    #: Largest request body accepted; larger ones get 413 in the client's protocol.
    max_body_size: ByteSize = ByteSize(16 * 1024**2)
    #: Bytes of request bodies held at once, all requests together (0: no cap); past it a
    #: request gets 503 with ``retry-after`` instead of more memory.
    max_bodies_in_flight: ByteSize = ByteSize(256 * 1024**2)
    #: Longest time a request body may take to arrive (0: no limit); a slower one gets 408
    #: and its connection is closed.
    body_timeout: Duration = Duration(30.0)
    #: On SIGTERM/SIGINT, how long in-flight requests and streams may take to finish.
    drain_timeout: Duration = Duration(30.0)
    #: With several workers: one whose event loop has not answered for this long is killed
    #: and replaced. More than the heartbeat interval (1s).
    worker_timeout: WorkerTimeout = WorkerTimeout(30.0)
    #: How long an idle client connection is kept open.
    keepalive_timeout: Duration = Duration(75.0)
    #: Log one line per request (costs throughput; metrics count requests anyway): peer, method
    #: and path (no query string), status, body bytes, duration, request id, key name (never
    #: the key), model and backend.
    access_log: bool = False
    #: The access log's lines: "text", or "json" (one JSON object a line, for log shippers).
    access_log_format: AccessLogFormat = AccessLogFormat("text")
    #: Keep a client's own ``x-request-id`` (up to 128 printable characters) instead of a new one.
    trust_request_id: bool = True
    #: Serve HTTPS: a PEM file of the server's certificate chain, with its private key unless
    #: ``tls_key`` names another file. Read again on reload (SIGHUP): a renewed certificate is
    #: served without a restart.
    tls_cert: str = ""
    #: A PEM file of the certificate's private key (not encrypted), when not in ``tls_cert``.
    tls_key: str = ""
    #: A PEM file of the certificate authorities whose client certificates are asked for and
    #: checked (mutual TLS): a certificate they did not sign fails the handshake; a client
    #: without one goes on to the authenticators (which see a verified one: ``peercert``).
    tls_client_ca: str = ""

    def __attrs_post_init__(self) -> None:
        if (self.tls_key or self.tls_client_ca) and not self.tls_cert:
            raise ValueError("tls_key and tls_client_ca need tls_cert")
        server_tls(self)  # the files are read now: a bad one is a startup error


def server_tls(cfg: ServerConfig) -> ssl.SSLContext | None:
    """The TLS context ``[server]`` serves with (``None``: plain HTTP), read from its files;
    ``ValueError`` says which cannot be used and why."""
    if not cfg.tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cfg.tls_cert, cfg.tls_key or None, password=_no_password)
    except (OSError, _EncryptedKey) as exc:  # missing, unreadable, not PEM, key not matching
        raise ValueError(f"tls_cert: {exc}") from None
    if cfg.tls_client_ca:
        try:
            context.load_verify_locations(cfg.tls_client_ca)
        except OSError as exc:
            raise ValueError(f"tls_client_ca: {exc}") from None
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


class _EncryptedKey(Exception):
    def __str__(self) -> str:
        return "the private key is encrypted (a service has no one to type its password)"


def _no_password() -> str:
    raise _EncryptedKey


def _price(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError("a price is a number of USD of at least 0")
    return float(value)


@attrs.frozen
class ModelPrice:
    """``[models.<name>] price = {input = 0.15, output = 0.6}``: USD per million tokens (and per
    request), for models the price library does not know (self-hosted ones) or prices of your
    own. Unset kinds fall back: ``cached_input`` and ``cache_write`` to ``input``, ``reasoning``
    to ``output``."""

    input: float = attrs.field(default=0.0, converter=_price)
    output: float = attrs.field(default=0.0, converter=_price)
    #: Input tokens read from a prompt cache.
    cached_input: float | None = None
    #: Input tokens written to a prompt cache.
    cache_write: float | None = None
    #: Reasoning tokens (counted among the output tokens by the upstream).
    reasoning: float | None = None
    #: USD per request, whatever its tokens.
    request: float = attrs.field(default=0.0, converter=_price)


#: What a failed upstream attempt was, as ``retry_on`` and ``fallback_on`` name it (see
#: :mod:`gateway.routing.failures`).
FAILURE_REASONS = (
    "connect",
    "reset",
    "timeout",
    "rate_limit",
    "server",
    "auth",
    "context_length",
    "content_policy",
    "client",
    "stream",
)


def _reasons(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise ValueError("expected a list of failure reasons")
    unknown = [v for v in value if v not in FAILURE_REASONS]
    if unknown:
        raise ValueError(
            f"unknown failure reason {unknown[0]!r} (known: {', '.join(FAILURE_REASONS)})"
        )
    return tuple(value)


@attrs.frozen
class TargetConfig:
    """One entry of ``[models.<name>] targets``: a backend that may answer the model."""

    #: The ``[backends.<name>]`` that answers.
    backend: str
    #: The model name sent to this backend (default: the model's ``upstream_model``, else the
    #: name the client asked for).
    upstream_model: str | None = None
    #: Share of requests with the ``weighted`` strategy (and its preference under affinity).
    weight: Count = Count(1)
    #: Retries on this target for retryable failures (default: the model's ``retries``).
    retries: NonNegative | None = None


@attrs.frozen
class ModelConfig:
    """``[models.<name>]``: a public model name routed to a backend, or to several targets.

    The name may be a glob (``"gpt-*"``, ``"*"``); exact names win, then globs in file order.
    ``upstream_model`` defaults to the name the client asked for. Give either ``backend`` (one
    target) or ``targets``; the routing options apply to both (see Routing in the docs).
    """

    #: The one backend that answers (shorthand for ``targets = [{ backend = "..." }]``).
    backend: str | None = None
    upstream_model: str | None = None
    description: str | None = None
    #: For a glob name: the concrete names it serves, listed by ``GET /v1/models`` (beside
    #: those the upstream's own model list has that the glob matches).
    names: tuple[str, ...] = ()
    #: What the model costs, when the price library does not say (or says otherwise).
    price: ModelPrice | None = None
    #: Backends that may answer, each ``{ backend, upstream_model, weight, retries }``.
    targets: tuple[TargetConfig, ...] = ()
    #: How a request's first target is chosen: ``fallback`` (in order), ``weighted`` (at random
    #: by ``weight``), ``least-busy`` (fewest requests in flight here) or ``latency`` (lowest
    #: recent time to first byte). The other healthy targets follow as fallbacks.
    strategy: Literal["fallback", "weighted", "least-busy", "latency"] = "fallback"
    #: Retries on each target for failures in ``retry_on``, before the next target.
    retries: NonNegative = NonNegative(0)
    #: First retry's wait; each further retry doubles it, with jitter.
    backoff: Duration = Duration(0.25)
    #: Longest wait before a retry, an upstream's ``Retry-After`` included (a longer
    #: ``Retry-After`` moves on to the next target instead).
    max_backoff: Duration = Duration(5.0)
    #: Failures retried on the same target.
    retry_on: tuple[str, ...] = attrs.field(
        default=("connect", "reset", "timeout", "rate_limit", "server"), converter=_reasons
    )
    #: Failures that move on to the next target (after the retries). Without
    #: ``content_policy`` here, a content-policy refusal is returned to the client as it is.
    fallback_on: tuple[str, ...] = attrs.field(
        default=(
            "connect",
            "reset",
            "timeout",
            "rate_limit",
            "server",
            "auth",
            "context_length",
            "stream",
        ),
        converter=_reasons,
    )
    #: Failures of one target within ``fail_window`` that open its circuit (0: never).
    allowed_fails: NonNegative = NonNegative(3)
    #: The window ``allowed_fails`` are counted in.
    fail_window: Duration = Duration(60.0)
    #: How long an open circuit skips its target; then one probe request is let through.
    cooldown: Duration = Duration(30.0)
    #: Keep one session's requests on one healthy target (weighted, least-busy, latency):
    #: ``"session"`` (the session id), or the name of a request header (``"user"``: also the
    #: request's ``user`` field). Empty: no affinity.
    affinity: str = ""

    def target_list(self) -> tuple[TargetConfig, ...]:
        """The targets, the ``backend`` shorthand included."""
        if self.targets:
            return self.targets
        if self.backend is None:
            return ()
        return (TargetConfig(self.backend),)


@attrs.frozen
class PluginsConfig:
    """``[plugins]``: which installed plugins run."""

    #: Plugin names (as ``hookgate plugins`` lists them) to leave out.
    disable: tuple[str, ...] = ()
    #: Load plugins from the ``hookgate`` entry-point group. Tests and embedders turn it off and
    #: pass an explicit plugin list.
    autoload: bool = True


# --- the converter ------------------------------------------------------------------------------


@attrs.frozen
class BackendConfig:
    """The fields every ``[backends.<name>]`` table has. Kinds subclass it to add their own."""

    kind: str


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


class DatabaseUrl(str):
    """``postgres://user:password@host:5432/db`` (or ``postgresql://``), ``sqlite:///path``, or
    empty: the embedded SQLite file ``hookgate.db`` under ``data_dir``."""

    schemes = ("postgres", "postgresql", "sqlite")

    @classmethod
    def parse(cls, value: Any) -> DatabaseUrl:
        if not isinstance(value, str):
            raise ValueError("not a database URL")
        if value == "":
            return cls("")
        parts = urlsplit(value)
        sqlite = parts.scheme == "sqlite"
        if (
            parts.scheme not in cls.schemes
            or not (parts.netloc or parts.path)
            or (sqlite and not value.startswith("sqlite:///"))
        ):
            raise ValueError(
                f"not a database URL: {_masked(value)!r} (expected "
                "postgres://user:password@host:5432/dbname, sqlite:///relative/path.db or "
                "sqlite:////absolute/path.db)"
            )
        return cls(value)

    @property
    def postgres(self) -> bool:
        return self.startswith(("postgres://", "postgresql://"))

    def masked(self) -> str:
        """The URL with its password hidden, for logs and error messages."""
        return _masked(self)


def default_data_dir() -> str:
    """``$HOOKGATE_DATA_DIR``, else ``$XDG_DATA_HOME/hookgate``, else
    ``~/.local/share/hookgate``."""
    explicit = os.environ.get("HOOKGATE_DATA_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "hookgate")


@attrs.frozen
class DatabaseConfig:
    """``[database]``. Opened only when something needs it (virtual keys, the spend ledger)."""

    #: ``HOOKGATE_DATABASE_URL``: ``postgres://...`` for a PostgreSQL shared by every instance,
    #: ``sqlite:///relative.db`` or ``sqlite:////absolute.db``, or empty for the embedded SQLite
    #: file under ``data_dir``.
    url: DatabaseUrl = DatabaseUrl("")
    #: Folder of the embedded SQLite file (``hookgate.db``); empty: ``$HOOKGATE_DATA_DIR``, else
    #: ``$XDG_DATA_HOME/hookgate``, else ``~/.local/share/hookgate``.
    data_dir: str = ""
    #: PostgreSQL connections each process keeps at most.
    pool_size: Count = Count(10)
    #: Longest wait for a connection or one statement; past it the request gets 503.
    timeout: Duration = Duration(5.0)

    def sqlite_path(self) -> str:
        """The SQLite file this configuration names (when it names no PostgreSQL)."""
        if self.url.startswith("sqlite:///"):
            return self.url.removeprefix("sqlite:///")
        return str(Path(self.data_dir or default_data_dir()) / "hookgate.db")

    def describe(self) -> str:
        return self.url.masked() if self.url.postgres else f"sqlite:{self.sqlite_path()}"


#: Sections the core itself owns (plugins own the rest).
CORE_SECTIONS: dict[str, Any] = {
    "server": ServerConfig,
    "plugins": PluginsConfig,
    "models": dict[str, ModelConfig],
    "backends": dict[str, BackendConfig],
    # Shared state is core: every plugin that keeps state reaches Redis through gateway.state.
    "redis": RedisConfig,
    # Likewise the database: keys, teams and the spend ledger (gateway.state.database).
    "database": DatabaseConfig,
}

#: The embedded default when no backend is configured at all: the echo backend, any model name.
DEFAULT_BACKENDS = {"echo": {"kind": "echo"}}
DEFAULT_MODELS = {"echo": {"backend": "echo"}, "*": {"backend": "echo"}}


@attrs.frozen
class Config:
    """The whole structured configuration.

    The core's sections are attributes; plugin sections are reached with :meth:`section`.
    """

    server: ServerConfig
    plugins: PluginsConfig
    models: Mapping[str, ModelConfig]
    backends: Mapping[str, BackendConfig]
    sections: Mapping[str, Any]
    source: str | None = None

    def section(self, name: str) -> Any:
        """The structured value of a plugin's section (its defaults when the file omits it)."""
        return self.sections[name]
