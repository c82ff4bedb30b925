"""The base class of backends whose upstream is an HTTP API answering JSON and streaming SSE.

:class:`HTTPBackend` owns what every such backend does alike: the pooled
:class:`~gateway.backends.upstream.Upstream` client (built from the config and the backend's
auth headers, started and closed with the app), JSON answers (with the protocol's errors
raised), and the SSE read loop (whole frames, the raw relay of the fast path, one read's events
handed on together, the checks at the end of a stream). A subclass keeps only what is its own:
the path, headers, request encoding, stream parser and error shape. The smallest one::

    class WordsBackend(HTTPBackend):
        chat_path = "/words"

        def encode_request(self, request):
            return orjson.dumps({"text": request.last_user_text()})

        def stream_parser(self, request):
            return WordsParser()  # feed(obj) -> events; finished
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Mapping
from contextlib import aclosing
from typing import Any, ClassVar, Protocol

import attrs
import orjson

from gateway.backends.base import Backend
from gateway.backends.upstream import Upstream
from gateway.canonical import ChatRequest, ChatResponse, Error, Event, Raw, Start, UsageEvent
from gateway.config.sections import BackendConfig
from gateway.config.types import ByteSize, Count, Duration, Url
from gateway.errors import GatewayError, UpstreamError
from gateway.exchange import Exchange
from gateway.streaming import model_name
from gateway.streaming.sse import FrameRelay, FrameSkip, SSEDecoder, SSEFrame


@attrs.frozen
class HTTPBackendConfig(BackendConfig):
    """Fields every HTTP upstream kind has."""

    base_url: Url
    api_key: str | None = None
    #: Extra headers sent with every upstream request.
    headers: dict[str, str] = attrs.Factory(dict)
    #: Longest wait to open a connection.
    connect_timeout: Duration = Duration(10.0)
    #: Longest wait for a stream's first content (text, reasoning or a tool call), or for the
    #: start of a whole (non-streamed) answer.
    first_byte_timeout: Duration = Duration(120.0)
    #: Longest silence between two reads once an answer has begun (a stream that stalls fails
    #: after it).
    read_timeout: Duration = Duration(60.0)
    #: Longest time for a whole answer, streamed or not.
    timeout: Duration = Duration(600.0)
    #: Largest answer accepted (a larger one is a failure, never held in memory whole).
    max_response_size: ByteSize = ByteSize(64 * 1024**2)
    #: Whether this upstream continues an answer from a trailing assistant message (a
    #: prefill): a stream cut after content was sent may then be continued here. Anthropic
    #: does; OpenAI's API does not (vLLM and llama.cpp servers can be set up to).
    accepts_prefill: bool = False
    #: Pooled connections kept to this upstream at most.
    max_connections: Count = Count(256)
    #: A pooled connection idle longer than this is closed rather than reused (keep it below
    #: the upstream's own keep-alive timeout; uvicorn's is 5s). Plain http:// upstreams only.
    idle_timeout: Duration = Duration(4.0)
    #: A PEM file of the certificate authorities an https:// upstream's certificate is checked
    #: against, instead of the system's (an internal CA). https:// upstreams only.
    ca_file: str | None = None


class StreamParser(Protocol):
    """Turns the JSON objects of one upstream stream's frames into canonical events."""

    #: Whether the answer reached its end (a stream that closes before is a failure).
    finished: bool

    def feed(self, obj: dict[str, Any]) -> list[Event]: ...


class HTTPBackend(Backend):
    """Base class of backends that talk to an HTTP upstream (JSON requests, SSE streams).

    Subclasses set :attr:`chat_path` and implement :meth:`encode_request` and
    :meth:`stream_parser`; they override :meth:`decode_response` when the upstream answers
    non-streamed requests too (otherwise :meth:`complete` folds a stream), :meth:`error` to
    recognise the protocol's error objects, and :meth:`auth_headers` /
    :meth:`request_headers` for what their upstream expects. A stream frame whose data is a
    JSON object goes to the parser; a frame that is not JSON is a failure unless
    :meth:`sentinel` knows it.
    """

    config: HTTPBackendConfig
    #: Where chat requests are POSTed, under the configured ``base_url``.
    chat_path: ClassVar[str] = "/chat/completions"

    def __init__(self, name: str, config: HTTPBackendConfig, gateway: Any) -> None:
        super().__init__(name, config, gateway)
        self.upstream = Upstream(name, config, self.auth_headers())
        cls = type(self)
        # Decided once, not per request: what the subclass overrides.
        self._folds_stream = cls.decode_response is HTTPBackend.decode_response
        self._headers = (
            None if cls.request_headers is HTTPBackend.request_headers else self.request_headers
        )
        #: Frames are JSON objects (frame_events is not overridden): read by their data alone.
        self._json_frames = cls.frame_events is HTTPBackend.frame_events
        #: The ``type`` of the only objects :meth:`error` can find an error in, when a subclass
        #: says so (its own error() only): other stream frames are not asked about.
        self._error_type: str | None = None
        if cls.stream is HTTPBackend.stream:
            self._stream_reads = self._reads

    async def start(self) -> None:
        await self.upstream.start()

    async def close(self) -> None:
        await self.upstream.close()

    # -- what subclasses say

    def auth_headers(self) -> dict[str, str]:
        """Headers sent with every request (besides the config's ``headers``): by default
        ``authorization: Bearer <api_key>`` when a key is configured."""
        key = self.config.api_key
        return {"authorization": f"Bearer {key}"} if key else {}

    def request_headers(self, request: ChatRequest) -> Mapping[str, str] | None:
        """Headers added to this request only (None: none)."""
        return None

    def path(self, request: ChatRequest) -> str:
        """Where ``request`` is POSTed: :attr:`chat_path`, unless a subclass serves other
        requests too (an OpenAI upstream's ``/completions``)."""
        return self.chat_path

    def relays(self, request: ChatRequest) -> bool:
        """Whether the upstream answers ``request`` in the client's own protocol, so its bytes
        may be relayed: by default when the request's protocol is :attr:`protocol`."""
        return self.protocol is not None and request.protocol == self.protocol

    def encode_request(self, request: ChatRequest) -> bytes:
        """The body of the upstream request for ``request`` (streamed when it asks to be)."""
        raise NotImplementedError

    def decode_response(self, obj: Any) -> ChatResponse:
        """A non-streamed answer's JSON as a response. Left as is, the upstream is only asked
        for streams and :meth:`complete` folds one."""
        raise NotImplementedError

    def stream_parser(self, request: ChatRequest) -> StreamParser:
        """A new parser for one streamed answer's frames."""
        raise NotImplementedError

    def error(self, obj: dict[str, Any]) -> GatewayError | None:
        """The error an answer or stream frame reports in the protocol's shape, if it is one."""
        return None

    def sentinel(self, data: str, parser: Any) -> bool:
        """Whether a stream frame that is not JSON is a known one to pass over (an OpenAI
        stream's ``[DONE]``); by default, only an empty one is."""
        return not data

    def unobserved(self) -> Callable[[bytes], bool] | FrameSkip | None:
        """For a relay that nobody observes (the fast path): a test of a frame's raw bytes that
        says it needs no parsing at all, or a :class:`~gateway.streaming.sse.FrameSkip` that can
        also answer for many frames at once (by default none: every frame is parsed)."""
        return None

    def stream_end(self, parser: Any, relay: bool) -> list[Event]:
        """Events after a streamed answer that finished (by default none)."""
        return []

    def stream_finished(self, parser: Any) -> bool:
        """Whether a stream that closed had reached its end (by default: the parser says so)."""
        return bool(parser.finished)

    # -- what the base does

    def json(self, data: bytes) -> Any:
        """An upstream answer's JSON; invalid JSON or the protocol's error raises."""
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamError(f"backend '{self.name}' answered with invalid JSON") from None
        if isinstance(obj, dict):
            err = self.error(obj)
            if err is not None:
                raise err
        return obj

    @staticmethod
    def renamed(body: bytes, asked: str, upstream: str | None = None) -> bytes:
        """An upstream's whole JSON answer, relayed to the client as it came but for its
        ``model``: the name the client asked for (``upstream``: the name the answer gives, when
        decoded; it finds the member faster)."""
        return model_name.in_body(body, asked, upstream)

    async def complete(self, request: ChatRequest, exchange: Exchange) -> ChatResponse:
        if self._folds_stream:
            return await super().complete(request, exchange)
        headers = self._headers
        data = await self.upstream.post(
            self.path(request),
            self.encode_request(request),
            exchange,
            headers(request) if headers is not None else None,
        )
        resp = self.decode_response(self.json(data))
        if self.relays(request):
            # Relayed as it came, but for the model: the name the client asked for.
            resp.raw = self.renamed(data, request.model, resp.model)
            resp.raw_protocol = request.protocol
        return resp

    async def stream(self, request: ChatRequest, exchange: Exchange) -> AsyncGenerator[Event, None]:
        """The upstream's SSE answer as canonical events, read by whole frames.

        A read's events are handed on together, all but the last marked ``more`` (the last too
        when the upstream's answer is all in: nothing is awaited after it). When the
        client speaks the upstream's protocol (``request.raw_relay``) each read's whole frames
        go first as a :class:`Raw` event and the parsed events are marked ``relayed``. The
        events end after an error; a stream that closes before the parser saw its end is one.
        """
        ev: Event | None = None
        async with aclosing(self._reads(request, exchange)) as reads:
            async for batch in reads:
                for ev in batch:
                    yield ev
                del batch  # nothing of a read is held while the next one waits
                ev = None

    async def _reads(
        self, request: ChatRequest, exchange: Exchange
    ) -> AsyncGenerator[list[Event], None]:
        """:meth:`stream`'s events, one list of them for each upstream read (never empty).

        The pipeline reads a backend whose :meth:`stream` is this class's so (see
        :attr:`Backend._stream_reads`): one resume of this generator a read, not one an event.
        """
        protocol = request.protocol
        relay = request.raw_relay and self.relays(request)
        # A relay nobody observes reads only the frames that end or fail the stream.
        skip = self.unobserved() if relay and not request.parse_relayed else None
        decoder = SSEDecoder(skip)
        # Without a skip, a read's frames are met by their data alone, parsed in one pass.
        by_data = skip is None and self._json_frames
        # Relayed frames say the model's name the client asked for, not the upstream's.
        frames = FrameRelay(request.model) if relay else None
        parser = self.stream_parser(request)
        upstream = self.upstream
        # Until the first content comes, reads are bounded by first_byte_timeout.
        until: float | None = upstream.first_content_deadline()
        size, limit = 0, upstream.max_size
        batch: list[Event] | None
        parsed: list[SSEFrame] | None
        # The body is not kept in this frame: the stream may stay open long after it is sent.
        async with upstream.stream(
            self.path(request),
            self.encode_request(request),
            exchange,
            self.request_headers(request),
        ) as resp:
            while True:
                try:
                    chunk = await upstream.read(resp, exchange, until)
                except GatewayError as err:
                    yield [Error(err)]
                    return
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    yield [Error(upstream.too_large())]
                    return
                if by_data:
                    batch = self._data_events(*decoder.feed_json(chunk), parser, relay)
                else:
                    parsed = decoder.feed(chunk)
                    if not parsed and skip is not None and frames is not None:
                        # A relay nobody observes, its read's frames all skipped (content
                        # only; most reads): the read's whole frames are all there is to hand on.
                        whole = frames.feed(chunk)
                        if whole:
                            until = None
                            ended = resp.content.at_eof()
                            yield [
                                Raw(
                                    whole,
                                    protocol,
                                    last=ended and not frames.pending,
                                    frames=decoder.completed,
                                    more=ended,
                                )
                            ]
                        chunk = whole = b""
                        continue
                    batch = self.frame_events(parsed, parser, relay)
                failed = bool(batch) and type(batch[-1]) is Error
                # The upstream's answer is all in: what follows comes without waiting.
                ended = not failed and resp.content.at_eof()
                _together(batch, ended)
                if frames is not None:
                    whole = frames.feed(chunk)
                    if failed:
                        # Only the frames before the failing one are relayed; the failure is
                        # the gateway's own error frame.
                        whole = self._sound_frames(whole)
                        batch[-1].relayed = False
                    if whole:
                        last = ended and not frames.pending
                        # The frames the decoder completed are those relayed (unless cut).
                        counted = 0 if failed else decoder.completed
                        batch.insert(0, Raw(whole, protocol, last=last, frames=counted, more=ended))
                if until is not None and _has_content(batch):
                    until = None
                if batch:
                    yield batch
                if failed:
                    return
                # Nothing of this read is held while the next one waits (an idle stream).
                chunk = whole = b""
                batch = parsed = None
            tail = _together(self.frame_events(decoder.end(), parser, relay), True)
            failed = bool(tail) and type(tail[-1]) is Error
            if failed:
                tail[-1].relayed = False  # its frame is not relayed (frames.end() is dropped)
            if frames is not None and not failed:
                closed = frames.end()
                if closed:
                    tail.insert(0, Raw(closed, protocol))
            if tail:
                yield tail
            if failed:
                return
            if not self.stream_finished(parser):
                yield [
                    Error(
                        UpstreamError(
                            f"backend '{self.name}' closed the stream before finishing its answer"
                        )
                    )
                ]
                return
            end = self.stream_end(parser, relay)
            if end:
                yield end

    def _sound_frames(self, whole: bytes) -> bytes:
        """The leading frames of a relayed read that failed which are well-formed JSON and no
        error (the ones before the failure), as bytes."""
        if b"\r" in whole:
            return b""  # rare line ends: relay nothing rather than risk half a frame
        end = 0
        for block in whole.split(b"\n\n")[:-1]:
            data = b"\n".join(
                line[5:].removeprefix(b" ") for line in block.split(b"\n") if line[:5] == b"data:"
            )
            if data:
                try:
                    obj = orjson.loads(data)
                except orjson.JSONDecodeError:
                    break
                if isinstance(obj, dict) and self.error(obj) is not None:
                    break
            end += len(block) + 2
        return whole[:end]

    def _data_events(
        self, parsed: bool, items: list[Any], parser: StreamParser, relay: bool
    ) -> list[Event]:
        """:meth:`frame_events` for frames given by their data alone (see
        :meth:`SSEDecoder.feed_json`): their JSON values when ``parsed`` (but for a last one
        given as bytes), else their data (bytes are parsed as they are)."""
        batch: list[Event] = []
        error = self.error
        feed = parser.feed
        loads = orjson.loads
        error_type = self._error_type
        for data in items:
            if parsed and type(data) is not bytes:
                obj = data
            else:
                if parsed:
                    obj = _NOT_JSON  # the end marker the one pass left out: not tried
                else:
                    try:
                        obj = loads(data)
                    except orjson.JSONDecodeError:
                        obj = _NOT_JSON
                if obj is _NOT_JSON:
                    # Not JSON (a sentinel, a malformed frame) or, as bytes, not UTF-8: as
                    # frame_events meets its text (it asks about end markers first).
                    text = data if type(data) is str else data.decode("utf-8", "replace")
                    events = self.frame_events([SSEFrame(None, text)], parser, relay)
                    batch += events
                    if events and type(events[-1]) is Error:
                        break
                    continue
            if type(obj) is not dict:
                continue
            if error_type is None or obj.get("type") == error_type:
                err = error(obj)
                if err is not None:
                    batch.append(Error(err, relayed=relay))
                    break
            events = feed(obj)
            if relay:
                for ev in events:
                    ev.relayed = True
            batch += events
        return batch

    def frame_events(
        self, frames: list[SSEFrame], parser: StreamParser, relay: bool
    ) -> list[Event]:
        """The canonical events of the frames one read completed; an error ends the list.

        Override it for an upstream whose frames are not JSON objects.
        """
        batch: list[Event] = []
        error = self.error
        for frame in frames:
            data = frame.data
            # A frame that is no JSON object is asked about first: the end of every OpenAI
            # stream (``[DONE]``) would otherwise cost an exception, which orjson makes as
            # ``json.JSONDecodeError`` does, in Python.
            if data[:1] != "{" and self.sentinel(data, parser):
                continue
            try:
                obj = orjson.loads(data)
            except orjson.JSONDecodeError:
                if self.sentinel(data, parser):
                    continue
                batch.append(
                    Error(UpstreamError(f"backend '{self.name}' sent a malformed stream frame"))
                )
                break
            if not isinstance(obj, dict):
                continue
            err = error(obj)
            if err is not None:
                batch.append(Error(err, relayed=relay))
                break
            events = parser.feed(obj)
            if relay:
                for ev in events:
                    ev.relayed = True
            batch += events
        return batch


#: What a frame's data is when it is not JSON (``None`` is JSON's null).
_NOT_JSON = object()


def _has_content(batch: list[Event]) -> bool:
    """Whether a read brought content: anything but the start, usage or a failure."""
    return any(type(ev) is not Start and type(ev) is not UsageEvent for ev in batch)


def _together(batch: list[Event], ended: bool) -> list[Event]:
    """Mark all but the last of one read's events ``more``, and the last too when the answer
    ``ended`` (no read follows): a writer sends them in one write, or with the end."""
    if batch:
        for ev in batch:
            ev.more = True
        batch[-1].more = ended
    return batch
