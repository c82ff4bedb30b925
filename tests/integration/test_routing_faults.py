"""Routing that survives its upstreams: every fault of the failover benchmark, through the
official ``openai`` and ``anthropic`` SDKs, against a real gateway process in front of the
fault-injecting upstream (``support/faults.py``), streamed and not; over plain HTTP (the lean
client) and over TLS (aiohttp's client: how hosted APIs are reached).

Each model below has a primary target ``<model>-p`` and a fallback ``<model>-f`` of its own, so
each test scripts its own upstreams. The answer must always be the fallback's or the retried
primary's whole answer, said exactly once, with headers telling who served it and in how many
attempts; never a truncated success.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from support import pki as certificates
from support.faults import ANSWER, TOOL_ARGUMENTS, FaultUpstream, usage_of
from support.processes import GatewayProcess, gateway_process
from support.waiting import wait_until

#: model -> (primary kind, fallback kind, extra model options)
MODELS: dict[str, tuple[str, str, str]] = {
    "m429": ("openai", "openai", "retries = 1"),
    "m429bare": ("openai", "openai", "retries = 1"),
    "m500": ("openai", "openai", "retries = 1"),
    "m503": ("openai", "openai", "retries = 1"),
    "mreset": ("openai", "openai", "retries = 1"),
    "mhang": ("openai", "openai", ""),
    "mslow": ("openai", "openai", ""),
    "mcut": ("openai", "anthropic", ""),
    "mstall": ("openai", "anthropic", ""),
    "mmalformed": ("openai", "anthropic", ""),
    "mnodone": ("openai", "anthropic", ""),
    "mctx": ("openai", "openai", "retries = 2"),
    "mpolicy": ("openai", "openai", "retries = 2"),
    "mpolicyfb": (
        "openai",
        "openai",
        'fallback_on = ["server", "content_policy"]',
    ),
    "mrej": ("openai", "openai+prefill", ""),
    "mclaude": ("anthropic", "openai", ""),
    "mflap": ("openai", "openai", 'allowed_fails = 2\ncooldown = "1s"'),
    "mtool": ("openai", "openai", ""),
}


def config(up: FaultUpstream) -> str:
    lines = ["[server]", 'log_level = "warning"', ""]
    trust = [up.trust]
    # One target, no retries: the fast path (a same-protocol stream relayed as it comes).
    lines += [
        "[backends.single]",
        'kind = "openai"',
        f'base_url = "{up.openai_url("single")}"',
        *trust,
        'first_byte_timeout = "1s"',
        'read_timeout = "1s"',
        "[models.single]",
        'backend = "single"',
        "",
    ]
    for model, (primary, fallback, extra) in MODELS.items():
        for suffix, kind in (("p", primary), ("f", fallback)):
            name = f"{model}-{suffix}"
            lines += [f"[backends.{name}]"]
            if kind == "anthropic":
                lines += ['kind = "anthropic"', f'base_url = "{up.anthropic_url(name)}"']
            else:
                lines += ['kind = "openai"', f'base_url = "{up.openai_url(name)}"']
            if kind == "openai+prefill":
                lines += ["accepts_prefill = true"]
            lines += [
                'api_key = "upstream-key"',
                'first_byte_timeout = "1s"',
                'read_timeout = "1s"',
                'connect_timeout = "1s"',
                *trust,
                "",
            ]
        lines += [
            f"[models.{model}]",
            f'targets = [{{ backend = "{model}-p", upstream_model = "up-p" }}, '
            f'{{ backend = "{model}-f", upstream_model = "up-f" }}]',
            'backoff = "0.05s"',
        ]
        if "allowed_fails" not in extra:
            lines += ["allowed_fails = 0"]
        lines += [extra, ""]
    return "\n".join(lines)


@pytest.fixture(scope="module", params=["http", "https"])
def up(request: pytest.FixtureRequest, pki: dict[str, Path]) -> Iterator[FaultUpstream]:
    tls = certificates.serving(pki) if request.param == "https" else None
    with FaultUpstream(tls, pki["ca"]).running() as server:
        yield server


@pytest.fixture(scope="module")
def gw(up: FaultUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    directory = tmp_path_factory.mktemp("routing")
    with gateway_process(config=config(up), directory=directory) as gateway:
        yield gateway


#: The SDK clients a test made, closed after it (their pooled sockets with them).
_CLIENTS: list[openai.OpenAI | anthropic.Anthropic] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _CLIENTS:
        _CLIENTS.pop().close()


def oai(gw: GatewayProcess) -> openai.OpenAI:
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0, timeout=30)
    _CLIENTS.append(client)
    return client


def claude(gw: GatewayProcess) -> anthropic.Anthropic:
    client = anthropic.Anthropic(base_url=gw.url, api_key="unused", max_retries=0, timeout=30)
    _CLIENTS.append(client)
    return client


MESSAGES = [{"role": "user", "content": "Say the sentence."}]


def chat(gw: GatewayProcess, model: str, stream: bool) -> tuple[str, Any, dict[str, str]]:
    """An OpenAI SDK chat: the answer's text, its usage, and the response headers."""
    client = oai(gw).chat.completions
    if not stream:
        raw = client.with_raw_response.create(model=model, messages=MESSAGES)  # type: ignore[arg-type]
        completion = raw.parse()
        assert completion.model == model  # the name the client asked for, whoever served
        return completion.choices[0].message.content or "", completion.usage, dict(raw.headers)
    with client.with_streaming_response.create(
        model=model,
        messages=MESSAGES,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    ) as resp:
        text, usage, finishes = "", None, []
        for chunk in resp.parse():
            assert chunk.model == model
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                text += choice.delta.content or ""
                if choice.finish_reason:
                    finishes.append(choice.finish_reason)
        assert finishes == ["stop"], finishes
        return text, usage, dict(resp.headers)


def messages(gw: GatewayProcess, model: str, stream: bool) -> tuple[str, Any, dict[str, str]]:
    """An Anthropic SDK message: its text, usage and the response headers."""
    client = claude(gw).messages
    if not stream:
        raw = client.with_raw_response.create(
            model=model,
            max_tokens=64,
            messages=MESSAGES,  # type: ignore[arg-type]
        )
        message = raw.parse()
        assert message.model == model
        text = "".join(b.text for b in message.content if b.type == "text")
        return text, message.usage, dict(raw.headers)
    with client.with_streaming_response.create(
        model=model,
        max_tokens=64,
        messages=MESSAGES,  # type: ignore[arg-type]
        stream=True,
    ) as resp:
        text, stops = "", []
        for event in resp.parse():
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                text += event.delta.text
            elif event.type == "message_delta":
                stops.append(event.delta.stop_reason)
        assert stops == ["end_turn"], stops
        return text, None, dict(resp.headers)


def served(headers: dict[str, str]) -> tuple[str, str]:
    return headers["x-hookgate-served-model"], headers["x-hookgate-attempts"]


def health(gw: GatewayProcess) -> dict[str, Any]:
    with urllib.request.urlopen(gw.url + "/health", timeout=5) as resp:
        body: dict[str, Any] = json.loads(resp.read())
    return body


def metrics(gw: GatewayProcess) -> str:
    with urllib.request.urlopen(gw.url + "/metrics", timeout=5) as resp:
        text: str = resp.read().decode()
    return text


STREAMED = pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])


# --- retried on the same target -------------------------------------------------------------


@STREAMED
def test_429_with_retry_after_is_retried_on_the_same_target(up, gw, stream):
    up.script("m429-p", "429")
    text, _, headers = chat(gw, "m429", stream)
    assert text == ANSWER
    assert served(headers) == ("openai:m429-p/up-p", "2")
    assert len(up.seen("m429-p")) == 2 and up.seen("m429-f") == []


@STREAMED
def test_429_without_retry_after_retries_then_falls_back(up, gw, stream):
    up.script("m429bare-p", "429-bare", "429-bare")
    text, _, headers = chat(gw, "m429bare", stream)
    assert text == ANSWER
    assert served(headers) == ("openai:m429bare-f/up-f", "3")
    assert len(up.seen("m429bare-p")) == 2


@STREAMED
def test_500_once_is_rescued_by_a_retry(up, gw, stream):
    up.script("m500-p", "500")
    text, _, headers = chat(gw, "m500", stream)
    assert text == ANSWER and served(headers) == ("openai:m500-p/up-p", "2")


@STREAMED
def test_503_persistent_falls_back_with_honest_accounting(up, gw, stream):
    up.script("m503-p", "503", "503")
    text, usage, headers = chat(gw, "m503", stream)
    assert text == ANSWER
    assert served(headers) == ("openai:m503-f/up-f", "3")
    # Usage is the answering attempt's own (each fake target reports a count of its own).
    assert usage is not None and usage.prompt_tokens == usage_of("m503-f")
    text = metrics(gw)
    assert (
        'hookgate_route_failures_total{model="m503",reason="server",target="m503/0:m503-p"}' in text
    )
    assert 'hookgate_route_fallbacks_total{model="m503",target="m503/0:m503-p"}' in text
    assert 'hookgate_route_retries_total{model="m503",target="m503/0:m503-p"}' in text
    assert 'hookgate_route_attempts_total{model="m503",target="m503/1:m503-f"}' in text
    assert 'hookgate_route_first_byte_seconds_count{model="m503",target="m503/1:m503-f"}' in text


@STREAMED
def test_a_reset_before_headers_is_retried_and_never_resent_silently(up, gw, stream):
    up.script("mreset-p", "reset", "reset")
    text, _, headers = chat(gw, "mreset", stream)
    assert text == ANSWER and served(headers) == ("openai:mreset-f/up-f", "3")
    # Two attempts, two requests: the client under the router never sends one twice.
    assert len(up.seen("mreset-p")) == 2


@STREAMED
def test_no_response_times_out_at_first_byte_and_falls_back(up, gw, stream):
    up.script("mhang-p", "hang")
    text, _, headers = chat(gw, "mhang", stream)
    assert text == ANSWER and served(headers) == ("openai:mhang-f/up-f", "2")


@STREAMED
def test_a_slow_first_token_moves_on_unseen(up, gw, stream):
    up.script("mslow-p", "slow-first")
    text, _, headers = chat(gw, "mslow", stream)
    # Nothing of the primary reached the client: only the fallback's answer, once.
    assert text == ANSWER and served(headers) == ("openai:mslow-f/up-f", "2")


# --- streams that fail after content was sent: continued elsewhere ---------------------------


@pytest.mark.parametrize("fault", ["cut", "stall", "malformed", "malformed-at-once", "no-done"])
def test_a_stream_failing_mid_answer_is_continued_on_the_fallback(up, gw, fault):
    model = {
        "cut": "mcut",
        "stall": "mstall",
        "malformed": "mmalformed",
        "malformed-at-once": "mmalformed",  # the failure in the same read as content before it
        "no-done": "mnodone",
    }[fault]
    up.script(f"{model}-p", fault)
    up.script(f"{model}-f")
    text, usage, headers = chat(gw, model, stream=True)
    assert text == ANSWER  # one continuous answer, nothing repeated, nothing missing
    assert headers["x-hookgate-served-model"] == f"openai:{model}-p/up-p"  # who began it
    (continuation,) = up.seen(f"{model}-f")
    prefill = continuation["messages"][-1]
    assert prefill["role"] == "assistant"
    sent = (
        "".join(b["text"] for b in prefill["content"])
        if isinstance(prefill["content"], list)
        else prefill["content"]
    )
    assert ANSWER.startswith(sent) and sent
    assert usage is not None and usage.prompt_tokens == usage_of(f"{model}-f")


@pytest.mark.parametrize("fault", ["cut", "stall", "malformed"])
def test_a_whole_answer_cut_stalled_or_malformed_falls_back(up, gw, fault):
    model = {"cut": "mcut", "stall": "mstall", "malformed": "mmalformed"}[fault]
    up.script(f"{model}-p", fault)
    text, _, headers = chat(gw, model, stream=False)
    assert text == ANSWER and served(headers) == (f"anthropic:{model}-f/up-f", "2")


@pytest.mark.parametrize("fault", ["cut", "stall"])
def test_an_anthropic_client_gets_the_whole_continued_answer(up, gw, fault):
    model = "mcut" if fault == "cut" else "mstall"
    up.script(f"{model}-p", fault)
    text, _, _ = messages(gw, model, stream=True)
    assert text == ANSWER


def test_a_fallback_that_rejects_the_prefill_ends_the_stream_naming_the_original_failure(up, gw):
    up.script("mrej-p", "cut")
    up.script("mrej-f", "reject-prefill")
    text = ""
    with pytest.raises(openai.APIError) as info:
        stream = oai(gw).chat.completions.create(
            model="mrej",
            messages=MESSAGES,  # type: ignore[arg-type]
            stream=True,
        )
        for chunk in stream:
            for choice in chunk.choices:
                assert not choice.finish_reason  # never a normal end
                text += choice.delta.content or ""
    assert text and ANSWER.startswith(text) and text != ANSWER
    message = str(info.value.message)
    assert "closed" in message and "prefill" not in message
    assert len(up.seen("mrej-f")) == 1  # the continuation was tried


# --- client errors ----------------------------------------------------------------------------


@STREAMED
def test_context_length_goes_to_the_next_target_without_a_retry(up, gw, stream):
    up.script("mctx-p", "ctx400")
    text, _, headers = chat(gw, "mctx", stream)
    assert text == ANSWER and served(headers) == ("openai:mctx-f/up-f", "2")
    assert len(up.seen("mctx-p")) == 1


@STREAMED
def test_a_content_policy_refusal_is_returned_with_the_providers_reason(up, gw, stream):
    up.script("mpolicy-p", "policy400")
    with pytest.raises(openai.BadRequestError) as info:
        chat(gw, "mpolicy", stream)
    assert "safety system" in str(info.value.message)
    assert len(up.seen("mpolicy-p")) == 1 and up.seen("mpolicy-f") == []


@STREAMED
def test_a_content_policy_refusal_fails_over_when_configured(up, gw, stream):
    up.script("mpolicyfb-p", "policy400")
    text, _, headers = chat(gw, "mpolicyfb", stream)
    assert text == ANSWER and served(headers) == ("openai:mpolicyfb-f/up-f", "2")


# --- across protocols -------------------------------------------------------------------------


@STREAMED
def test_anthropic_primary_failing_falls_back_to_an_openai_target(up, gw, stream):
    up.script("mclaude-p", "503")
    text, usage, headers = messages(gw, "mclaude", stream)
    assert text == ANSWER and served(headers) == ("openai:mclaude-f/up-f", "2")
    if usage is not None:
        assert usage.input_tokens == usage_of("mclaude-f")


@STREAMED
def test_an_openai_client_is_served_by_the_anthropic_fallback(up, gw, stream):
    up.script("mcut-p", "503")
    text, _, headers = chat(gw, "mcut", stream)
    assert text == ANSWER and served(headers) == ("anthropic:mcut-f/up-f", "2")


# --- a primary that flaps: the circuit ------------------------------------------------------


def _state(gw: GatewayProcess, model: str) -> str:
    state: str = health(gw)["models"][model][0]["state"]
    return state


def test_a_flapping_primary_is_skipped_for_its_cooldown_then_probed(up, gw):
    up.script("mflap-p", "500", "500", "ok", "500", cycle=False)
    for _ in range(2):
        text, _, headers = chat(gw, "mflap", stream=False)
        assert text == ANSWER and served(headers) == ("openai:mflap-f/up-f", "2")
    assert _state(gw, "mflap") == "open"
    # Open: the primary is not asked at all.
    text, _, headers = chat(gw, "mflap", stream=True)
    assert text == ANSWER and served(headers) == ("openai:mflap-f/up-f", "1")
    assert len(up.seen("mflap-p")) == 2
    wait_until(lambda: _state(gw, "mflap") == "half-open", 10, "the cooldown to end")
    # One probe goes through; its success closes the circuit.
    text, _, headers = chat(gw, "mflap", stream=False)
    assert text == ANSWER and served(headers) == ("openai:mflap-p/up-p", "1")
    assert _state(gw, "mflap") == "closed"
    assert 'hookgate_route_circuit_opened_total{model="mflap",target="mflap/0:mflap-p"} 1.0' in (
        metrics(gw)
    )


def test_every_circuit_open_is_a_503_with_retry_after(up, tmp_path: Path):
    cfg = f"""
[backends.solo]
kind = "openai"
base_url = "{up.openai_url("solo")}"
{up.trust}
[models.solo]
backend = "solo"
retries = 1
backoff = "0.01s"
allowed_fails = 1
cooldown = "60s"
"""
    up.script("solo", "503", "503")
    with gateway_process(config=cfg, directory=tmp_path) as gateway:
        with pytest.raises(openai.InternalServerError):
            chat(gateway, "solo", stream=False)
        with pytest.raises(openai.APIStatusError) as info:
            chat(gateway, "solo", stream=False)
        assert info.value.status_code == 503
        assert info.value.response.headers["retry-after"] == "60"
        assert len(up.seen("solo")) == 1


# --- one target: the fast relay ---------------------------------------------------------------


@pytest.mark.parametrize("fault", ["malformed", "cut", "no-done", "stall"])
def test_the_fast_relay_forwards_only_well_formed_frames_and_reports_the_failure(up, gw, fault):
    """A relayed stream that breaks ends with the protocol's error frame (the OpenAI SDK raises
    APIError, not a JSON decode error on a broken frame), never a normal end."""
    up.script("single", fault)
    text = ""
    with pytest.raises(openai.APIError):
        stream = oai(gw).chat.completions.create(
            model="single",
            messages=MESSAGES,  # type: ignore[arg-type]
            stream=True,
        )
        for chunk in stream:
            for choice in chunk.choices:
                text += choice.delta.content or ""
                assert fault == "no-done" or not choice.finish_reason
    assert ANSWER.startswith(text) and text


@STREAMED
def test_a_hung_upstream_is_a_504_within_the_first_byte_timeout(up, gw, stream):
    up.script("single", "hang")
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as info:
        chat(gw, "single", stream)
    assert info.value.status_code == 504
    assert time.monotonic() - started < 5
    assert served(dict(info.value.response.headers)) == ("openai:single/single", "1")


# --- shared circuits ------------------------------------------------------------------------


def test_two_gateways_sharing_redis_agree_on_a_targets_cooldown(
    up, redis_url, redis_prefix, tmp_path: Path
):
    cfg = f"""
[redis]
url = "{redis_url}"
prefix = "{redis_prefix}"

[backends.shared-p]
kind = "openai"
base_url = "{up.openai_url("shared-p")}"
{up.trust}
[backends.shared-f]
kind = "openai"
base_url = "{up.openai_url("shared-f")}"
{up.trust}

[models.shared]
targets = [{{ backend = "shared-p" }}, {{ backend = "shared-f" }}]
allowed_fails = 1
cooldown = "60s"
"""
    up.script("shared-p", "503")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with (
        gateway_process(config=cfg, directory=tmp_path / "a") as first,
        gateway_process(config=cfg, directory=tmp_path / "b") as second,
    ):
        assert _state(second, "shared") == "closed"
        text, _, headers = chat(first, "shared", stream=False)
        assert text == ANSWER and served(headers) == ("openai:shared-f/shared", "2")
        # The other instance saw nothing fail, yet skips the primary for the cooldown.
        assert _state(second, "shared") == "open"
        text, _, headers = chat(second, "shared", stream=True)
        assert text == ANSWER and served(headers) == ("openai:shared-f/shared", "1")
        assert len(up.seen("shared-p")) == 1


def test_a_tool_call_cut_mid_call_is_made_again_not_continued(up, gw):
    up.script("mtool-p", "cut")
    stream = oai(gw).chat.completions.create(
        model="mtool",
        messages=MESSAGES,  # type: ignore[arg-type]
        stream=True,
        tools=[
            {
                "type": "function",
                "function": {"name": "get_weather", "parameters": {"type": "object"}},
            }
        ],
    )
    starts, arguments, finishes = [], "", []
    for chunk in stream:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or ():
                if call.id:
                    starts.append((call.id, call.function and call.function.name))
                arguments += (call.function and call.function.arguments) or ""
            if choice.finish_reason:
                finishes.append(choice.finish_reason)
    # One whole call, the fallback's: nothing of the call cut in the middle reached the client.
    assert starts == [("call_mtool-f", "get_weather")]
    assert arguments == "".join(TOOL_ARGUMENTS) and json.loads(arguments) == {"city": "Paris"}
    assert finishes == ["tool_calls"]
    (restart,) = up.seen("mtool-f")
    assert restart["messages"][-1]["role"] == "user"  # made again, no prefill


def test_an_answer_larger_than_max_response_size_fails(up, tmp_path: Path):
    cfg = f"""
[backends.small]
kind = "openai"
base_url = "{up.openai_url("small")}"
{up.trust}
max_response_size = 300
[models.small]
backend = "small"
"""
    with gateway_process(config=cfg, directory=tmp_path) as gateway:
        up.script("small", "ok", "ok")
        with pytest.raises(openai.APIStatusError) as info:
            chat(gateway, "small", stream=False)
        assert info.value.status_code == 502 and "max_response_size" in info.value.message
        text = ""
        with pytest.raises(openai.APIError) as streamed:
            for chunk in oai(gateway).chat.completions.create(
                model="small",
                messages=MESSAGES,  # type: ignore[arg-type]
                stream=True,
            ):
                for choice in chunk.choices:
                    text += choice.delta.content or ""
        assert "max_response_size" in str(streamed.value.message)
        assert text != ANSWER
