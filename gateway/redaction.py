"""What must never leave the gateway: credentials and URLs in text, tokens in query strings.

:func:`redact` cleans text that came from elsewhere (an upstream's error message) before a
client or a log sees it; :func:`redact_query` removes the values of credential parameters
(``?token=``) from a request line or URL; :func:`redact_url` keeps of a configured URL only what
a log may show; :class:`RedactingFilter` applies both to every log
record a handler writes. :func:`gateway.errors.upstream_error` builds every upstream failure
the clients see on top of these.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

REDACTED = "[redacted]"

#: A Python traceback, or one frame line of it: such text is dropped whole.
_TRACEBACK = re.compile(r"Traceback \(most recent call last\)|File \"[^\"]*\", line \d+")
#: Anything URL-shaped (``scheme://...``), with or without credentials in it.
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.\-]{1,20}://\S+")
#: ``user:password@host`` without a scheme.
_USERINFO = re.compile(r"[^\s:/@'\"]+:[^\s@/'\"]+@[\w.\-]+")
#: An authorization scheme and its credential.
_AUTH_SCHEME = re.compile(r"\b(Bearer|Basic|Token|Bot)\s+[^\s,;'\"]+", re.IGNORECASE)
#: Well-known key shapes: OpenAI and Anthropic (``sk-``), Slack, GitHub, AWS, Google, Stripe.
_KEY = re.compile(
    r"\b(?:sk|pk|rk)[-_][A-Za-z0-9_\-*.]{3,}"
    r"|\bxox[abprs]-[A-Za-z0-9\-]+"
    r"|\b(?:ghp|gho|ghs|ghu|ghr|github_pat)_[A-Za-z0-9_]+"
    r"|\bAKIA[A-Z0-9]{12,}"
    r"|\bAIza[A-Za-z0-9_\-]{20,}"
    r"|\bwhsec_[A-Za-z0-9+/=]+"
)
#: ``api_key=...``, ``"password": "..."`` and the like.
_ASSIGNED = re.compile(
    r"((?:api[_-]?key|access[_-]?token|token|secret|password|passwd|pwd|authorization|"
    r"x-api-key|credentials?)['\"]?\s*[:=]\s*['\"]?)[^\s'\",;&]+",
    re.IGNORECASE,
)
#: A long opaque run of key-like characters (most secrets; ids and hashes go too).
_OPAQUE = re.compile(r"\b[A-Za-z0-9_\-+/]{32,}={0,2}")
#: A credential parameter in a query string.
_QUERY_SECRET = re.compile(
    r"([?&;](?:token|api[_-]?key|key|access_token|secret|password|sig|signature)=)[^&\s\"#]*",
    re.IGNORECASE,
)


def redact(text: str) -> str | None:
    """``text`` with anything credential- or URL-shaped replaced by ``[redacted]``; ``None``
    when nothing of it is fit to show (it is, or holds, a traceback)."""
    if _TRACEBACK.search(text):
        return None
    text = _URL.sub(REDACTED, text)
    text = _USERINFO.sub(REDACTED, text)
    text = _AUTH_SCHEME.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _KEY.sub(REDACTED, text)
    text = _ASSIGNED.sub(lambda m: m.group(1) + REDACTED, text)
    return _OPAQUE.sub(REDACTED, text)


def redact_query(text: str) -> str:
    """``text`` (a URL, a request line, a log line) with the values of credential query
    parameters (``token``, ``api_key``, ``key``, ...) replaced by ``[redacted]``."""
    if "=" not in text:
        return text
    return _QUERY_SECRET.sub(lambda m: m.group(1) + REDACTED, text)


def redact_url(url: str) -> str:
    """A URL fit for a log: its scheme, host, port and path; its user information, query and
    fragment (where credentials and signatures live) replaced by ``[redacted]``."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return REDACTED
    if not parts.scheme or not host:
        return REDACTED
    if ":" in host:
        host = f"[{host}]"
    where = f"{REDACTED}@{host}" if "@" in parts.netloc else host
    if port is not None:
        where += f":{port}"
    text = f"{parts.scheme}://{where}{parts.path}"
    if parts.query:
        text += f"?{REDACTED}"
    if parts.fragment:
        text += f"#{REDACTED}"
    return text


class RedactingFilter(logging.Filter):
    """A log filter that removes query-string credentials from every record's message.

    Installed on the handlers the command line sets up (see :func:`install_log_redaction`), so
    it covers the access log and every other logger alike.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact_query(message)
        if clean is not message and clean != message:
            record.msg, record.args = clean, None
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Add a :class:`RedactingFilter` to each handler of ``logger`` (the root by default)."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
