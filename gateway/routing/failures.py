"""What a failed upstream attempt was: the one place that classifies failures for routing.

Every failure an attempt ends with is a :class:`~gateway.errors.GatewayError`; :func:`classify`
names it with one of :data:`~gateway.config.sections.FAILURE_REASONS`, which ``retry_on`` and
``fallback_on`` list:

- ``connect``: the upstream could not be reached; ``reset``: it closed the connection before any
  byte of an answer; ``timeout``: no answer (or no first content) in time;
- ``rate_limit`` (429), ``server`` (5xx, overloaded), ``auth`` (the gateway's own upstream
  credentials were refused: 401, 403);
- ``context_length``: the request is too long for this model (another may take it);
  ``content_policy``: the provider refused the content; ``client``: any other 4xx;
- ``stream``: a stream failed after it began (cut, stalled, malformed, unfinished).

The transport says what it knows in :attr:`GatewayError.failure`; the rest is read from the
status and the provider's message. Messages are never reworded here.
"""

from __future__ import annotations

from gateway.errors import GatewayError

#: Phrases of providers' context-length errors (OpenAI, Anthropic, vLLM, llama.cpp, Ollama...).
CONTEXT_LENGTH = (
    "context_length_exceeded",
    "context length",
    "context window",
    "maximum context",
    "prompt is too long",
    "input is too long",
    "too many tokens",
    "exceeds the context",
    "reduce the length",
)
#: Phrases of providers' content-policy refusals.
CONTENT_POLICY = (
    "content_policy",
    "content policy",
    "content_filter",
    "content management policy",
    "safety system",
    "usage policies",
    "flagged",
)


def classify(err: GatewayError) -> str:
    """The failure reason of ``err`` (one of ``FAILURE_REASONS``)."""
    if err.failure is not None:
        return err.failure
    status = err.upstream_status or err.status
    if err.kind == "timeout" or status in (408, 504):
        return "timeout"
    if status == 429 or err.kind == "rate_limit":
        return "rate_limit"
    if status in (401, 403):
        return "auth"
    if 400 <= status < 500:
        text = f"{err.message} {err.upstream_code or ''} {err.code or ''}".lower()
        if any(p in text for p in CONTEXT_LENGTH):
            return "context_length"
        if any(p in text for p in CONTENT_POLICY):
            return "content_policy"
        return "client"
    return "server"
