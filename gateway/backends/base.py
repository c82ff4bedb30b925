"""What a model backend is: a small class with a name and two methods.

A backend kind is registered with ``gateway_register_backends``; the gateway makes one instance
per ``[backends.<name>]`` table at startup and calls :meth:`Backend.start` and
:meth:`Backend.close` with the application's lifetime.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, aclosing
from typing import TYPE_CHECKING, Any, ClassVar

from gateway.canonical import ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse, Event
from gateway.errors import BadRequest, UpstreamError
from gateway.streaming.assembler import Assembler

if TYPE_CHECKING:
    import aiohttp

    from gateway.core.app import Gateway
    from gateway.exchange import Exchange


class Backend:
    """Base class of model backends.

    Subclasses implement :meth:`stream` and, when their upstream has a cheaper non-streaming
    call, :meth:`complete` (by default it folds :meth:`stream`). Both raise
    :class:`~gateway.errors.GatewayError` for failures known before the first event (the client
    then gets a plain error response); a failure after that is an
    :class:`~gateway.canonical.Error` event, which protocols turn into their error frame.
    """

    #: The ``kind`` this class serves (informational; registration decides).
    kind: ClassVar[str] = ""
    #: The wire protocol the upstream speaks, if any. When it equals the client's protocol and
    #: ``request.raw_relay`` is set, the backend may relay raw upstream frames (the fast path).
    protocol: ClassVar[str | None] = None

    #: The backend's stream as one list of events for each upstream read, when it has that form
    #: (an HTTP upstream whose :meth:`stream` is not overridden); the pipeline then resumes one
    #: generator a read rather than one an event. ``None``: :meth:`stream` is all there is.
    _stream_reads: Callable[[ChatRequest, Exchange], AsyncGenerator[list[Event], None]] | None = (
        None
    )

    def __init__(self, name: str, config: Any, gateway: Gateway) -> None:
        self.name = name
        self.config = config
        self.gateway = gateway
        #: ``"<kind>:<name>"``, as metrics and the ``x-hookgate-backend`` header show it.
        self.label = f"{getattr(config, 'kind', self.kind)}:{name}"

    async def start(self) -> None:
        """Open resources (client sessions, connections). Called once at application startup."""

    async def close(self) -> None:
        """Release what :meth:`start` opened. Called once at application shutdown."""

    def stream(self, request: ChatRequest, exchange: Exchange) -> AsyncGenerator[Event, None]:
        """Answer ``request`` as an async iterator of canonical events, ending in a
        :class:`~gateway.canonical.Finish` or an :class:`~gateway.canonical.Error`."""
        raise NotImplementedError

    async def complete(self, request: ChatRequest, exchange: Exchange) -> ChatResponse:
        """Answer ``request`` as one response. The default folds :meth:`stream`."""
        assembler = Assembler(request.upstream_model or request.model)
        async with aclosing(self.stream(request, exchange)) as events:
            async for event in events:
                assembler.add(event)
        if assembler.error is not None:
            raise assembler.error
        if not assembler.finished:
            raise UpstreamError("the backend ended its answer without finishing it")
        return assembler.response()

    async def embed(self, request: EmbeddingRequest, exchange: Exchange) -> EmbeddingResponse:
        """Embed ``request.input``. Backends that cannot embed keep this default: a 400 naming
        the model."""
        raise BadRequest(
            f"The model '{request.model}' does not support embeddings.",
            param="model",
            code="model_not_supported",
        )

    def relay(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes | AsyncIterator[bytes] | None,
        exchange: Exchange,
    ) -> AbstractAsyncContextManager[aiohttp.ClientResponse]:
        """Send a request of an endpoint the gateway does not model (audio, images, files, ...)
        to the upstream as it came, ``path`` under its ``/v1``; the answer is open inside the
        block (an error status raises :class:`~gateway.errors.GatewayError` first). Backends
        that cannot (the default) refuse with a 400 ``model_not_supported``."""
        raise BadRequest(
            f"The backend '{self.name}' does not serve {path}.",
            param="model",
            code="model_not_supported",
        )

    async def list_models(self, exchange: Exchange) -> list[str] | None:
        """The model names the upstream serves, from its own model list, or ``None`` (the
        default) when it has none. ``/v1/models`` lists those its glob routes match."""
        return None

    async def count_tokens(self, request: ChatRequest, exchange: Exchange) -> int | None:
        """The exact input token count of ``request`` when the upstream can count it, or
        ``None`` (the default) to let the gateway estimate (see :mod:`gateway.core.tokens`)."""
        return None
