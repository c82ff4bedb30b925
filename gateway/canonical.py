"""The canonical model every protocol decodes into and every backend speaks.

N protocols and M backends need N + M translators through this module, not N x M. A request
is a :class:`ChatRequest` of :class:`Message` objects made of typed parts; an answer is either a
:class:`ChatResponse` or a stream of :class:`Event` objects. Anything a protocol can say that has
no canonical field is kept in an ``extra`` mapping, tagged by the protocol the request arrived in,
so a same-protocol upstream receives it unchanged.

Classes are slotted and mutable: they are built on the hot path, and filters may edit them.
Encoders skip event types they do not handle: that is how the activity of tools the gateway runs
itself (:class:`ToolRunStart` ... :class:`ToolResult`) reaches the protocols that can show it
(AG-UI) and stays out of those that cannot (an OpenAI client would try to run such a call).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, TypeAlias, final

import attrs

if TYPE_CHECKING:
    from gateway.errors import GatewayError

JSON: TypeAlias = Any
Role: TypeAlias = Literal["system", "developer", "user", "assistant", "tool"]
ToolChoiceMode: TypeAlias = Literal["auto", "none", "required", "tool"]
#: What an embedding request embeds: a text, texts, a token array or token arrays.
EmbeddingInput: TypeAlias = str | list[str] | list[int] | list[list[int]]

#: Canonical finish reasons. ``stop_sequence`` is ``stop`` with the matched sequence known.
FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter", "stop_sequence"})


# --- message parts ---------------------------------------------------------------------------


@final
@attrs.define(slots=True)
class TextPart:
    """Plain text. ``extra`` keeps protocol fields such as Anthropic's ``cache_control``."""

    text: str
    extra: dict[str, JSON] | None = None


@final
@attrs.define(slots=True)
class ImagePart:
    """An image given either by ``url`` (http(s) or ``data:`` URL) or by base64 ``data``."""

    url: str | None = None
    data: str | None = None
    media_type: str | None = None
    detail: str | None = None
    extra: dict[str, JSON] | None = None

    def as_url(self) -> str:
        """The image as one URL, turning inline data into a ``data:`` URL."""
        if self.url is not None:
            return self.url
        return f"data:{self.media_type or 'image/png'};base64,{self.data or ''}"


@final
@attrs.define(slots=True)
class ToolCallPart:
    """A tool call the assistant made. ``arguments`` is JSON text, exactly as streamed."""

    id: str
    name: str
    arguments: str = "{}"
    extra: dict[str, JSON] | None = None


@final
@attrs.define(slots=True)
class ToolResultPart:
    """The result of one tool call: text, or a list of parts (text and images)."""

    call_id: str
    content: str | list[Part]
    is_error: bool = False
    extra: dict[str, JSON] | None = None

    def text(self) -> str:
        """The result's text, joined when it is a list of parts."""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content if isinstance(p, TextPart))


@final
@attrs.define(slots=True)
class ReasoningPart:
    """Model reasoning (Anthropic ``thinking``, OpenAI-compatible ``reasoning_content``)."""

    text: str
    signature: str | None = None
    extra: dict[str, JSON] | None = None


@final
@attrs.define(slots=True)
class OpaquePart:
    """A part with no canonical equivalent (audio, files, ...), kept for same-protocol upstreams."""

    protocol: str
    data: dict[str, JSON]


Part: TypeAlias = TextPart | ImagePart | ToolCallPart | ToolResultPart | ReasoningPart | OpaquePart


@attrs.define(slots=True)
class Message:
    """One turn of a conversation.

    Roles follow OpenAI: system and developer instructions, user, assistant, and ``tool`` for one
    tool result (a single :class:`ToolResultPart`). Protocols that group results differently
    (Anthropic puts them in a user turn) regroup them when encoding.
    """

    role: Role
    parts: list[Part] = attrs.Factory(list)
    name: str | None = None
    extra: dict[str, JSON] | None = None

    def text(self) -> str:
        """The text parts of the message, joined."""
        return "".join(p.text for p in self.parts if type(p) is TextPart)

    def tool_calls(self) -> list[ToolCallPart]:
        return [p for p in self.parts if type(p) is ToolCallPart]


@attrs.define(slots=True)
class Tool:
    """A function the model may call; ``parameters`` is its JSON schema."""

    name: str
    description: str | None = None
    parameters: dict[str, JSON] | None = None
    strict: bool | None = None
    extra: dict[str, JSON] | None = None


@attrs.define(slots=True)
class ToolChoice:
    """``auto``, ``none``, ``required`` (any tool), or ``tool`` with the tool's ``name``.

    ``allowed`` names the only tools the model may call (OpenAI's ``allowed_tools``: the others
    stay in the prompt, for its cache); an encoder whose protocol lacks that sends only those.
    """

    mode: ToolChoiceMode
    name: str | None = None
    allowed: list[str] | None = None


@attrs.define(slots=True)
class Usage:
    """Token counts. ``input_tokens`` counts every prompt token, cached ones included (as
    OpenAI's ``prompt_tokens`` does); ``cache_read_tokens`` and ``cache_write_tokens`` say how
    many of them were read from or written to a prompt cache (Anthropic reports those apart).
    ``details`` keeps the protocol's finer breakdown (reasoning tokens, server tool use)."""

    input_tokens: int = 0
    output_tokens: int = 0
    details: dict[str, JSON] | None = None
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@attrs.define(slots=True)
class ChatRequest:
    """A request for one assistant turn, whatever protocol it arrived in.

    ``protocol`` names the client's protocol; ``extra`` holds its fields that have no canonical
    counterpart, and ``headers`` the protocol headers a same-protocol upstream needs too (such
    as ``anthropic-beta``). ``wire`` is the decoded wire body: a backend that speaks the same
    protocol may send it as-is (with the upstream model name) instead of re-encoding, and the
    pipeline clears it as soon as a filter or the session store changes the request.
    ``raw_relay`` tells a backend of the same protocol that it may relay the upstream's raw
    stream frames (see :class:`Raw`); ``parse_relayed`` that what it relays must also be parsed
    into events, because something (a success hook) looks at them. When it is false, a
    relaying backend may skip frames that carry only content and parse just what ends or fails
    the stream (:class:`Finish`, :class:`UsageEvent`, :class:`Error`).

    ``response_format`` is in Chat Completions' shape (``json_schema`` with its ``name`` and
    ``schema``, ``json_object`` or ``text``), whatever protocol it came in. Reasoning is asked
    for by ``reasoning_effort`` (``none``, ``minimal``, ``low``, ``medium``, ``high``,
    ``xhigh``) or by a token budget, ``reasoning_budget`` (Anthropic's ``budget_tokens``);
    each encoder turns whichever it got into its protocol's form.
    """

    model: str
    messages: list[Message]
    protocol: str
    stream: bool = False
    include_usage: bool = False
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: list[str] | None = None
    seed: int | None = None
    response_format: dict[str, JSON] | None = None
    reasoning_effort: str | None = None
    reasoning_budget: int | None = None
    user: str | None = None
    metadata: dict[str, JSON] | None = None
    session_id: str | None = None
    extra: dict[str, JSON] | None = None
    wire: dict[str, JSON] | None = None
    upstream_model: str | None = None
    raw_relay: bool = False
    headers: dict[str, str] | None = None
    parse_relayed: bool = True

    def system_text(self) -> str:
        """System and developer instructions, joined by blank lines."""
        return "\n\n".join(m.text() for m in self.messages if m.role in ("system", "developer"))

    def last_user_text(self) -> str:
        for m in reversed(self.messages):
            if m.role == "user":
                return m.text()
        return ""


@attrs.define(slots=True)
class ChatResponse:
    """A complete (non-streamed) assistant turn.

    ``raw`` is the upstream's body when the upstream spoke ``raw_protocol``; the adapter of that
    protocol sends it unchanged (the fast path) unless a filter rewrote the response.
    """

    id: str
    model: str
    message: Message
    finish_reason: str = "stop"
    stop_sequence: str | None = None
    usage: Usage | None = None
    created: int = 0
    raw: bytes | None = None
    raw_protocol: str | None = None
    extra: dict[str, JSON] | None = None


# --- embeddings --------------------------------------------------------------------------------


@attrs.define(slots=True)
class EmbeddingRequest:
    """Texts (or token arrays) to embed. ``encoding_format`` is what the client wants back:
    ``float`` lists, or ``base64`` (little-endian float32 bytes, base64-encoded)."""

    model: str
    input: EmbeddingInput
    protocol: str
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None
    extra: dict[str, JSON] | None = None
    wire: dict[str, JSON] | None = None
    upstream_model: str | None = None


@attrs.define(slots=True)
class EmbeddingResponse:
    """Embedding vectors, one per input, in order.

    A backend fills ``vectors`` (float lists) or ``base64`` (the encoded form), whichever it has;
    the protocol converts to what the client asked for. ``raw`` is an upstream body already in
    the client's protocol and encoding, sent unchanged.
    """

    model: str
    vectors: list[list[float]] | None = None
    base64: list[str] | None = None
    usage: Usage | None = None
    raw: bytes | None = None
    raw_protocol: str | None = None


# --- stream events ---------------------------------------------------------------------------


@attrs.define(slots=True)
class Event:
    """Base of stream events.

    ``relayed`` marks an event parsed from upstream frames that a :class:`Raw` event already
    carries: observers (sessions, metrics) see it, encoders skip it. ``more`` says another event
    follows at once (the same upstream read brought both), or, on the last event of the read
    that completed the upstream's answer, that nothing is awaited after it: a writer may hold
    this one's bytes and send them with the next (or the end), one write per read rather than
    one per event.
    """

    relayed: bool = attrs.field(default=False, kw_only=True)
    more: bool = attrs.field(default=False, kw_only=True)


@final
@attrs.define(slots=True)
class Start(Event):
    """An assistant message begins: its id, model and creation time, when known (first event).

    A backend that answers in several messages (an agent: one per model step, with tool runs in
    between) sends one ``Start`` per message, each with its own id. Protocols whose answer is a
    single message keep the first and ignore the others.
    """

    id: str | None = None
    model: str | None = None
    created: int | None = None


@final
@attrs.define(slots=True)
class TextDelta(Event):
    text: str


@final
@attrs.define(slots=True)
class ReasoningDelta(Event):
    text: str = ""
    signature: str | None = None


@final
@attrs.define(slots=True)
class ToolCallStart(Event):
    """A tool call opens. ``index`` is its position among this turn's tool calls (0, 1, ...)."""

    index: int
    id: str
    name: str


@final
@attrs.define(slots=True)
class ToolCallDelta(Event):
    """A fragment of a tool call's JSON arguments."""

    index: int
    arguments: str


@final
@attrs.define(slots=True)
class ToolCallEnd(Event):
    index: int


@final
@attrs.define(slots=True)
class ToolRunStart(Event):
    """The model called a tool the gateway runs itself (an agent's tool), identified by ``id``.

    Unlike :class:`ToolCallStart`, this call is not part of the answer a client must act on:
    protocols that cannot show server-side tool activity skip it, its deltas, its end and the
    :class:`ToolResult` that follows.
    """

    id: str
    name: str


@final
@attrs.define(slots=True)
class ToolRunDelta(Event):
    """A fragment of the JSON arguments of a :class:`ToolRunStart` call."""

    id: str
    arguments: str


@final
@attrs.define(slots=True)
class ToolRunEnd(Event):
    id: str


@final
@attrs.define(slots=True)
class ToolResult(Event):
    """The result of a tool the gateway ran itself (agents); ``is_error`` when it failed."""

    call_id: str
    content: str
    is_error: bool = False
    name: str | None = None


@final
@attrs.define(slots=True)
class UsageEvent(Event):
    usage: Usage


@final
@attrs.define(slots=True)
class Finish(Event):
    """The turn ended normally, for ``reason`` (one of :data:`FINISH_REASONS`)."""

    reason: str = "stop"
    stop_sequence: str | None = None


@final
@attrs.define(slots=True)
class Error(Event):
    """The stream failed. Encoders turn it into the protocol's error frame; never a normal end."""

    error: GatewayError


@final
@attrs.define(slots=True)
class Raw(Event):
    """Upstream bytes to send unchanged to a client of the same ``protocol`` (the fast path).

    ``last`` says the upstream's answer ended with these bytes: a writer may hold them and send
    them with the end of the response, in one write rather than two. ``frames`` is how many SSE
    frames ``data`` holds, when whoever made the event counted them (``0``: not counted).
    """

    data: bytes
    protocol: str
    last: bool = False
    frames: int = 0
