"""The per-request chain, compiled once: filters, routing, the backend call, bookkeeping.

Protocol adapters only decode and encode; everything between a decoded :class:`ChatRequest`
and the events or response they encode happens here, the same for every protocol.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from typing import TYPE_CHECKING

from gateway.canonical import (
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    Error,
    Event,
    Finish,
    UsageEvent,
)
from gateway.core.filters import Filter, overrides
from gateway.core.tokens import request_tokens
from gateway.errors import GatewayError, UpstreamError
from gateway.streaming.assembler import Assembler

if TYPE_CHECKING:
    from gateway.backends.base import Backend
    from gateway.core.exchange import Exchange
    from gateway.core.metrics import Metrics
    from gateway.core.router import Router

log = logging.getLogger(__name__)


class Pipeline:
    def __init__(self, router: Router, filters: Sequence[Filter], metrics: Metrics) -> None:
        ordered = sorted(filters, key=lambda f: f.order)
        self.router = router
        self.metrics = metrics
        self.request_filters = [f.on_request for f in ordered if overrides(f, "on_request")]
        self.event_filters = [f.on_event for f in ordered if overrides(f, "on_event")]
        self.response_filters = [f.on_response for f in ordered if overrides(f, "on_response")]
        self.success_hooks = [f.on_success for f in ordered if overrides(f, "on_success")]
        #: Same-protocol raw frames may be relayed only while no filter rewrites events.
        self.raw_relay = not self.event_filters
        #: Relayed frames need parsing into events only when a success hook reads them.
        self.parse_relayed = any(f.reads_relayed for f in ordered if overrides(f, "on_success"))

    async def prepare(self, req: ChatRequest, ex: Exchange) -> tuple[ChatRequest, Backend]:
        """Run request filters and route; returns the request as the filters left it (they may
        return a new one) and the backend that will answer. A filter may clear
        ``req.raw_relay`` to have its request's stream encoded by the gateway."""
        req.raw_relay = self.raw_relay
        req.parse_relayed = self.parse_relayed
        for flt in self.request_filters:
            changed = await flt(req, ex)
            if changed is not None:
                req = changed
                req.wire = None
        backend = self._route(req, ex)
        ex.stream = req.stream
        return req, backend

    def _route(self, req: ChatRequest | EmbeddingRequest, ex: Exchange) -> Backend:
        route = self.router.resolve(req.model, ex.principal)
        req.upstream_model = route.upstream_for(req.model)
        ex.model = route.name
        ex.backend = route.backend.label
        return route.backend

    async def embed(self, req: EmbeddingRequest, ex: Exchange) -> EmbeddingResponse:
        """Embeddings from the routed backend (chat filters do not apply to them)."""
        backend = self._route(req, ex)
        try:
            resp = await backend.embed(req, ex)
        except GatewayError as err:
            if err.code != "model_not_supported":
                self.metrics.upstream_error(ex.backend, err)
            raise
        ex.usage = resp.usage
        return resp

    async def count_tokens(self, req: ChatRequest, ex: Exchange) -> tuple[int, bool]:
        """The input tokens of ``req`` and whether the count is exact: the routed backend's
        count when its upstream can give one, else the gateway's estimate. Routing and key
        permissions apply; filters do not (nothing is generated)."""
        backend = self._route(req, ex)
        count = await backend.count_tokens(req, ex)
        if count is not None:
            return count, True
        return request_tokens(req), False

    async def complete(self, req: ChatRequest, ex: Exchange) -> ChatResponse:
        """A whole answer. Raises :class:`GatewayError` on failure."""
        req, backend = await self.prepare(req, ex)
        try:
            resp = await backend.complete(req, ex)
        except GatewayError as err:
            self.metrics.upstream_error(ex.backend, err)
            raise
        for flt in self.response_filters:
            changed = await flt(req, resp, ex)
            if changed is not None:
                resp = changed
                resp.raw = None
        ex.usage = resp.usage
        for hook in self.success_hooks:
            await hook(req, resp, ex)
        return resp

    async def stream(self, req: ChatRequest, ex: Exchange) -> AsyncIterator[Event]:
        """A streamed answer as events, filters applied.

        Failures before the first event raise :class:`GatewayError` (the adapter can still send
        a plain error response); later ones arrive as an :class:`Error` event, and the stream
        always ends with a :class:`Finish` or an :class:`Error`, never silently.
        """
        req, backend = await self.prepare(req, ex)
        assembler = Assembler(req.model) if self.success_hooks else None
        filters = self.event_filters
        finished = sent = False
        try:
            async with aclosing(backend.stream(req, ex)) as events:
                async for ev in events:
                    for flt in filters:
                        ev = flt(ev, ex)
                        if ev is None:
                            break
                    if ev is None:
                        continue
                    t = type(ev)
                    if t is Finish:
                        finished = True
                    elif t is UsageEvent:
                        ex.usage = ev.usage  # type: ignore[attr-defined]
                    elif t is Error:
                        self.metrics.upstream_error(ex.backend, ev.error)  # type: ignore[attr-defined]
                        yield ev
                        return
                    if assembler is not None:
                        assembler.add(ev)
                    sent = True
                    yield ev
        except GatewayError as err:
            self.metrics.upstream_error(ex.backend, err)
            if not sent:
                raise
            yield Error(err)
            return
        if not finished:
            err = UpstreamError("the backend ended the stream without finishing its answer")
            self.metrics.upstream_error(ex.backend, err)
            yield Error(err)
            return
        if assembler is not None:
            resp = assembler.response()
            try:
                for hook in self.success_hooks:
                    await hook(req, resp, ex)
            except GatewayError as err:
                # E.g. the session store could not keep the turn: the client must know, and
                # the answer's bytes are out already, so it is the protocol's error frame.
                yield Error(err)
