"""Webhooks without a server: configuration errors with their TOML path, and GitHub's documented signature test vector."""

from __future__ import annotations

import time
from typing import Any

import pytest
from multidict import CIMultiDict

from gateway.errors import ConfigError
from gateway.triggers.webhooks import WebhookRouter
from gateway.triggers.webhooks.config import WebhookConfig
from gateway.triggers.webhooks.github import GitHubVerifier


def test_github_documented_test_vector():
    cfg = WebhookConfig(verifier="github", secret=("It's a Secret to Everybody",))  # type: ignore[arg-type]
    verifier = GitHubVerifier(cfg)
    headers = CIMultiDict(
        {
            "X-Hub-Signature-256": "sha256="
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        }
    )
    verifier.verify(b"Hello, World!", headers, time.time())
    with pytest.raises(Exception, match="does not match"):
        verifier.verify(b"Hello, World?", headers, time.time())


def test_signed_content_is_remembered_while_a_replay_could_pass():
    """Timestamped schemes: twice the tolerance (a timestamp may be off either way); GitHub
    signs no time, so its signed bodies are remembered as long as delivery ids."""
    from gateway.triggers.webhooks.hmac_sha256 import HmacVerifier
    from gateway.triggers.webhooks.slack import SlackVerifier

    def config(verifier: str, **extra: Any) -> WebhookConfig:
        return WebhookConfig(verifier=verifier, secret=("s",), tolerance=60.0, **extra)  # type: ignore[arg-type]

    assert SlackVerifier(config("slack")).replay_window() == 120.0
    assert GitHubVerifier(config("github")).replay_window() == 86400.0
    timed = HmacVerifier(config("hmac-sha256", header="x-sig", timestamp_header="x-ts"))
    assert timed.replay_window() == 120.0
    untimed = HmacVerifier(config("hmac-sha256", header="x-sig"))
    assert untimed.replay_window() == 86400.0
    headers = CIMultiDict({"x-ts": "1700000000", "x-sig": "ignored"})
    assert timed.signed(b"{}", headers) == b"1700000000.{}"
    assert untimed.signed(b"{}", headers) == b"{}"


@pytest.mark.parametrize(
    ("webhook", "message"),
    [
        ({"verifier": "nope", "secret": "s"}, "webhooks.x.verifier: unknown verifier 'nope'"),
        ({"verifier": "hmac-sha256", "secret": "s"}, "needs 'header'"),
        ({"verifier": "stripe", "secret": "s", "header": "X"}, "does not use 'header'"),
        ({"verifier": "stripe", "secret": []}, "webhooks.x.secret: expected a non-empty secret"),
        (
            {"verifier": "stripe", "secret": "s", "on": [{"agent": "ghost"}]},
            "webhooks.x.on[0].agent: no agent or model named 'ghost'",
        ),
        ({"verifier": "stripe", "secret": "s", "on": [{"event": "*"}]}, "a handler needs"),
        ({"verifier": "stripe", "secret": "s", "on": [{"call": "nowhere:fn"}]}, "cannot import"),
        ({"verifier": "stripe", "secret": "s", "dedupe_ttl": "1m"}, "at least the tolerance"),
        (
            {"verifier": "stripe", "secret": "s", "on": [{"agent": "echo", "prompt": "{a"}]},
            "unmatched '{'",
        ),
    ],
)
def test_configuration_errors(webhook, message):
    from gateway import create_app

    cfg = {
        "webhooks": {"x": webhook},
        "backends": {"e": {"kind": "echo"}},
        "models": {"echo": {"backend": "e"}},
    }
    with pytest.raises(ConfigError) as info:
        create_app(cfg)
    assert any(message in line for line in info.value.errors), info.value.errors


def test_python_handlers_need_a_webhook():
    from gateway import create_app

    hooks = WebhookRouter()

    @hooks.on("github.push")
    async def handle(payload: Any, headers: dict[str, str]) -> None:
        pass

    with pytest.raises(ConfigError, match=r"no \[webhooks.github\]"):
        create_app({}, plugins=[hooks])
