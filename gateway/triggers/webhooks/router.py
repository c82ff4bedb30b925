"""``WebhookRouter``: webhook handlers registered from Python, for an embedding application."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from gateway import hookimpl
from gateway.triggers.handlers import Handler
from gateway.triggers.service import service_for

if TYPE_CHECKING:
    from aiohttp import web

    from gateway import Gateway

F = TypeVar("F", bound=Callable[..., Any])


class WebhookRouter:
    """Handlers for webhooks, declared in Python; pass the router to ``create_app`` as a plugin::

        hooks = WebhookRouter()
        hooks.webhook("stripe", verifier="stripe", secret=os.environ["STRIPE_WEBHOOK_SECRET"])

        @hooks.on("stripe.payment_intent.succeeded")
        async def paid(payload, headers):
            ...

        hooks.agent("stripe.charge.refunded", agent="billing", prompt="Refund {data.object.id}")
        app = create_app(config, plugins=[hooks])

    ``"stripe.payment_intent.succeeded"`` is the webhook's name, then the event pattern (or pass
    ``webhook=`` and the pattern alone). The webhook itself may be a ``[webhooks.<name>]`` table
    instead of a :meth:`webhook` call.
    """

    def __init__(self, name: str = "webhook-router") -> None:
        self.name = name
        self.handlers: list[tuple[str, Handler]] = []
        self.declared: dict[str, dict[str, Any]] = {}

    def webhook(self, name: str, **config: Any) -> None:
        """Declare ``POST /webhooks/<name>`` with the options of a ``[webhooks.<name>]`` table."""
        self.declared[name] = config

    def on(
        self,
        event: str,
        *,
        webhook: str | None = None,
        agent: str | None = None,
        prompt: str | None = None,
    ) -> Callable[[F], F]:
        """Decorate a function (sync or async) called with ``(payload, headers)`` for each
        matching event; with ``agent``, what it returns fills ``prompt`` for a run of it."""

        def register(fn: F) -> F:
            name, pattern = _split(event, webhook)
            self.handlers.append((name, Handler(pattern, agent=agent, prompt=prompt, call=fn)))
            return fn

        return register

    def agent(
        self, event: str, *, agent: str, prompt: str | None = None, webhook: str | None = None
    ) -> None:
        """Run ``agent`` for each matching event, ``prompt`` filled from its payload."""
        name, pattern = _split(event, webhook)
        self.handlers.append((name, Handler(pattern, agent=agent, prompt=prompt)))

    @hookimpl
    def gateway_configure_app(self, app: web.Application, gateway: Gateway) -> None:
        service = service_for(gateway)
        for name, handler in self.handlers:
            service.webhook_handlers.setdefault(name, []).append(handler)
        service.webhook_declarations.update(self.declared)


def _split(event: str, webhook: str | None) -> tuple[str, str]:
    if webhook is not None:
        return webhook, event
    name, _, pattern = event.partition(".")
    if not name or not pattern:
        raise ValueError(
            f"{event!r}: name the webhook first ('stripe.payment_intent.succeeded'), "
            "or pass webhook="
        )
    return name, pattern
