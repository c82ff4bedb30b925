"""A guardrail filter: answers that say a blocked word are cut off, and every caller's output
tokens are counted, whatever became of the request.

``on_event`` is async, so it may await a moderation service; this one checks a word list. A
blocked word ends a stream with the protocol's error frame and a whole answer with a 422.
``on_end`` runs once at the end of every request, also when it failed or the client left::

    [guardrail]
    blocked = ["password", "secret"]
"""

from __future__ import annotations

import logging
from collections import Counter

import attrs

from gateway import (
    ChatRequest,
    ChatResponse,
    Event,
    Exchange,
    Filter,
    Gateway,
    Outcome,
    RegisterFilter,
    RegisterSection,
    TextDelta,
    Unprocessable,
    hookimpl,
)

log = logging.getLogger(__name__)


@attrs.frozen
class GuardrailConfig:
    """``[guardrail]``: no words (the default) leaves the filter off."""

    blocked: tuple[str, ...] = ()


class Guardrail(Filter):
    name = "guardrail"

    def __init__(self, config: GuardrailConfig) -> None:
        self.blocked = [word.lower() for word in config.blocked]
        self.longest = max(map(len, self.blocked))
        #: Output tokens per caller (a real plugin would write them to its ledger).
        self.tokens: Counter[str] = Counter()

    async def check(self, text: str) -> None:
        # An async moderation call fits here: `verdict = await moderation.check(text)`.
        lowered = text.lower()
        if any(word in lowered for word in self.blocked):
            raise Unprocessable("The answer was withheld by the content policy.", code="blocked")

    async def on_event(self, event: Event, exchange: Exchange) -> Event | None:
        if isinstance(event, TextDelta):
            # The end of the text sent so far, so a word split across two deltas is caught.
            text = ((exchange.notes or {}).get(self, "")) + event.text
            exchange.note(self, text[-self.longest :])
            await self.check(text)
        return event

    async def on_response(
        self, request: ChatRequest, response: ChatResponse, exchange: Exchange
    ) -> ChatResponse | None:
        await self.check(response.message.text())  # a whole answer has no events
        return None

    async def on_end(self, request: ChatRequest, exchange: Exchange, outcome: Outcome) -> None:
        # The upstream's count when it gave one, else an estimate of what the client was sent.
        used = outcome.usage.output_tokens if outcome.usage else outcome.output_tokens
        self.tokens[exchange.principal.id] += used
        if outcome.status != "success":
            log.info("request %s ended: %s", exchange.request_id, outcome.status)


@hookimpl
def gateway_config_sections(register: RegisterSection) -> None:
    register("guardrail", GuardrailConfig)


@hookimpl
def gateway_register_filters(register: RegisterFilter) -> None:
    def factory(gateway: Gateway) -> Guardrail | None:
        config: GuardrailConfig = gateway.config.section("guardrail")
        return Guardrail(config) if config.blocked else None

    register("guardrail", factory)
