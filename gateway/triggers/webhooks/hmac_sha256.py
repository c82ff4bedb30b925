"""The ``hmac-sha256`` verifier: the generic scheme most other services use.

HMAC-SHA256 keyed with the secret's UTF-8 bytes, over the body, or over ``signed`` (a pattern of
``{body}``, ``{timestamp}`` and ``{id}``: ``"{timestamp}.{body}"`` by default when a
``timestamp_header`` is set). The signature is in ``header``, after ``prefix`` (``"sha256="``),
as ``encoding`` ``"hex"`` (the default) or ``"base64"``. The delivery id comes from
``id_header``, the event type from ``event_header`` or the payload's ``event_field`` (a dotted
path, ``"type"`` by default).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from gateway import hookimpl
from gateway.triggers.template import TemplateError, lookup
from gateway.triggers.webhooks.config import SCHEME_OPTIONS, WebhookConfig
from gateway.triggers.webhooks.verifier import Verifier, any_equal, bad_signature

_FIELDS = ("{body}", "{timestamp}", "{id}")


class HmacVerifier(Verifier):
    options = SCHEME_OPTIONS

    def __init__(self, config: WebhookConfig) -> None:
        super().__init__(config)
        if not config.header:
            raise ValueError("the hmac-sha256 verifier needs 'header' (the signature's header)")
        self.signature_header = config.header.lower()
        self.prefix = config.prefix or ""
        self.encoding = config.encoding or "hex"
        if self.encoding not in ("hex", "base64"):
            raise ValueError(f"encoding: expected 'hex' or 'base64', not {self.encoding!r}")
        self.timestamp_header = (config.timestamp_header or "").lower() or None
        self.signs_time = self.timestamp_header is not None
        self.id_header = (config.id_header or "").lower() or None
        self.event_header = (config.event_header or "").lower() or None
        self.event_path = tuple((config.event_field or "type").split("."))
        signed = config.signed or ("{timestamp}.{body}" if self.timestamp_header else "{body}")
        head, body, tail = signed.partition("{body}")
        if not body:
            raise ValueError("signed: the pattern must contain {body}")
        if "{timestamp}" in signed and not self.timestamp_header:
            raise ValueError("signed: {timestamp} needs 'timestamp_header'")
        if "{id}" in signed and not self.id_header:
            raise ValueError("signed: {id} needs 'id_header'")
        self.head, self.tail = head, tail

    def _part(self, pattern: str, stamp: str, msg_id: str) -> bytes:
        return pattern.replace("{timestamp}", stamp).replace("{id}", msg_id).encode()

    def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        given = self.header(headers, self.signature_header)
        stamp = self.header(headers, self.timestamp_header) if self.timestamp_header else ""
        if self.id_header and "{id}" in self.head + self.tail:
            self.header(headers, self.id_header)
        if not given.startswith(self.prefix):
            raise bad_signature()
        given = given[len(self.prefix) :].strip()
        message = self.signed(body, headers)
        if self.encoding == "hex":
            ok = any_equal(self.hex_digests(message), [given.lower().encode()])
        else:
            ok = any_equal([base64.b64encode(d) for d in self.digests(message)], [given.encode()])
        if not ok:
            raise bad_signature()
        if self.timestamp_header:
            self.check_time(stamp, now)

    def signed(self, body: bytes, headers: Mapping[str, str]) -> bytes:
        stamp = headers.get(self.timestamp_header, "") if self.timestamp_header else ""
        msg_id = headers.get(self.id_header, "") if self.id_header else ""
        return self._part(self.head, stamp, msg_id) + body + self._part(self.tail, stamp, msg_id)

    def event_type(self, payload: Any, headers: Mapping[str, str]) -> str:
        if self.event_header:
            return headers.get(self.event_header, "")
        try:
            found = lookup(payload, self.event_path)
        except TemplateError:
            return ""
        return found if isinstance(found, str) else ""

    def delivery_id(self, payload: Any, headers: Mapping[str, str]) -> str | None:
        return headers.get(self.id_header) if self.id_header else None


@hookimpl
def gateway_register_webhook_verifiers(register: Any) -> None:
    register("hmac-sha256", HmacVerifier)
