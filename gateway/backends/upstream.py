"""One pooled HTTP client per upstream, with failures mapped to gateway errors.

Every HTTP backend (see :mod:`gateway.backends.http`) uses :class:`Upstream`: one pooled
keep-alive client for the life of the app, timeouts per phase (connect, first byte, idle read,
total) and a bound on an answer's size, the time spent
waiting on the upstream added to the exchange, and every failure turned into the
:class:`~gateway.errors.GatewayError` the client should see (refused: 502, too slow: 504, error
status: mapped with its message kept).

Plain ``http://`` upstreams (a model server on the same host or network) go through the lean
client of :mod:`gateway.backends.lean_client`, which costs a fraction of
``aiohttp.ClientSession`` per request;
``https://`` upstreams go through a ``ClientSession``, which earns its cost there (TLS).
Both hand back a response with ``status``, ``headers`` and ``content.readany()``. The client
only does HTTP (post, stream, read); what the bytes mean is the backend's.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import AsyncIterator, Collection, Coroutine, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from urllib.request import getproxies_environment, proxy_bypass

import aiohttp
import orjson
from yarl import URL

from gateway import __version__
from gateway.backends.lean_client import BadResponse, ConnectError, HTTP1Pool, encode_headers
from gateway.errors import GatewayError, UpstreamError, UpstreamTimeout, upstream_error
from gateway.exchange import Exchange, trace_headers, trace_lines
from gateway.redaction import redact_url

if TYPE_CHECKING:
    from gateway.backends.http import HTTPBackendConfig

_MAX_ERROR_BODY = 64 * 1024

log = logging.getLogger(__name__)


class Upstream:
    """A pooled client for one upstream base URL."""

    def __init__(self, backend: str, config: HTTPBackendConfig, headers: Mapping[str, str]) -> None:
        self.backend = backend
        self.base_url = str(config.base_url)
        self.config = config
        self.headers = {
            "content-type": "application/json",
            "user-agent": f"hookgate/{__version__}",
            **headers,
            **config.headers,
        }
        self.session: aiohttp.ClientSession | None = None
        self.pool: HTTP1Pool | None = None
        self._relay_session: aiohttp.ClientSession | None = None
        url = urlsplit(self.base_url)
        #: The proxy the environment names for this upstream (:func:`proxy_for`; its password
        #: in it), if any: then it is reached through aiohttp's client, which speaks to proxies
        #: (the lean one does not).
        self._proxy = proxy_for(self.base_url)
        if self._proxy is not None:
            log.info(
                "backend '%s' reaches %s through the proxy %s",
                backend,
                redact_url(self.base_url),
                self._proxy.with_user(None),
            )
        self._lean = url.scheme == "http" and self._proxy is None
        self._path = url.path
        #: What an https:// upstream's certificate is checked with (True: the system's CAs).
        self._tls: ssl.SSLContext | bool = True
        if config.ca_file:
            if url.scheme != "https":
                raise ValueError("ca_file is for https:// upstreams; base_url is http://")
            try:
                self._tls = ssl.create_default_context(cafile=config.ca_file)
            except OSError as exc:  # missing, unreadable, or no certificate in it
                raise ValueError(f"ca_file {config.ca_file!r}: {exc}") from None
        if self._lean:
            # Checked now so that a bad header is a startup error, not a failure per request.
            # The request id is every request's own (see _own_headers).
            self._lean_headers = [
                (name, value)
                for name, value in self.headers.items()
                if name.lower() not in ("host", "x-request-id")
            ]
            encode_headers([*self._lean_headers, ("accept-encoding", "identity")])
            #: The names of the lean client's default headers (see HTTP1Pool.request).
            self._default_names = frozenset(
                name.lower() for name, _ in [("host", ""), *self._lean_headers]
            )
            #: Those a request's trace context replaces (none, unless configured).
            self._trace_defaults = self._default_names & _TRACE
        # aiohttp's sock_read would bound the wait for the status line too: the phases are
        # bounded here instead (first_byte_timeout, then read_timeout per read).
        self._whole = aiohttp.ClientTimeout(total=config.timeout, connect=config.connect_timeout)
        self._streamed = self._whole
        self.max_size = int(config.max_response_size)

    async def start(self) -> None:
        cfg = self.config
        if self._lean:
            url = urlsplit(self.base_url)
            self.pool = HTTP1Pool(
                url.hostname or "localhost",
                url.port or 80,
                headers=[*self._lean_headers, ("accept-encoding", "identity")],
                limit=cfg.max_connections,
                connect_timeout=cfg.connect_timeout,
                idle_timeout=cfg.idle_timeout,
            )
            return
        connector = aiohttp.TCPConnector(
            limit=cfg.max_connections, ttl_dns_cache=300, ssl=self._tls
        )
        self.session = aiohttp.ClientSession(
            connector=connector,
            headers=self.headers,
            skip_auto_headers=("Accept-Encoding",),
            proxy=self._proxy,
        )

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None
        if self._relay_session is not None:
            await self._relay_session.close()
            self._relay_session = None
        if self.pool is not None:
            await self.pool.close()
            self.pool = None

    def _session(self) -> aiohttp.ClientSession:
        if self.session is None:
            raise UpstreamError(f"backend '{self.backend}' is not started")
        return self.session

    def _pool(self) -> HTTP1Pool:
        if self.pool is None:
            raise UpstreamError(f"backend '{self.backend}' is not started")
        return self.pool

    def post(
        self, path: str, body: bytes, ex: Exchange, headers: Mapping[str, str] | None = None
    ) -> Coroutine[Any, Any, bytes]:
        """POST ``body``; awaited, the answer's bytes; a failure raises :class:`GatewayError`.
        ``headers`` are added to this request only. (The client's own coroutine is returned,
        not awaited in one more.)"""
        if self._lean:
            return self._lean_post(path, body, ex, headers)
        return self._session_post(path, body, ex, headers)

    async def _session_post(
        self, path: str, body: bytes, ex: Exchange, headers: Mapping[str, str] | None
    ) -> bytes:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.config.first_byte_timeout):
                resp = await self._session().post(
                    self.base_url + path,
                    data=body,
                    headers=_request_headers(ex, headers),
                    timeout=self._whole,
                )
            async with resp:
                if resp.status >= 400:
                    error = await resp.content.read(_MAX_ERROR_BODY)
                    raise self.failed(
                        ex,
                        status_error(resp.status, error, resp.headers, self.backend),
                        resp.status,
                    )
                async with asyncio.timeout(self.config.read_timeout):
                    data = await resp.content.read(self.max_size + 1)
                if len(data) > self.max_size:
                    raise self.failed(ex, self.too_large())
                return data
        except GatewayError:
            raise
        except Exception as exc:
            raise self.failed(ex, self.failure(exc)) from None
        finally:
            ex.upstream_seconds += time.perf_counter() - started

    def _own_headers(
        self, ex: Exchange, extra: Mapping[str, str] | None
    ) -> tuple[bytes, Collection[str]]:
        """This request's own header lines (the request id, its trace context, a plugin's
        headers and ``extra``: see :func:`_added`), and the names of the lean client's default
        headers they replace."""
        line = b"x-request-id: " + ex.request_id.encode("latin-1") + b"\r\n"
        replaces: Collection[str] = ()
        context = ex.trace_context
        if context is not None:
            line = trace_lines(context) + line
            replaces = self._trace_defaults
        if not extra and not ex.upstream_headers:
            return line, replaces
        added = _added(ex, extra)
        if not added:
            return line, replaces
        names = {name.lower() for name in added}
        names.update(replaces)
        return encode_headers(added.items()) + line, self._default_names.intersection(names)

    async def _lean_post(
        self, path: str, body: bytes, ex: Exchange, headers: Mapping[str, str] | None
    ) -> bytes:
        started = time.perf_counter()
        pool = self.pool
        if pool is None:
            pool = self._pool()  # raises
        cfg = self.config
        now = pool.loop.time()
        try:
            lines, replaces = self._own_headers(ex, headers)
            resp = await pool.request(
                "POST",
                self._path + path,
                body,
                headers=lines,
                replaces=replaces,
                read_timeout=cfg.read_timeout,
                deadline=now + cfg.timeout,
                first_byte=now + cfg.first_byte_timeout,
            )
            resp.first_byte = None
            try:
                limit = _MAX_ERROR_BODY if resp.status >= 300 else self.max_size + 1
                data = await resp.read(limit)
            finally:
                resp.close()
        except Exception as exc:
            raise self.failed(ex, self.failure(exc)) from None
        finally:
            ex.upstream_seconds += time.perf_counter() - started
        if resp.status >= 300:
            err = status_error(resp.status, data, resp.headers, self.backend)
            raise self.failed(ex, err, resp.status)
        if len(data) > self.max_size:
            raise self.failed(ex, self.too_large())
        return data

    def too_large(self) -> GatewayError:
        err = UpstreamError(
            f"backend '{self.backend}' answered more than its max_response_size "
            f"({self.max_size} bytes)"
        )
        err.failure = "server"
        return err

    def stream(
        self, path: str, body: bytes, ex: Exchange, headers: Mapping[str, str] | None = None
    ) -> OpenStream:
        """POST ``body``; ``async with`` it gives the open response once its status is known
        to be good.

        Failures before that raise :class:`GatewayError`; reading the body is the caller's,
        who maps read failures with :meth:`failure`. Leaving the block closes the response
        (releasing or, mid-body, dropping the connection), which is how a client that went
        away cancels the upstream request. The request body is let go once sent (a stream may
        stay open for long).
        """
        return OpenStream(self, path, body, ex, headers)

    async def open_stream(
        self, path: str, body: bytes, ex: Exchange, headers: Mapping[str, str] | None
    ) -> Any:
        """The response of :meth:`stream`, its status good (closed and raised otherwise)."""
        started = time.perf_counter()
        cfg = self.config
        resp: Any
        try:
            if self._lean:
                pool = self._pool()
                now = pool.loop.time()
                lines, replaces = self._own_headers(ex, headers)
                resp = await pool.request(
                    "POST",
                    self._path + path,
                    body,
                    headers=lines,
                    replaces=replaces,
                    read_timeout=cfg.read_timeout,
                    deadline=now + cfg.timeout,
                    first_byte=now + cfg.first_byte_timeout,
                )
            else:
                async with asyncio.timeout(cfg.first_byte_timeout):
                    resp = await self._session().post(
                        self.base_url + path,
                        data=body,
                        headers=_request_headers(ex, headers),
                        timeout=self._streamed,
                    )
        except Exception as exc:
            raise self.failed(ex, self.failure(exc)) from None
        finally:
            ex.upstream_seconds += time.perf_counter() - started
        if resp.status < 300:
            return resp
        try:
            try:
                data = await resp.content.read(_MAX_ERROR_BODY)
            except Exception as exc:
                raise self.failed(ex, self.failure(exc)) from None
            raise self.failed(
                ex, status_error(resp.status, data, resp.headers, self.backend), resp.status
            )
        finally:
            resp.close()

    async def read(self, resp: Any, ex: Exchange, until: float | None = None) -> bytes:
        """The next bytes of a streamed answer, whatever one read returns (``b""`` at its end),
        the wait added to the exchange's upstream time; a failure raises :class:`GatewayError`.

        ``until`` (an event-loop time), while the answer's first content is awaited, replaces
        the idle ``read_timeout`` (``first_byte_timeout``); ``None`` once it came.
        """
        started = time.perf_counter()
        try:
            data: bytes
            if self._lean:
                resp.first_byte = until
                # Response.readany inline: an idle stream waits here, one frame fewer.
                while (data := resp.take()) is None:
                    waiter = resp.arm()
                    try:
                        await waiter
                    finally:
                        resp.disarm()
            elif until is None:
                async with asyncio.timeout(self.config.read_timeout):
                    data = await resp.content.readany()
            else:
                async with asyncio.timeout_at(until):
                    data = await resp.content.readany()
            return data
        except (TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
            err = self.failure(exc)
            if isinstance(err, UpstreamTimeout) and until is None:
                err = UpstreamTimeout(f"backend '{self.backend}' stopped sending mid-stream")
                err.failure = "stream"
            raise self.failed(ex, err) from None
        finally:
            ex.upstream_seconds += time.perf_counter() - started

    def first_content_deadline(self) -> float:
        """The event-loop time by which a stream started now must bring its first content."""
        # The pool's loop when there is one: asking for the running one costs a getpid() call
        # (Python 3.11).
        loop = self.pool.loop if self.pool is not None else asyncio.get_running_loop()
        return loop.time() + self.config.first_byte_timeout

    def failed(self, ex: Exchange, err: GatewayError, status: int | None = None) -> GatewayError:
        """Log one warning for a failed upstream call and return ``err``. The line names the
        request id, the backend and the reason: the upstream's status, or the gateway's own
        words for a transport failure; never the upstream's text, which may echo a secret."""
        if status is None:
            reason = err.message
        elif status in (401, 403):
            reason = f"HTTP {status}: the upstream refused the gateway's credentials"
        else:
            reason = f"HTTP {status}"
        log.warning(
            "upstream call failed: request %s, backend %s: %s", ex.request_id, self.backend, reason
        )
        return err

    def failure(self, exc: BaseException) -> GatewayError:
        """The gateway error for a transport failure talking to this upstream."""
        err = self._failure(exc)
        err.failure = _failure_reason(exc)
        return err

    def _failure(self, exc: BaseException) -> GatewayError:
        name = self.backend
        if isinstance(exc, asyncio.TimeoutError | TimeoutError):
            return UpstreamTimeout(f"backend '{name}' did not answer in time")
        if isinstance(exc, aiohttp.ClientConnectorError | ConnectError):
            reason = exc.strerror or "connection failed"
            return UpstreamError(f"backend '{name}' is unreachable ({reason.lower()})")
        if isinstance(exc, BadResponse):
            return UpstreamError(f"backend '{name}' sent an answer that is not valid HTTP")
        if isinstance(
            exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError | ConnectionError
        ):
            return UpstreamError(
                f"backend '{name}' closed the connection before the answer was complete"
            )
        if isinstance(exc, aiohttp.ClientError):
            return UpstreamError(f"backend '{name}' failed: {type(exc).__name__}")
        return UpstreamError(f"backend '{name}' failed unexpectedly")

    @asynccontextmanager
    async def relay(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes | AsyncIterator[bytes] | None,
        ex: Exchange,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send a request the gateway does not model (an upload, an audio file back) with the
        client's body streamed as it arrives, and yield the open answer once its status is
        known to be good. It goes through a client session of its own, made on first use: the
        pooled client sends whole bodies only."""
        if self._relay_session is None:
            self._relay_session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._tls),
                headers={k: v for k, v in self.headers.items() if k.lower() != "content-type"},
                skip_auto_headers=("Accept-Encoding", "Content-Type"),
                proxy=self._proxy,
            )
        started = time.perf_counter()
        try:
            resp = await self._relay_session.request(
                method,
                self.base_url + path,
                data=body,
                headers=_request_headers(ex, headers),
                timeout=self._streamed,
            )
        except Exception as exc:
            raise self.failed(ex, self.failure(exc)) from None
        finally:
            ex.upstream_seconds += time.perf_counter() - started
        try:
            if resp.status >= 300:
                data = await resp.content.read(_MAX_ERROR_BODY)
                raise self.failed(
                    ex, status_error(resp.status, data, resp.headers, self.backend), resp.status
                )
            yield resp
        finally:
            resp.close()

    async def get(self, path: str, ex: Exchange) -> bytes:
        """GET ``path`` (a model list, ...) and return the answer's bytes, within the backend's
        ``timeout``; a failure raises :class:`GatewayError`."""
        started = time.perf_counter()
        try:
            if self._lean:
                pool = self._pool()
                lines, replaces = self._own_headers(ex, None)
                resp = await pool.request(
                    "GET",
                    self._path + path,
                    headers=lines,
                    replaces=replaces,
                    read_timeout=self.config.read_timeout,
                    deadline=pool.loop.time() + self.config.timeout,
                )
                try:
                    data, status, headers = await resp.read(), resp.status, resp.headers
                finally:
                    resp.close()
            else:
                async with self._session().get(
                    self.base_url + path, headers=_request_headers(ex, None), timeout=self._whole
                ) as answer:
                    data, status, headers = await answer.read(), answer.status, answer.headers
        except GatewayError:
            raise
        except Exception as exc:
            raise self.failed(ex, self.failure(exc)) from None
        finally:
            ex.upstream_seconds += time.perf_counter() - started
        if status >= 300:
            raise self.failed(
                ex, status_error(status, data[:_MAX_ERROR_BODY], headers, self.backend), status
            )
        return data


class OpenStream:
    """``async with`` an upstream stream (see :meth:`Upstream.stream`): entering sends the
    request and gives the response, leaving closes it. It holds the request's parts only until
    they are sent."""

    __slots__ = ("_call", "_resp", "_upstream")

    def __init__(
        self,
        upstream: Upstream,
        path: str,
        body: bytes,
        ex: Exchange,
        headers: Mapping[str, str] | None,
    ) -> None:
        self._upstream = upstream
        self._call: tuple[str, bytes, Exchange, Mapping[str, str] | None] | None = (
            path,
            body,
            ex,
            headers,
        )
        self._resp: Any = None

    async def __aenter__(self) -> Any:
        call, self._call = self._call, None
        if call is None:
            raise RuntimeError("an upstream stream is entered once")
        self._resp = await self._upstream.open_stream(*call)
        return self._resp

    async def __aexit__(self, *exc: object) -> None:
        resp, self._resp = self._resp, None
        if resp is not None:
            resp.close()


def proxy_for(url: str) -> URL | None:
    """The proxy the environment names for ``url``, as aiohttp's ``proxy`` takes it (its
    credentials in it: aiohttp sends them as ``Proxy-Authorization``, to the proxy alone), or
    ``None``. ``HTTPS_PROXY`` or ``HTTP_PROXY`` by the URL's scheme, upper or lower case
    (``host:port`` alone is ``http://host:port``, as curl reads it), unless ``NO_PROXY`` lists
    the URL's host. Raises ``ValueError`` for a proxy aiohttp cannot speak to (SOCKS). The
    URL holds the proxy's password: it is not to be logged."""
    parts = urlsplit(url)
    proxy = getproxies_environment().get(parts.scheme)
    if not proxy or proxy_bypass(parts.netloc):
        return None
    found = URL(proxy if "://" in proxy else "http://" + proxy)
    if found.scheme not in ("http", "https") or not found.host:
        # Named without its credentials: the message may be printed.
        raise ValueError(
            f"the {parts.scheme} proxy of the environment ({found.with_user(None)}) is not an "
            "http:// or https:// proxy"
        )
    return found


def _failure_reason(exc: BaseException) -> str:
    """The routing failure reason of a transport failure (see gateway.routing.failures)."""
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectorError | ConnectError):
        return "connect"
    if isinstance(exc, aiohttp.ServerDisconnectedError | ConnectionResetError):
        return "reset"  # before the status line: nothing of an answer came
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "stream"
    return "server"


def _request_headers(ex: Exchange, extra: Mapping[str, str] | None) -> Mapping[str, str]:
    """The headers of an upstream request through ``aiohttp`` (which puts them over the
    session's): see :func:`_added`."""
    headers = _added(ex, extra) or {}
    context = ex.trace_context
    if context is not None:
        headers.update(trace_headers(context))
    headers["x-request-id"] = ex.request_id
    return headers


#: Headers the gateway sets itself on an upstream request, left out of what a plugin or a call
#: adds: the request id, and how the body is framed and encoded (the client's to say).
_OWN = frozenset(
    ("x-request-id", "content-length", "transfer-encoding", "accept-encoding", "connection")
)
_TRACE = frozenset(("traceparent", "tracestate"))


def _added(ex: Exchange, extra: Mapping[str, str] | None) -> dict[str, str] | None:
    """What an upstream request adds to the backend's headers (its kind's and ``[backends.x]
    headers``), each replacing the backend's of the same name: a plugin's
    (:attr:`Exchange.upstream_headers`), then the call's own ``extra`` (a backend's, per
    request), one header of each name whatever its case, the later one kept. The request id,
    and the trace context when the request has one, are the gateway's own and stay as it sets
    them. ``None`` when there are none."""
    plugin = ex.upstream_headers
    if not plugin and not extra:
        return None
    own = _OWN | _TRACE if ex.trace_context is not None else _OWN
    merged: dict[str, tuple[str, str]] = {}
    for source in (plugin, extra):
        if source:
            for name, value in source.items():
                lowered = name.lower()
                if lowered not in own:
                    merged[lowered] = (name, value)
    return dict(merged.values())


def status_error(
    status: int, data: bytes, headers: Mapping[str, str], backend: str | None = None
) -> GatewayError:
    """The gateway error for an upstream's error status (see :func:`upstream_error`: the
    upstream's words reach the client only where safe)."""
    retry = headers.get("retry-after")
    try:
        retry_after = float(retry) if retry else None
    except ValueError:
        retry_after = None
    err = upstream_error(status, data, retry_after=retry_after, backend=backend)
    err.upstream_status = status
    if 400 <= status < 500:
        err.upstream_code = error_code(data)
    return err


def error_code(data: bytes) -> str | None:
    """The machine-readable code or type in an upstream's error body, if any (routing reads it
    to tell context-length and content-policy refusals apart)."""
    try:
        obj: Any = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    err = obj.get("error") if isinstance(obj, dict) else None
    if not isinstance(err, dict):
        return None
    code = err.get("code") or err.get("type")
    return code if isinstance(code, str) else None


def error_message(data: bytes) -> str:
    """The human message in an upstream's error body, whatever shape it has."""
    try:
        obj: Any = orjson.loads(data)
    except orjson.JSONDecodeError:
        text = data[:500].decode("utf-8", "replace").strip()
        return text or "no details given"
    if isinstance(obj, dict):
        err = obj.get("error")
        message = err.get("message") if isinstance(err, dict) else None
        if isinstance(message, str):
            return message
        if isinstance(err, str):
            return err
        for key in ("message", "detail"):
            value = obj.get(key)
            if isinstance(value, str):
                return value
    return orjson.dumps(obj)[:500].decode("utf-8", "replace")
