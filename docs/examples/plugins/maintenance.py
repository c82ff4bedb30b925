"""A plugin's own configuration section: ``[maintenance]`` answers chat requests with 503.

The section is a frozen attrs class: its defaults apply when the file leaves it out, unknown
keys are errors, and a bad value stops the start with its path (``maintenance.retry_after:
...``). Use the value types ``gateway`` exports (``Duration``, ``ByteSize``, ``Count``,
``Url``) so every file reads alike; the section appears in ``hookgate check`` like the
built-in ones::

    [maintenance]
    enabled = true
    message = "Back at 14:00 UTC."
    retry_after = "30m"
    models = ["gpt-4o"]       # only these; empty: every model
"""

from __future__ import annotations

import attrs

from gateway import (
    ChatRequest,
    Duration,
    Exchange,
    Filter,
    Gateway,
    RegisterFilter,
    RegisterSection,
    Unavailable,
    hookimpl,
)


@attrs.frozen
class MaintenanceConfig:
    """``[maintenance]``: switch models off for a while, saying when to come back."""

    enabled: bool = False
    message: str = "The service is down for maintenance."
    #: What the Retry-After header says.
    retry_after: Duration = Duration(600.0)
    #: The models under maintenance; empty: all of them.
    models: tuple[str, ...] = ()


class Maintenance(Filter):
    order = -100  # before the other filters: nothing else need run

    def __init__(self, config: MaintenanceConfig) -> None:
        self.config = config
        self.models = frozenset(config.models)

    async def on_request(self, request: ChatRequest, exchange: Exchange) -> ChatRequest | None:
        if not self.models or request.model in self.models:
            raise Unavailable(
                self.config.message, code="maintenance", retry_after=self.config.retry_after
            )
        return None


@hookimpl
def gateway_config_sections(register: RegisterSection) -> None:
    register("maintenance", MaintenanceConfig)


@hookimpl
def gateway_register_filters(register: RegisterFilter) -> None:
    def factory(gateway: Gateway) -> Maintenance | None:
        config: MaintenanceConfig = gateway.config.section("maintenance")
        return Maintenance(config) if config.enabled else None  # off: no cost per request

    register("maintenance", factory)
