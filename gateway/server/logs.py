"""What the server logs about HTTP itself: the access log, and malformed requests.

**The access log** (``[server] access_log = true``) is one line per request, written when its
answer has ended (a stream: its last byte): the peer, the method and path (never the query
string, which may carry a ``?token=``), the status, the bytes of the body, the duration, the
request id, the API key's *name* (never the key), the model and the backend. With
``access_log_format = "json"`` each line is one JSON object with the same fields.

**Malformed requests** (bad request lines, headers or framing) are answered 400 by aiohttp, which
logs each one as an ERROR with a full traceback. :class:`MalformedRequests` turns that into one
WARNING line without a traceback per peer and minute, naming only the kind of error (its text
may quote the request, query tokens included).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web import BaseRequest, StreamResponse

from gateway.exchange import ANONYMOUS, EXCHANGE

#: The logger of the access log, and of what aiohttp says about connections and bad requests.
ACCESS = "gateway.access"
HTTP = "gateway.http"


def _fields(request: BaseRequest, response: StreamResponse, seconds: float) -> dict[str, Any]:
    ex = request.get(EXCHANGE)
    principal = ex.principal if ex is not None else ANONYMOUS
    return {
        "peer": request.remote,
        "method": request.method,
        "path": request.raw_path.partition("?")[0],
        "status": response.status,
        "bytes": response.body_length,
        "ms": round(seconds * 1000, 3),
        "id": ex.request_id if ex is not None else None,
        "key": None if principal is ANONYMOUS else principal.name,
        "model": (ex.model or None) if ex is not None else None,
        "backend": (ex.backend or None) if ex is not None else None,
    }


class TextAccessLogger(AbstractAccessLogger):
    """``127.0.0.1 "POST /v1/chat/completions" 200 312B 41.2ms id=... key=ci model=gpt-4o
    backend=openai:main`` (``-`` for what a request has not: an unrouted one has no model)."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        f = _fields(request, response, time)
        self.logger.info(
            '%s "%s %s" %d %dB %.1fms id=%s key=%s model=%s backend=%s',
            f["peer"] or "-",
            f["method"],
            f["path"],
            f["status"],
            f["bytes"],
            f["ms"],
            f["id"] or "-",
            f["key"] or "-",
            f["model"] or "-",
            f["backend"] or "-",
        )


class JsonAccessLogger(AbstractAccessLogger):
    """The same fields as one JSON object (``null`` for what a request has not)."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        self.logger.info("%s", orjson.dumps(_fields(request, response, time)).decode())


ACCESS_LOGGERS: dict[str, type[AbstractAccessLogger]] = {
    "text": TextAccessLogger,
    "json": JsonAccessLogger,
}


class MalformedRequests(logging.Filter):
    """On aiohttp's server logger: a malformed request is one WARNING line per peer and
    ``every`` seconds, without a traceback; the others from that peer meanwhile are dropped."""

    def __init__(self, every: float = 60.0, max_peers: int = 10_000) -> None:
        super().__init__()
        self.every = every
        self.max_peers = max_peers
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        peer = str(record.args[0]) if isinstance(record.args, tuple) and record.args else "?"
        now = time.monotonic()
        last = self._last.get(peer)
        if last is not None and now - last < self.every:
            return False
        if len(self._last) >= self.max_peers:
            self._last = {p: t for p, t in self._last.items() if now - t < self.every}
            if len(self._last) >= self.max_peers:
                self._last.clear()
        self._last[peer] = now
        record.msg = (
            "malformed HTTP request from %s (%s, answered %d); "
            "more from this peer within %gs are not logged"
        )
        record.args = (peer, type(exc).__name__, exc.code, self.every)
        record.exc_info = record.exc_text = None
        if record.levelno > logging.WARNING:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def http_logger() -> logging.Logger:
    """The logger given to aiohttp's connection handlers, with :class:`MalformedRequests` on."""
    logger = logging.getLogger(HTTP)
    if not any(isinstance(f, MalformedRequests) for f in logger.filters):
        logger.addFilter(MalformedRequests())
    return logger
