"""hookgate-example: a template for hookgate plugins.

It adds a backend kind, ``reverse`` (answers with the last user message backwards), a request
filter, ``shout`` (upper-cases what users say before any backend sees it), and the config
section ``[shout]`` that switches the filter. Copy this distribution to start your own.
"""

from __future__ import annotations

import attrs

from gateway import Backend, Filter, Finish, Start, TextDelta, TextPart, Usage, UsageEvent, hookimpl


class ReverseBackend(Backend):
    """``[backends.<name>] kind = "reverse"``: no upstream, just the prompt backwards."""

    async def stream(self, request, exchange):
        text = request.last_user_text()[::-1]
        yield Start(model=request.upstream_model)
        for i in range(0, len(text), 4):  # stream it four characters at a time
            yield TextDelta(text[i : i + 4])
        yield UsageEvent(Usage(input_tokens=len(request.last_user_text()), output_tokens=len(text)))
        yield Finish("stop")


@attrs.frozen
class ShoutConfig:
    """``[shout]``: ``enabled = false`` turns the filter off."""

    enabled: bool = True


class Shout(Filter):
    async def on_request(self, request, exchange):
        for message in request.messages:
            if message.role == "user":
                for part in message.parts:
                    if isinstance(part, TextPart):
                        part.text = part.text.upper()
        return request  # returned: the request was changed


@hookimpl
def gateway_config_sections(register):
    register("shout", ShoutConfig)


@hookimpl
def gateway_register_backends(register):
    register("reverse", ReverseBackend)


@hookimpl
def gateway_register_filters(register):
    register("shout", lambda gateway: Shout() if gateway.config.section("shout").enabled else None)
