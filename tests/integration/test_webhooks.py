"""Signed webhooks, with the services' own signing code as the senders: valid, tampered, stale,
replayed (to the same and to another instance), wrong secret, missing header; routing to agent
runs and Python handlers; body limits, a full queue, and the Python API."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import standardwebhooks
import stripe
from fakes.triggers import metric, run_events, text_of, until, until_metric
from slack_sdk.signature import SignatureVerifier

from gateway.triggers.webhooks import WebhookRouter

STRIPE_SECRET = "whsec_test_" + "s" * 24
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
STANDARD_SECRET = "whsec_" + base64.b64encode(b"standard-webhooks-test-key-32byt").decode()


def stripe_event(event_type: str = "payment_intent.succeeded", **obj: Any) -> bytes:
    event = {
        "id": f"evt_{uuid.uuid4().hex[:16]}",
        "object": "event",
        "type": event_type,
        "data": {"object": {"id": "pi_123", "amount": 2000, **obj}},
    }
    return orjson.dumps(event)


def stripe_headers(body: bytes, secret: str = STRIPE_SECRET, at: float | None = None) -> dict:
    timestamp = int(time.time() if at is None else at)
    header = stripe.WebhookSignature.generate_signature_header(
        body.decode(), secret, timestamp=timestamp
    )
    return {"Stripe-Signature": header, "Content-Type": "application/json"}


def stripe_config(**extra: Any) -> dict[str, Any]:
    return {
        "webhooks": {
            "stripe": {
                "verifier": "stripe",
                "secret": STRIPE_SECRET,
                "on": [
                    {
                        "event": "payment_intent.succeeded",
                        "agent": "echo",
                        "prompt": "Process payment: {data.object.id}",
                    }
                ],
                **extra,
            }
        }
    }


def recorder(hooks: WebhookRouter, event: str) -> list[tuple[Any, dict[str, str]]]:
    calls: list[tuple[Any, dict[str, str]]] = []

    @hooks.on(event)
    async def handle(payload: Any, headers: dict[str, str]) -> None:
        calls.append((payload, headers))

    return calls


# --- Stripe -------------------------------------------------------------------------------------


async def test_stripe_delivery_starts_an_agent_run_that_can_be_attached(make_gateway):
    client = await make_gateway(stripe_config())
    body = stripe_event()
    resp = await client.post("/webhooks/stripe", data=body, headers=stripe_headers(body))
    assert resp.status == 202, await resp.text()
    answer = await resp.json()
    event_id = orjson.loads(body)["id"]
    assert answer["status"] == "accepted" and answer["event"] == "payment_intent.succeeded"
    assert answer["id"] == event_id
    [run_id] = answer["runs"]
    assert resp.headers["x-hookgate-run-id"] == run_id
    events = await run_events(client, run_id)
    assert events[0]["type"] == "RUN_STARTED" and events[-1]["type"] == "RUN_FINISHED"
    assert text_of(events) == "Process payment: pi_123"
    await until_metric(client, "hookgate_trigger_jobs_total", 1, outcome="ok")
    assert await metric(client, "hookgate_webhook_requests_total", outcome="accepted") == 1


async def test_stripe_refuses_tampered_stale_future_wrong_secret_and_unsigned(make_gateway):
    hooks = WebhookRouter()
    calls = recorder(hooks, "stripe.*")
    client = await make_gateway(stripe_config(), plugins=[hooks])
    body = stripe_event()
    good = stripe_headers(body)
    cases = {
        "bad_signature": (body.replace(b"pi_123", b"pi_999"), good),
        "stale": (body, stripe_headers(body, at=time.time() - 301)),
        "stale_future": (body, stripe_headers(body, at=time.time() + 400)),
        "wrong_secret": (body, stripe_headers(body, secret="whsec_other")),
        "missing_signature": (body, {"Content-Type": "application/json"}),
        "malformed_signature": (body, {"Stripe-Signature": "v1=abc"}),
    }
    for case, (data, headers) in cases.items():
        resp = await client.post("/webhooks/stripe", data=data, headers=headers)
        assert resp.status == 401, case
        error = (await resp.json())["error"]
        assert error["code"] == case.removesuffix("_future").replace(
            "wrong_secret", "bad_signature"
        )
    assert await metric(client, "hookgate_webhook_rejections_total", reason="stale") == 2
    assert await metric(client, "hookgate_webhook_rejections_total", reason="bad_signature") == 2
    assert await metric(client, "hookgate_webhook_requests_total", outcome="rejected") == 6
    # the valid delivery still goes through, and only it reached a handler
    resp = await client.post("/webhooks/stripe", data=body, headers=good)
    assert resp.status == 202
    await until_metric(client, "hookgate_trigger_jobs_total", 2, outcome="ok")
    assert len(calls) == 1  # the Python handler (the agent run was the other job)


async def test_stripe_replay_is_acknowledged_and_not_run_twice(make_gateway):
    hooks = WebhookRouter()
    calls = recorder(hooks, "stripe.payment_intent.succeeded")
    client = await make_gateway(stripe_config(), plugins=[hooks])
    body = stripe_event()
    first = await client.post("/webhooks/stripe", data=body, headers=stripe_headers(body))
    assert first.status == 202
    runs = (await first.json())["runs"]
    # the same signed delivery again, and Stripe's retry (a new signature, the same event)
    for headers in (stripe_headers(body), stripe_headers(body, at=time.time() - 5)):
        again = await client.post("/webhooks/stripe", data=body, headers=headers)
        assert again.status == 200
        assert await again.json() == {**(await first.json()), "status": "duplicate"}
    await until(lambda: calls)
    events = await run_events(client, runs[0])
    assert events[-1]["type"] == "RUN_FINISHED"
    await until_metric(client, "hookgate_trigger_jobs_total", 2, outcome="ok")
    assert len(calls) == 1
    assert await metric(client, "hookgate_webhook_requests_total", outcome="duplicate") == 2


async def test_replay_to_a_second_instance_through_redis(make_gateway, redis_url, redis_prefix):
    shared = {"redis": {"url": redis_url, "prefix": redis_prefix}}
    calls_one, calls_two = [], []
    apps = []
    for calls in (calls_one, calls_two):
        hooks = WebhookRouter()
        calls.extend([])
        hooks_calls = recorder(hooks, "stripe.*")
        apps.append(
            (await make_gateway({**stripe_config(), **shared}, plugins=[hooks]), hooks_calls)
        )
    (one, one_calls), (two, two_calls) = apps
    body = stripe_event()
    first = await one.post("/webhooks/stripe", data=body, headers=stripe_headers(body))
    assert first.status == 202
    [run_id] = (await first.json())["runs"]
    again = await two.post("/webhooks/stripe", data=body, headers=stripe_headers(body))
    assert again.status == 200 and (await again.json())["status"] == "duplicate"
    assert (await again.json())["runs"] == [run_id]
    # the run is produced by the first instance and attachable through the second
    events = await run_events(two, run_id)
    assert text_of(events) == "Process payment: pi_123"
    await until(lambda: one_calls)
    assert len(one_calls) == 1 and not two_calls
    # both deliver a fresh event at the same moment: exactly one accepts it
    body = stripe_event()
    answers = await asyncio.gather(
        one.post("/webhooks/stripe", data=body, headers=stripe_headers(body)),
        two.post("/webhooks/stripe", data=body, headers=stripe_headers(body)),
    )
    assert sorted(a.status for a in answers) == [200, 202]
    await until(lambda: len(one_calls) + len(two_calls) == 2)


# --- Slack --------------------------------------------------------------------------------------


def slack_headers(body: bytes, secret: str = SLACK_SECRET, at: float | None = None) -> dict:
    timestamp = str(int(time.time() if at is None else at))
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    return {
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature,
        "Content-Type": "application/json",
    }


async def test_slack_url_verification_events_retries_and_refusals(make_gateway):
    hooks = WebhookRouter()
    calls = recorder(hooks, "slack.app_mention")
    client = await make_gateway(
        {"webhooks": {"slack": {"verifier": "slack", "secret": SLACK_SECRET}}}, plugins=[hooks]
    )
    challenge = orjson.dumps({"type": "url_verification", "token": "t", "challenge": "c-42"})
    resp = await client.post("/webhooks/slack", data=challenge, headers=slack_headers(challenge))
    assert resp.status == 200 and await resp.json() == {"challenge": "c-42"}
    # an unsigned challenge gets nothing
    resp = await client.post("/webhooks/slack", data=challenge)
    assert resp.status == 401

    event = orjson.dumps(
        {
            "type": "event_callback",
            "event_id": "Ev0PV52K25",
            "event": {"type": "app_mention", "text": "<@U1> hello", "user": "U2"},
        }
    )
    resp = await client.post("/webhooks/slack", data=event, headers=slack_headers(event))
    assert resp.status == 202 and (await resp.json())["event"] == "app_mention"
    await until(lambda: calls)
    payload, headers = calls[0]
    assert payload["event"]["text"] == "<@U1> hello"
    assert headers["x-slack-request-timestamp"] and headers["content-type"] == "application/json"
    # Slack retries with X-Slack-Retry-Num and a fresh signature: acknowledged, not run again
    retry = {
        **slack_headers(event),
        "X-Slack-Retry-Num": "1",
        "X-Slack-Retry-Reason": "http_timeout",
    }
    resp = await client.post("/webhooks/slack", data=event, headers=retry)
    assert resp.status == 200 and (await resp.json())["status"] == "duplicate"

    for headers, code in (
        (slack_headers(event, at=time.time() - 600), "stale"),
        (slack_headers(event, secret="not-the-secret"), "bad_signature"),
        ({"X-Slack-Signature": "v0=00"}, "missing_signature"),
    ):
        resp = await client.post("/webhooks/slack", data=event, headers=headers)
        assert resp.status == 401 and (await resp.json())["error"]["code"] == code
    tampered = event.replace(b"hello", b"hellO")
    resp = await client.post("/webhooks/slack", data=tampered, headers=slack_headers(event))
    assert resp.status == 401
    # Handlers start in the order they were accepted: once a later event's handler has run,
    # a retry or refusal that had been accepted would have run before it.
    later = event.replace(b"Ev0PV52K25", b"Ev0PV52K26").replace(b"hello", b"later")
    resp = await client.post("/webhooks/slack", data=later, headers=slack_headers(later))
    assert resp.status == 202
    await until(lambda: len(calls) >= 2)
    assert [c[0]["event"]["text"] for c in calls] == ["<@U1> hello", "<@U1> later"]


async def test_slack_slash_command_form_body(make_gateway):
    hooks = WebhookRouter()
    calls = recorder(hooks, "slack.slash_command")
    client = await make_gateway(
        {"webhooks": {"slack": {"verifier": "slack", "secret": SLACK_SECRET}}}, plugins=[hooks]
    )
    body = b"command=%2Fdeploy&text=api+prod&trigger_id=13345224609.738474920.8088930838d88f"
    headers = {
        **slack_headers(body),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    resp = await client.post("/webhooks/slack", data=body, headers=headers)
    assert resp.status == 202
    await until(lambda: calls)
    assert calls[0][0]["command"] == "/deploy" and calls[0][0]["text"] == "api prod"


# --- GitHub -------------------------------------------------------------------------------------


def github_headers(body: bytes, event: str, secret: str, delivery: str | None = None) -> dict:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "X-Hub-Signature-256": f"sha256={digest}",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "Content-Type": "application/json",
    }


async def test_github_event_and_action_route_to_an_agent(make_gateway):
    cfg = {
        "webhooks": {
            "github": {
                "verifier": "github",
                "secret": ["old-secret", "gh-secret"],  # a rotation: both are accepted
                "on": [
                    {
                        "event": "issues",
                        "agent": "echo",
                        "prompt": "Triage #{issue.number}: {issue.title}",
                    }
                ],
            }
        }
    }
    client = await make_gateway(cfg)
    body = orjson.dumps({"action": "opened", "issue": {"number": 7, "title": "It broke"}})
    headers = github_headers(body, "issues", "gh-secret")
    resp = await client.post("/webhooks/github", data=body, headers=headers)
    assert resp.status == 202
    answer = await resp.json()
    assert answer["event"] == "issues.opened"
    assert text_of(await run_events(client, answer["runs"][0])) == "Triage #7: It broke"
    # the same delivery id again: acknowledged only
    resp = await client.post("/webhooks/github", data=body, headers=headers)
    assert resp.status == 200 and (await resp.json())["status"] == "duplicate"
    # events no handler takes are acknowledged and ignored
    ping = orjson.dumps({"zen": "Keep it logically awesome."})
    resp = await client.post(
        "/webhooks/github", data=ping, headers=github_headers(ping, "ping", "gh-secret")
    )
    assert resp.status == 200 and (await resp.json())["status"] == "ignored"
    # no delivery id: no replay protection, so refused
    unsigned = {k: v for k, v in headers.items() if k != "X-GitHub-Delivery"}
    resp = await client.post("/webhooks/github", data=body, headers=unsigned)
    assert resp.status == 401 and (await resp.json())["error"]["code"] == "missing_delivery_id"
    resp = await client.post(
        "/webhooks/github", data=body, headers=github_headers(body, "issues", "wrong")
    )
    assert resp.status == 401


async def test_signed_content_replayed_under_new_ids_runs_once_across_instances(
    make_gateway, redis_url, redis_prefix
):
    """A captured GitHub delivery re-sent with a fresh X-GitHub-Delivery (not signed), and a
    Slack slash command (no trigger_id) re-sent as it was, to a second instance through Redis:
    acknowledged, never run again. A new delivery of other content still runs."""
    cfg = {
        "webhooks": {
            "github": {"verifier": "github", "secret": "gh-secret"},
            "slack": {"verifier": "slack", "secret": SLACK_SECRET},
        },
        "redis": {"url": redis_url, "prefix": redis_prefix},
    }
    apps, calls = [], []
    for _ in range(2):
        hooks = WebhookRouter()
        calls.append((recorder(hooks, "github.issues.*"), recorder(hooks, "slack.slash_command")))
        apps.append(await make_gateway(cfg, plugins=[hooks]))
    one, two = apps
    body = orjson.dumps({"action": "opened", "issue": {"number": 8, "title": "Replay me"}})
    first = await one.post(
        "/webhooks/github", data=body, headers=github_headers(body, "issues", "gh-secret")
    )
    assert first.status == 202
    for client in (one, two, two):
        replay = await client.post(
            "/webhooks/github", data=body, headers=github_headers(body, "issues", "gh-secret")
        )
        assert replay.status == 200, await replay.text()
        assert await replay.json() == {
            "status": "duplicate",
            "event": "issues.opened",
            "id": replay.request_info.headers["X-GitHub-Delivery"],
            "runs": [],
        }
    # every refused replay left its delivery id unrecorded: the genuine delivery of that id
    # (another body) still runs
    other = body.replace(b"Replay me", b"Fresh")
    fresh = await two.post(
        "/webhooks/github",
        data=other,
        headers=github_headers(
            other, "issues", "gh-secret", replay.request_info.headers["X-GitHub-Delivery"]
        ),
    )
    assert fresh.status == 202

    form = {"Content-Type": "application/x-www-form-urlencoded"}
    command = b"command=%2Fdeploy&text=api+prod&user_id=U2"  # no trigger_id
    signed = {**slack_headers(command), **form}
    assert (await one.post("/webhooks/slack", data=command, headers=signed)).status == 202
    for client in (two, one):
        replay = await client.post("/webhooks/slack", data=command, headers=signed)
        assert replay.status == 200 and (await replay.json())["status"] == "duplicate"
    # the same command typed again a second later is signed anew: it runs
    again = {**slack_headers(command, at=time.time() + 1), **form}
    assert (await two.post("/webhooks/slack", data=command, headers=again)).status == 202

    await until(lambda: sum(len(g) + len(s) for g, s in calls) == 4)
    github = [p["issue"]["title"] for g, _ in calls for p, _ in g]
    assert sorted(github) == ["Fresh", "Replay me"]
    assert sum(len(s) for _, s in calls) == 2
    replays = [
        await metric(c, "hookgate_webhook_requests_total", webhook=w, outcome="replay")
        for c in (one, two)
        for w in ("github", "slack")
    ]
    assert sum(replays) == 5


async def test_replay_of_a_slash_command_without_trigger_id_in_memory(make_gateway):
    hooks = WebhookRouter()
    calls = recorder(hooks, "slack.slash_command")
    client = await make_gateway(
        {"webhooks": {"slack": {"verifier": "slack", "secret": SLACK_SECRET}}}, plugins=[hooks]
    )
    command = b"command=%2Fdeploy&text=api+prod"
    signed = {**slack_headers(command), "Content-Type": "application/x-www-form-urlencoded"}
    assert (await client.post("/webhooks/slack", data=command, headers=signed)).status == 202
    replay = await client.post("/webhooks/slack", data=command, headers=signed)
    assert replay.status == 200 and (await replay.json())["status"] == "duplicate"
    # once the signed timestamp is outside the tolerance, the signature itself is refused
    stale = {**slack_headers(command, at=time.time() - 301), **signed}
    stale["X-Slack-Request-Timestamp"] = str(int(time.time() - 301))
    assert (await client.post("/webhooks/slack", data=command, headers=stale)).status == 401
    await until(lambda: calls)
    assert len(calls) == 1
    assert await metric(client, "hookgate_webhook_requests_total", outcome="replay") == 1


# --- Standard Webhooks ---------------------------------------------------------------------------


def standard_headers(
    body: bytes,
    msg_id: str,
    secret: str = STANDARD_SECRET,
    at: datetime | None = None,
    prefix: str = "webhook",
) -> dict:
    at = at or datetime.now(tz=UTC)
    signature = standardwebhooks.Webhook(secret).sign(msg_id, at, body.decode())
    return {
        f"{prefix}-id": msg_id,
        f"{prefix}-timestamp": str(int(at.timestamp())),
        f"{prefix}-signature": f"v1,bm90LXRoaXMtb25l {signature}",
        "content-type": "application/json",
    }


async def test_standard_webhooks(make_gateway):
    hooks = WebhookRouter()
    calls = recorder(hooks, "std.invoice.*")
    client = await make_gateway(
        {"webhooks": {"std": {"verifier": "standard", "secret": STANDARD_SECRET}}}, plugins=[hooks]
    )
    body = orjson.dumps({"type": "invoice.paid", "data": {"id": "in_1"}})
    resp = await client.post("/webhooks/std", data=body, headers=standard_headers(body, "msg_1"))
    assert resp.status == 202
    await until(lambda: calls)
    # Svix's header names work too
    resp = await client.post(
        "/webhooks/std", data=body, headers=standard_headers(body, "msg_2", prefix="svix")
    )
    assert resp.status == 202
    await until(lambda: len(calls) == 2)
    resp = await client.post("/webhooks/std", data=body, headers=standard_headers(body, "msg_1"))
    assert resp.status == 200 and (await resp.json())["status"] == "duplicate"
    stale = standard_headers(body, "msg_3", at=datetime.now(tz=UTC) - timedelta(minutes=6))
    other = "whsec_" + base64.b64encode(b"another-key-of-thirty-two-bytes!").decode()
    for headers, code in (
        (stale, "stale"),
        (standard_headers(body, "msg_4", secret=other), "bad_signature"),
        ({"webhook-id": "msg_5", "webhook-timestamp": str(int(time.time()))}, "missing_signature"),
    ):
        resp = await client.post("/webhooks/std", data=body, headers=headers)
        assert resp.status == 401 and (await resp.json())["error"]["code"] == code
    resp = await client.post(
        "/webhooks/std", data=body + b" ", headers=standard_headers(body, "msg_6")
    )
    assert resp.status == 401
    assert len(calls) == 2


# --- hmac-sha256 ---------------------------------------------------------------------------------


async def test_hmac_sha256_hex_with_prefix_and_event_header(make_gateway):
    hooks = WebhookRouter()
    calls = recorder(hooks, "shop.orders/create")
    cfg = {
        "verifier": "hmac-sha256",
        "secret": "shop-secret",
        "header": "X-Signature",
        "prefix": "sha256=",
        "event_header": "X-Topic",
        "id_header": "X-Delivery",
    }
    client = await make_gateway({"webhooks": {"shop": cfg}}, plugins=[hooks])
    body = b'{"order": 1}'
    digest = hmac.new(b"shop-secret", body, hashlib.sha256).hexdigest()
    headers = {"X-Signature": f"sha256={digest}", "X-Topic": "orders/create", "X-Delivery": "d1"}
    resp = await client.post("/webhooks/shop", data=body, headers=headers)
    assert resp.status == 202
    await until(lambda: calls)
    resp = await client.post("/webhooks/shop", data=body, headers=headers)
    assert (await resp.json())["status"] == "duplicate"
    resp = await client.post(
        "/webhooks/shop", data=body, headers={**headers, "X-Signature": digest}
    )
    assert resp.status == 401


async def test_hmac_sha256_base64_with_timestamp(make_gateway):
    hooks = WebhookRouter()
    calls = recorder(hooks, "zoom.meeting.started")
    cfg = {
        "verifier": "hmac-sha256",
        "secret": "zoom-secret",
        "header": "x-zm-signature",
        "prefix": "v0=",
        "encoding": "base64",
        "timestamp_header": "x-zm-request-timestamp",
        "signed": "v0:{timestamp}:{body}",
        "event_field": "event",
    }
    client = await make_gateway({"webhooks": {"zoom": cfg}}, plugins=[hooks])
    body = b'{"event": "meeting.started", "payload": {"id": 5}}'

    def headers(at: float) -> dict:
        stamp = str(int(at))
        mac = hmac.new(b"zoom-secret", f"v0:{stamp}:".encode() + body, hashlib.sha256).digest()
        return {
            "x-zm-signature": "v0=" + base64.b64encode(mac).decode(),
            "x-zm-request-timestamp": stamp,
        }

    assert (
        await client.post("/webhooks/zoom", data=body, headers=headers(time.time()))
    ).status == 202
    await until(lambda: calls)
    resp = await client.post("/webhooks/zoom", data=body, headers=headers(time.time() - 400))
    assert resp.status == 401 and (await resp.json())["error"]["code"] == "stale"


# --- limits, failures, the queue -------------------------------------------------------------


async def test_body_limit_and_unknown_webhook(make_gateway):
    hooks = WebhookRouter()
    calls = recorder(hooks, "stripe.*")
    client = await make_gateway(stripe_config(max_body_size="1KiB"), plugins=[hooks])
    body = stripe_event(note="x" * 2000)
    resp = await client.post("/webhooks/stripe", data=body, headers=stripe_headers(body))
    assert resp.status == 413
    # chunked, without a content-length

    async def chunks():
        for i in range(0, len(body), 100):
            yield body[i : i + 100]

    resp = await client.post("/webhooks/stripe", data=chunks(), headers=stripe_headers(body))
    assert resp.status == 413
    assert await metric(client, "hookgate_webhook_requests_total", outcome="too_large") == 2
    resp = await client.post("/webhooks/nope", data=b"{}")
    assert resp.status == 404
    assert not calls


async def test_handler_failures_and_missing_prompt_fields_are_counted(make_gateway, caplog):
    hooks = WebhookRouter()

    @hooks.on("stripe.charge.failed")
    def explode(payload: Any) -> None:
        raise RuntimeError("the ledger is down")

    cfg = stripe_config()
    cfg["webhooks"]["stripe"]["on"].append(
        {"event": "charge.*", "agent": "echo", "prompt": "Customer {data.object.customer}"}
    )
    client = await make_gateway(cfg, plugins=[hooks])
    body = stripe_event("charge.failed")
    resp = await client.post("/webhooks/stripe", data=body, headers=stripe_headers(body))
    assert resp.status == 202
    answer = await resp.json()
    assert answer["runs"] == [] and answer["failed"] == 1
    await until_metric(client, "hookgate_trigger_jobs_total", 2, outcome="failed")
    assert "the ledger is down" in caplog.text
    assert "no field 'data.object.customer'" in caplog.text


async def test_a_full_queue_answers_503_and_the_retry_runs(make_gateway):
    release = asyncio.Event()
    seen: list[str] = []
    hooks = WebhookRouter()

    @hooks.on("stripe.*")
    async def slow(payload: Any) -> None:
        seen.append(payload["id"])
        await release.wait()

    client = await make_gateway(
        {**stripe_config(), "triggers": {"concurrency": 1, "max_queued": 1}}, plugins=[hooks]
    )
    bodies = [stripe_event("invoice.paid") for _ in range(3)]
    statuses = []
    for body in bodies:
        resp = await client.post("/webhooks/stripe", data=body, headers=stripe_headers(body))
        statuses.append(resp.status)
        await until(lambda: seen)  # the first one is running, so the second waits in the queue
    assert statuses == [202, 202, 503]
    assert resp.headers["retry-after"] == "5"
    release.set()
    await until(lambda: len(seen) == 2)
    # the refused delivery was not remembered: its retry runs
    resp = await client.post("/webhooks/stripe", data=bodies[2], headers=stripe_headers(bodies[2]))
    assert resp.status == 202
    await until(lambda: len(seen) == 3)
    assert await metric(client, "hookgate_webhook_requests_total", outcome="busy") == 1


async def test_python_api_declares_the_webhook_too(make_gateway):
    hooks = WebhookRouter()
    hooks.webhook("billing", verifier="stripe", secret=STRIPE_SECRET)
    calls = recorder(hooks, "billing.payment_intent.succeeded")
    hooks.agent("invoice.paid", webhook="billing", agent="echo", prompt="Invoice {data.object.id}")
    client = await make_gateway({}, plugins=[hooks])
    body = stripe_event()
    resp = await client.post("/webhooks/billing", data=body, headers=stripe_headers(body))
    assert resp.status == 202 and (await resp.json())["runs"] == []
    await until(lambda: calls)
    body = stripe_event("invoice.paid")
    resp = await client.post("/webhooks/billing", data=body, headers=stripe_headers(body))
    [run_id] = (await resp.json())["runs"]
    assert text_of(await run_events(client, run_id)) == "Invoice pi_123"


async def test_toml_call_handler(make_gateway):
    from fakes import triggers

    triggers.CALLS.clear()
    cfg = stripe_config()
    cfg["webhooks"]["stripe"]["on"] = [{"event": "*", "call": "fakes.triggers:record"}]
    client = await make_gateway(cfg)
    body = stripe_event()
    resp = await client.post("/webhooks/stripe", data=body, headers=stripe_headers(body))
    assert resp.status == 202
    await until(lambda: triggers.CALLS)
    assert triggers.CALLS[0][0]["data"]["object"]["id"] == "pi_123"
    assert "stripe-signature" in triggers.CALLS[0][1]


async def test_triggered_runs_belong_to_the_run_as_key(make_gateway):
    cfg = {
        **stripe_config(run_as="ops"),
        "auth": {"keys": ["sk-first", {"name": "ops", "key": "sk-ops"}]},
    }
    client = await make_gateway(cfg)
    body = stripe_event()
    resp = await client.post("/webhooks/stripe", data=body, headers=stripe_headers(body))
    assert resp.status == 202
    [run_id] = (await resp.json())["runs"]
    events = await run_events(client, run_id, headers={"Authorization": "Bearer sk-ops"})
    assert events[-1]["type"] == "RUN_FINISHED"
    other = await client.get(
        "/agui/ws", params={"run_id": run_id}, headers={"Authorization": "Bearer sk-first"}
    )
    assert other.status == 404
