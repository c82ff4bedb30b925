"""The built-in ``webhooks`` plugin: ``POST /webhooks/{name}`` for each ``[webhooks.<name>]``.

A delivery goes: size limit (413) -> signature on the raw bytes, timestamp within the tolerance
(401 and nothing else otherwise) -> parse -> an immediate answer if the scheme asks for one
(Slack's URL verification) -> de-duplication through the shared trigger state, by delivery id
and by what the signature covers (a delivery already accepted by any instance, or the same
signed body and timestamp under another delivery id or none, is acknowledged, 200, and not run
again) -> the handlers matching its type are queued (202 with the ids of the runs they start;
503 with ``retry-after`` when the queue is full) and run in the background.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import TYPE_CHECKING, Any

import attrs
from aiohttp import web
from prometheus_client import Counter

from gateway import (
    BadRequest,
    ConfigError,
    NotFound,
    PayloadTooLarge,
    Principal,
    Unauthorized,
    Unavailable,
    format_errors,
    hookimpl,
    json_response,
    make_converter,
    read_body,
)
from gateway.triggers.handlers import Handler, TriggerEvent
from gateway.triggers.service import TriggerService, service_for
from gateway.triggers.webhooks.config import WebhookConfig
from gateway.triggers.webhooks.verifier import Rejected, Verifier

if TYPE_CHECKING:
    from gateway import Gateway

log = logging.getLogger(__name__)

#: Seconds a sender is asked to wait when the handler queue is full.
BUSY_RETRY_AFTER = 5.0


@attrs.define
class Webhook:
    """One compiled webhook."""

    name: str
    config: WebhookConfig
    verifier: Verifier
    handlers: list[Handler]
    owner: Principal


class Webhooks:
    """The endpoint and its compiled webhooks."""

    def __init__(self, service: TriggerService, hooks: dict[str, Webhook]) -> None:
        self.service = service
        self.hooks = hooks
        registry = service.gateway.metrics.registry
        self.requests = Counter(
            "hookgate_webhook_requests",
            "Webhook deliveries by webhook and outcome (accepted, duplicate, replay, ignored, "
            "challenge, rejected, too_large, busy, bad_payload).",
            ["webhook", "outcome"],
            registry=registry,
        )
        self.rejections = Counter(
            "hookgate_webhook_rejections",
            "Webhook deliveries refused with 401, by webhook and reason (missing_signature, "
            "bad_signature, stale, ...).",
            ["webhook", "reason"],
            registry=registry,
        )

    async def receive(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        hook = self.hooks.get(name)
        if hook is None:
            raise NotFound(f"No webhook named '{name}'.", code="webhook_not_found")
        body = await self._body(request, hook)
        try:
            hook.verifier.verify(body, request.headers, time.time())
        except Rejected as rejected:
            self.requests.labels(name, "rejected").inc()
            self.rejections.labels(name, rejected.reason).inc()
            log.warning(
                "webhook %s: refused a delivery from %s: %s",
                name,
                request.remote,
                rejected.message,
            )
            raise Unauthorized(rejected.message, code=rejected.reason) from None
        try:
            payload = hook.verifier.parse(body, request.headers)
        except ValueError:
            self.requests.labels(name, "bad_payload").inc()
            raise BadRequest("The body is neither JSON nor a form.", code="bad_payload") from None
        answer = hook.verifier.answer(payload)
        if answer is not None:
            self.requests.labels(name, "challenge").inc()
            return json_response(answer)
        event = TriggerEvent(
            f"webhook:{name}",
            hook.verifier.event_type(payload, request.headers),
            payload,
            {k.lower(): v for k, v in request.headers.items()},
            hook.verifier.delivery_id(payload, request.headers),
        )
        content = hook.verifier.signed(body, request.headers)
        signed = hashlib.sha256(content).hexdigest() if content is not None else None
        return await self._accept(hook, event, signed, request.remote)

    async def _accept(
        self, hook: Webhook, event: TriggerEvent, signed: str | None, peer: str | None
    ) -> web.Response:
        service, name = self.service, hook.name
        ids, contents = f"webhook/{name}", f"webhook/{name}/signed"
        if event.id is not None:
            fresh = await service.state.first_seen(ids, event.id, hook.config.dedupe_ttl)
            if not fresh:
                plan = service.plan(event, hook.handlers, hook.owner, quiet=True)
                self.requests.labels(name, "duplicate").inc()
                log.info("webhook %s: delivery %s again: acknowledged, not run", name, event.id)
                return self._reply(200, "duplicate", event, plan.run_ids)
        # The delivery id is not always signed (GitHub's is not; a Slack slash command has
        # none): the same signed content under another id, or none, is a replay.
        if signed is not None and not await service.state.first_seen(
            contents, signed, hook.verifier.replay_window()
        ):
            if event.id is not None:
                await service.state.forget(ids, event.id)
            self.requests.labels(name, "replay").inc()
            log.warning(
                "webhook %s: a delivery from %s repeats the signed content of one already "
                "accepted (delivery id %s): acknowledged, not run",
                name,
                peer,
                event.id or "none",
            )
            return self._reply(200, "duplicate", event, [])
        plan = service.plan(event, hook.handlers, hook.owner)
        jobs = plan.jobs
        if not plan.matched:
            self.requests.labels(name, "ignored").inc()
            return self._reply(200, "ignored", event, [])
        runner = service.runner
        if runner.queue.maxsize - runner.queue.qsize() < len(jobs) or runner.closed:
            # let the retry run
            if event.id is not None:
                await service.state.forget(ids, event.id)
            if signed is not None:
                await service.state.forget(contents, signed)
            self.requests.labels(name, "busy").inc()
            raise Unavailable(
                "Too many webhook deliveries are waiting to be handled; retry later.",
                code="busy",
                retry_after=BUSY_RETRY_AFTER,
            )
        for job in jobs:
            runner.offer(job)
        self.requests.labels(name, "accepted").inc()
        return self._reply(202, "accepted", event, plan.run_ids, plan.failed)

    def _reply(
        self, status: int, outcome: str, event: TriggerEvent, run_ids: list[str], failed: int = 0
    ) -> web.Response:
        body: dict[str, Any] = {"status": outcome, "event": event.type, "id": event.id}
        body["runs"] = run_ids
        if failed:
            body["failed"] = failed  # handlers that could not start; logged and counted
        headers = {"x-hookgate-run-id": ", ".join(run_ids)} if run_ids else None
        return json_response(body, status=status, headers=headers)

    async def _body(self, request: web.Request, hook: Webhook) -> bytes:
        limit = hook.config.max_body_size
        try:
            return await read_body(request, limit)  # with the server's body timeout
        except PayloadTooLarge:
            self.requests.labels(hook.name, "too_large").inc()
            raise PayloadTooLarge(
                f"The body exceeds this webhook's limit of {limit} bytes."
            ) from None


def build(gateway: Gateway) -> Webhooks | None:
    """Compile ``[webhooks]`` and the webhooks and handlers embedders declared in Python."""
    service = service_for(gateway)
    configured: dict[str, Any] = dict(gateway.config.section("webhooks"))
    errors: list[str] = []
    conv = make_converter()
    for name, table in service.webhook_declarations.items():
        if name in configured:
            errors.append(f"webhook {name!r}: declared in Python and in [webhooks.{name}]")
            continue
        try:
            configured[name] = conv.structure(table, WebhookConfig)
        except Exception as exc:
            errors.extend(format_errors(exc, f"webhooks.{name}"))
    for name in service.webhook_handlers:
        if name not in configured:
            errors.append(
                f"webhook {name!r}: handlers are registered for it in Python, but there is no "
                f"[webhooks.{name}] (nor a WebhookRouter.webhook({name!r}, ...))"
            )
    hooks: dict[str, Webhook] = {}
    for name, cfg in configured.items():
        where = f"webhooks.{name}"
        reg = gateway.registry.verifiers.get(cfg.verifier)
        if reg is None:
            known = ", ".join(sorted(gateway.registry.verifiers.names())) or "none"
            errors.append(f"{where}.verifier: unknown verifier {cfg.verifier!r} (known: {known})")
            continue
        try:
            verifier = reg.value(cfg)
            handlers = [Handler.from_config(h) for h in cfg.on]
            owner = service.owner(cfg.run_as, where)
        except ConfigError as exc:
            errors.extend(exc.errors)
            continue
        except (ValueError, TypeError) as exc:
            errors.append(f"{where}: {exc}")
            continue
        handlers = service.compile(handlers, owner, f"{where}.on", errors)
        python = service.webhook_handlers.get(name, [])
        handlers += service.compile(python, owner, f"{where} (Python handlers)", errors)
        hooks[name] = Webhook(name, cfg, verifier, handlers, owner)
    if errors:
        raise ConfigError(errors)
    if not hooks:
        return None
    _ = service.state  # declares the store now: a bad combination fails at startup
    service.active = True
    log.info("webhooks: %s", ", ".join(f"/webhooks/{n}" for n in sorted(hooks)))
    return Webhooks(service, hooks)


@hookimpl
def gateway_config_sections(register: Any) -> None:
    register("webhooks", dict[str, WebhookConfig])


@hookimpl(trylast=True)
def gateway_configure_app(app: web.Application, gateway: Gateway) -> None:
    # Last, so agents (which other plugins route in this hook) can be checked by name.
    webhooks = build(gateway)
    if webhooks is not None:
        gateway.add_route("POST", "/webhooks/{name}", webhooks.receive, name="webhook", auth=False)
