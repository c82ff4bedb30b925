"""Filters at both ends of a request: ``on_end`` with every outcome, exactly once, and async
``on_event`` (a guardrail that awaits a moderation service per event)."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import attrs
import openai
import orjson
import pytest
from aiohttp import web
from fakes.held_upstream import HeldUpstream
from fakes.outcomes import Ends, filters_plugin
from support.configs import upstream_config

from gateway import (
    GATEWAY,
    ChatRequest,
    Exchange,
    Filter,
    Message,
    Outcome,
    TextDelta,
    TextPart,
)
from gateway.errors import Forbidden, NotFound, UpstreamError
from gateway.exchange import RouteInfo

MESSAGES = [{"role": "user", "content": "hello"}]
ECHO = {"backends": {"echo": {"kind": "echo"}}, "models": {"echo": {"backend": "echo"}}}


# --- on_end: once at the end of every request, whatever its outcome ------------------------


async def test_on_end_sees_success_streamed_or_not(make_gateway, upstream, sdk):
    ends = Ends()
    client = await make_gateway(upstream_config(upstream), plugins=[filters_plugin(ends=ends)])
    api = sdk(client)
    out = await api.chat.completions.create(model="gpt-test", messages=MESSAGES)
    assert out.choices[0].message.content == "upstream says: hello"
    done = await ends.next()
    assert (done.status, done.error, done.stream) == ("success", None, False)
    assert done.usage is not None and done.usage.total_tokens == 18
    assert done.output_tokens == 5  # "upstream says: hello", four characters a token

    stream = await api.chat.completions.create(
        model="gpt-test",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    assert [c async for c in stream]
    done = await ends.next()
    assert (done.status, done.stream, done.usage.total_tokens) == ("success", True, 18)
    assert done.output_tokens == 5
    assert len(ends.seen) == 2 and ends.seen[0][0] != ends.seen[1][0]


async def test_on_end_sees_errors_before_and_during_a_stream(make_gateway, upstream, sdk):
    ends = Ends()
    client = await make_gateway(upstream_config(upstream), plugins=[filters_plugin(ends=ends)])
    api = sdk(client)
    with pytest.raises(openai.NotFoundError):
        await api.chat.completions.create(model="nothing-here", messages=MESSAGES, stream=True)
    done = await ends.next()
    assert done.status == "error" and isinstance(done.error, NotFound)
    assert done.output_tokens == 0 and done.usage is None

    with pytest.raises(openai.InternalServerError):
        await api.chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": "STATUS:500"}]
        )
    done = await ends.next()
    assert done.status == "error" and done.error.status == 502 and not done.stream

    stream = await api.chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "BREAK"}], stream=True
    )
    with pytest.raises(openai.APIError):
        async for _ in stream:
            pass
    done = await ends.next()
    assert done.status == "error" and isinstance(done.error, UpstreamError)
    assert done.output_tokens == 4  # "upstream says: " went out before the break
    assert len(ends.seen) == 3


async def test_on_end_runs_for_requests_an_earlier_filter_refused(make_gateway, sdk):
    class Refuse(Filter):
        order = -10

        async def on_request(self, request, exchange):
            raise Forbidden("not today")

    ends = Ends()
    client = await make_gateway(ECHO, plugins=[filters_plugin(refuse=Refuse(), ends=ends)])
    with pytest.raises(openai.PermissionDeniedError):
        await sdk(client).chat.completions.create(model="echo", messages=MESSAGES)
    done = await ends.next()
    assert done.status == "error" and done.error.message == "not today"


@pytest.mark.parametrize("stream", [False, True])
async def test_on_end_sees_the_request_as_the_filters_left_it_when_a_later_one_refused(
    make_gateway, sdk, stream
):
    """A filter that returns a new request, then one that refuses it: the end hooks get the
    new request (what the filters made of it so far), not the one the client sent."""

    class Rewrite(Filter):
        order = -20

        async def on_request(self, request, exchange):
            return attrs.evolve(request, max_tokens=7)

    class Refuse(Filter):
        order = -10

        async def on_request(self, request, exchange):
            assert request.max_tokens == 7
            raise Forbidden("not today")

    class Seen(Filter):
        def __init__(self) -> None:
            self.requests: list[ChatRequest] = []

        async def on_end(self, request, exchange, outcome):
            self.requests.append(request)

    seen = Seen()
    client = await make_gateway(
        ECHO, plugins=[filters_plugin(rewrite=Rewrite(), refuse=Refuse(), seen=seen)]
    )
    with pytest.raises(openai.PermissionDeniedError):
        await sdk(client).chat.completions.create(
            model="echo", messages=MESSAGES, max_tokens=99, stream=stream
        )
    assert [r.max_tokens for r in seen.requests] == [7]


async def test_on_end_sees_the_rewritten_request_when_its_model_is_not_routed(make_gateway, sdk):
    class Rename(Filter):
        async def on_request(self, request, exchange):
            return attrs.evolve(request, model="nowhere")

    ends = Ends()
    seen: list[str] = []

    class Seen(Filter):
        async def on_end(self, request, exchange, outcome):
            seen.append(request.model)

    client = await make_gateway(
        ECHO, plugins=[filters_plugin(rename=Rename(), seen=Seen(), ends=ends)]
    )
    with pytest.raises(openai.NotFoundError):
        await sdk(client).chat.completions.create(model="echo", messages=MESSAGES)
    done = await ends.next()
    assert done.status == "error" and seen == ["nowhere"]


async def test_on_end_sees_the_client_go_mid_stream(make_gateway, aiohttp_server, sdk):
    held = HeldUpstream(first=["one ", "two "], rest=["three"])
    ends = Ends()
    client = await make_gateway(
        upstream_config(await aiohttp_server(held.app())), plugins=[filters_plugin(ends=ends)]
    )
    stream = await sdk(client).chat.completions.create(
        model="gpt-test", messages=MESSAGES, stream=True
    )
    text = ""
    async for chunk in stream:
        text += chunk.choices[0].delta.content or ""
        if text == "one two ":
            break
    await stream.close()
    done = await ends.next()
    assert (done.status, done.error, done.usage) == ("client_gone", None, None)
    assert done.output_tokens == 2
    async with asyncio.timeout(10):
        await held.gone.wait()  # the upstream request was cancelled too
    assert len(ends.seen) == 1


async def test_on_end_sees_the_client_go_before_a_whole_answer(make_gateway, aiohttp_server, sdk):
    held = HeldUpstream(first=["never sent"])
    ends = Ends()
    client = await make_gateway(
        upstream_config(await aiohttp_server(held.app())), plugins=[filters_plugin(ends=ends)]
    )
    call = asyncio.create_task(
        sdk(client).chat.completions.create(model="gpt-test", messages=MESSAGES)
    )
    async with asyncio.timeout(10):
        await held.received.wait()
    call.cancel()  # the client gives up: its connection closes
    with pytest.raises(asyncio.CancelledError):
        await call
    done = await ends.next()
    assert (done.status, done.stream, done.output_tokens) == ("client_gone", False, 0)


async def test_a_failing_on_end_is_logged_and_changes_nothing(make_gateway, sdk, caplog):
    class Broken(Filter):
        name = "broken"

        async def on_end(self, request, exchange, outcome):
            raise RuntimeError("bookkeeping exploded")

    ends = Ends()
    client = await make_gateway(ECHO, plugins=[filters_plugin(broken=Broken(), ends=ends)])
    api = sdk(client)
    assert (await api.chat.completions.create(model="echo", messages=MESSAGES)).choices[
        0
    ].message.content == "hello"
    stream = await api.chat.completions.create(model="echo", messages=MESSAGES, stream=True)
    assert "".join([c.choices[0].delta.content or "" async for c in stream]) == "hello"
    assert [o.status for _, o in ends.seen] == ["success", "success"]  # the next one still ran
    failures = [r for r in caplog.records if "failed at the end of request" in r.getMessage()]
    assert len(failures) == 2 and "broken" in failures[0].getMessage()
    assert failures[0].levelno == logging.ERROR


def _exchange() -> Exchange:
    return Exchange("req-1", RouteInfo("test"))


def _request(text: str = "a b c d") -> ChatRequest:
    return ChatRequest("echo", [Message("user", [TextPart(text)])], "openai", stream=True)


async def test_on_end_runs_once_when_the_consumer_closes_the_stream(make_gateway):
    ends = Ends()
    client = await make_gateway(ECHO, plugins=[filters_plugin(ends=ends)])
    pipeline = client.server.app[GATEWAY].pipeline
    events = pipeline.stream(_request(), _exchange())
    assert [type(await anext(events)).__name__ for _ in range(2)] == ["Start", "TextDelta"]
    await events.aclose()  # GeneratorExit inside the pipeline
    await events.aclose()
    assert [(rid, o.status, o.output_tokens) for rid, o in ends.seen] == [
        ("req-1", "client_gone", 1)
    ]


async def test_on_end_is_shielded_from_a_second_cancellation(make_gateway):
    class Slow(Filter):
        """An end hook that takes its time (a store being written)."""

        def __init__(self):
            self.started = asyncio.Event()
            self.proceed = asyncio.Event()
            self.outcomes: list[Outcome] = []

        async def on_end(self, request, exchange, outcome):
            self.started.set()
            await self.proceed.wait()
            self.outcomes.append(outcome)

    slow, ends = Slow(), Ends()
    client = await make_gateway(ECHO, plugins=[filters_plugin(slow=slow, ends=ends)])
    pipeline = client.server.app[GATEWAY].pipeline
    first = asyncio.Event()
    hold = asyncio.Event()

    async def consume():
        async for ev in pipeline.stream(_request(), _exchange()):
            if type(ev) is TextDelta:
                first.set()
                await hold.wait()  # the consumer is busy when it is cancelled

    task = asyncio.create_task(consume())
    async with asyncio.timeout(10):
        await first.wait()
        task.cancel()
        await slow.started.wait()
    task.cancel()  # again, while the end hooks run
    with pytest.raises(asyncio.CancelledError):
        await task
    assert slow.outcomes == [] and ends.seen == []
    slow.proceed.set()  # the shielded hooks finish on their own
    done = await ends.next()
    assert done.status == "client_gone" and [o.status for o in slow.outcomes] == ["client_gone"]
    assert len(ends.seen) == 1


async def test_a_cancellation_during_one_end_hook_still_lets_the_next_ones_run(make_gateway):
    class Stuck(Filter):
        def __init__(self):
            self.started = asyncio.Event()

        async def on_end(self, request, exchange, outcome):
            self.started.set()
            await asyncio.Event().wait()  # until cancelled

    stuck, ends = Stuck(), Ends()
    client = await make_gateway(ECHO, plugins=[filters_plugin(stuck=stuck, ends=ends)])
    pipeline = client.server.app[GATEWAY].pipeline
    request = _request()
    request.stream = False
    task = asyncio.create_task(pipeline.complete(request, _exchange()))
    async with asyncio.timeout(10):
        await stuck.started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task  # the cancellation goes on
    done = await ends.next()  # after the next hook ran
    assert (done.status, done.output_tokens) == ("success", 2)


async def test_only_filters_that_override_on_end_are_on_the_path(make_gateway):
    class RequestOnly(Filter):
        async def on_request(self, request, exchange):
            return None

    ends = Ends()
    # The console's list of recent requests is an end hook of its own: left out here.
    cfg = {**ECHO, "console": {"recent_requests": 0}}
    client = await make_gateway(cfg, plugins=[filters_plugin(ro=RequestOnly(), ends=ends)])
    pipeline = client.server.app[GATEWAY].pipeline
    assert [hook.__self__ for hook in pipeline.end_hooks] == [ends]
    # An end hook does not rewrite streams: same-protocol relays stay on.
    assert pipeline.raw_relay and pipeline.event_filters == []


async def _whole_and_streamed(api, user: str) -> None:
    """Ask as ``user`` once for a whole answer and once for a stream, read to its end."""
    await api.chat.completions.create(model="gpt-test", messages=MESSAGES, user=user)
    stream = await api.chat.completions.create(
        model="gpt-test", messages=MESSAGES, user=user, stream=True
    )
    assert [c async for c in stream]


async def test_a_success_hook_that_needs_a_note_runs_only_for_requests_noted(
    make_gateway, upstream, sdk
):
    """``Filter.success_note``: ``on_success`` only for the requests whose ``on_request`` noted
    the key (here, those whose user field says "keep"); a filter without one sees them all,
    streamed and not, and the answers it gets are whole."""

    class Keeps(Filter):
        success_note = "keeps.turn"

        def __init__(self) -> None:
            self.answers: list[str] = []

        async def on_request(self, request, exchange):
            if request.user == "keep":
                exchange.note(self.success_note, True)
            return None

        async def on_success(self, request, response, exchange):
            self.answers.append(response.message.parts[0].text)

    class Every(Filter):
        def __init__(self) -> None:
            self.count = 0

        async def on_success(self, request, response, exchange):
            self.count += 1

    keeps, every = Keeps(), Every()
    client = await make_gateway(
        upstream_config(upstream), plugins=[filters_plugin(keeps=keeps, every=every)]
    )
    api = sdk(client)
    for user in ("keep", "other"):
        await _whole_and_streamed(api, user)
    assert keeps.answers == ["upstream says: hello"] * 2
    assert every.count == 4


class NotedEnds(Ends):
    """Records the ends of the requests whose user field says "note" (``Filter.end_note``)."""

    name = "noted-ends"
    end_note = "noted.end"

    async def on_request(self, request, exchange):
        if request.user == "note":
            exchange.note(self.end_note, True)
        return None


async def test_an_end_hook_that_needs_a_note_runs_only_for_requests_noted(
    make_gateway, upstream, sdk
):
    """``Filter.end_note``: ``on_end`` only for the requests whose ``on_request`` noted the key,
    whatever their outcome (here a success, streamed or not, and a failure); the others end
    without it."""
    noted, ends = NotedEnds(), Ends()  # ``ends`` runs after ``noted``, for every request
    client = await make_gateway(
        upstream_config(upstream), plugins=[filters_plugin(noted=noted, ends=ends)]
    )
    api = sdk(client)
    for user in ("note", "other"):
        await _whole_and_streamed(api, user)
        with pytest.raises(openai.InternalServerError):
            await api.chat.completions.create(
                model="gpt-test", messages=[{"role": "user", "content": "STATUS:500"}], user=user
            )
    each = [("success", False), ("success", True), ("error", False)]  # a user's three
    assert [(o.status, o.stream) for _, o in ends.seen] == each * 2
    assert [rid for rid, _ in noted.seen] == [rid for rid, _ in ends.seen[:3]]
    assert [(o.status, o.stream) for _, o in noted.seen] == each


async def test_an_end_hook_that_needs_a_note_sees_the_client_leave_a_noted_stream(
    make_gateway, aiohttp_server, sdk
):
    held = HeldUpstream(first=["one ", "two "])  # the rest never comes
    noted, ends = NotedEnds(), Ends()
    client = await make_gateway(
        upstream_config(await aiohttp_server(held.app())),
        plugins=[filters_plugin(noted=noted, ends=ends)],
    )
    for user in ("other", "note"):
        stream = await sdk(client).chat.completions.create(
            model="gpt-test", messages=MESSAGES, user=user, stream=True
        )
        text = ""
        async for chunk in stream:
            text += chunk.choices[0].delta.content or ""
            if text == "one two ":
                break
        await stream.close()
        done = await ends.next()
        assert (done.status, done.output_tokens) == ("client_gone", 2)
    assert len(ends.seen) == 2 and [rid for rid, _ in noted.seen] == [ends.seen[1][0]]
    assert [(o.status, o.output_tokens) for _, o in noted.seen] == [("client_gone", 2)]


async def test_an_end_hook_that_needs_a_note_is_skipped_when_an_earlier_filter_refused(
    make_gateway, sdk
):
    """Refused before its ``on_request`` ran, the request was never noted."""

    class Refuse(Filter):
        order = -10

        async def on_request(self, request, exchange):
            raise Forbidden("not today")

    noted, ends = NotedEnds(), Ends()
    client = await make_gateway(
        ECHO, plugins=[filters_plugin(refuse=Refuse(), noted=noted, ends=ends)]
    )
    with pytest.raises(openai.PermissionDeniedError):
        await sdk(client).chat.completions.create(model="echo", messages=MESSAGES, user="note")
    assert (await ends.next()).status == "error"
    assert noted.seen == []


# --- async on_event: a guardrail that asks a moderation service about every delta ------------


@pytest.fixture
async def moderation(aiohttp_server):
    """A moderation service: ``POST /moderate {"text"}`` -> ``{"action", "text"}``; "secret" is
    redacted, "bomb" blocks the answer, anything else is allowed. Returns the base URL and
    the texts it was asked about."""
    asked: list[str] = []

    async def moderate(request: web.Request) -> web.Response:
        text = (await request.json())["text"]
        asked.append(text)
        if "bomb" in text:
            return web.json_response({"action": "block", "text": ""})
        if "secret" in text:
            return web.json_response({"action": "redact", "text": text.replace("secret", "***")})
        return web.json_response({"action": "allow", "text": text})

    app = web.Application()
    app.router.add_post("/moderate", moderate)
    server = await aiohttp_server(app)
    return str(server.make_url("/moderate")), asked


class Guardrail(Filter):
    """Awaits the moderation service for every text delta: rewrites, or ends the stream."""

    name = "guardrail"

    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url
        self.session = session

    async def on_event(self, event, exchange):
        if type(event) is not TextDelta:
            return event
        async with self.session.post(self.url, json={"text": event.text}) as resp:
            verdict = await resp.json()
        if verdict["action"] == "block":
            raise Forbidden("The answer was blocked by moderation.", code="content_blocked")
        event.text = verdict["text"]
        return event


async def test_async_event_filter_awaits_a_moderation_call_per_event(make_gateway, moderation, sdk):
    url, asked = moderation
    async with aiohttp.ClientSession() as session:
        client = await make_gateway(
            ECHO, plugins=[filters_plugin(guardrail=Guardrail(url, session))]
        )
        api = sdk(client)
        stream = await api.chat.completions.create(
            model="echo",
            messages=[{"role": "user", "content": "the secret plan"}],
            stream=True,
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream])
        assert text == "the *** plan"
        assert asked == ["the ", "secret ", "plan"]

        stream = await api.chat.completions.create(
            model="echo",
            messages=[{"role": "user", "content": "how to build a bomb today"}],
            stream=True,
        )
        seen = ""
        with pytest.raises(openai.APIError, match="blocked by moderation"):
            async for chunk in stream:
                seen += chunk.choices[0].delta.content or "" if chunk.choices else ""
        assert seen == "how to build a "  # what went out before the block, and no more


async def test_a_synchronous_on_event_still_works_with_a_deprecation_warning(make_gateway, sdk):
    class Upper(Filter):
        name = "upper"

        def on_event(self, event, exchange):
            if type(event) is TextDelta:
                event.text = event.text.upper()
            return event

    with pytest.warns(DeprecationWarning, match="filter 'upper': a synchronous on_event"):
        client = await make_gateway(ECHO, plugins=[filters_plugin(upper=Upper())])
    stream = await sdk(client).chat.completions.create(model="echo", messages=MESSAGES, stream=True)
    assert "".join([c.choices[0].delta.content or "" async for c in stream]) == "HELLO"


def _chunk(delta: dict, finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    body = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "up-model"}
    return b"data: " + orjson.dumps({**body, "choices": [choice]}) + b"\n\n"


#: A whole streamed answer, which its upstream sends in one write (one read at the gateway).
ONE_READ = b"".join(
    [
        _chunk({"role": "assistant", "content": ""}),
        *(_chunk({"content": word}) for word in ["how ", "to ", "build ", "a ", "bomb ", "today"]),
        _chunk({}, "stop"),
        b"data: [DONE]\n\n",
    ]
)


@pytest.fixture
async def one_read(aiohttp_server):
    """An OpenAI upstream whose streamed answer leaves in one write."""

    async def chat(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(ONE_READ)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return await aiohttp_server(app)


async def test_the_events_of_one_read_come_together_and_one_by_one(make_gateway, one_read):
    client = await make_gateway(upstream_config(one_read))
    pipeline = client.server.app[GATEWAY].pipeline
    request = ChatRequest("gpt-test", [Message("user", [TextPart("hi")])], "openai", stream=True)
    # A consumer that takes them together (as the gateway's stream writer does) gets the read's
    # events in one list; stream() gives the same events one by one.
    reads = [read async for read in pipeline.stream_reads(request, _exchange())]
    assert all(reads) and len(reads) < 3
    together = [type(ev).__name__ for read in reads for ev in read]
    # The frames relayed as they came (nobody rewrites events), then the events the gateway
    # reads of them: the start and the finish.
    assert together == ["Raw", "Start", "Finish"]
    request = ChatRequest("gpt-test", [Message("user", [TextPart("hi")])], "openai", stream=True)
    alone = [type(ev).__name__ async for ev in pipeline.stream(request, _exchange())]
    assert alone == together


async def test_a_filter_that_blocks_mid_read_ends_the_stream_after_what_went_before(
    make_gateway, moderation, one_read, sdk
):
    url, asked = moderation
    async with aiohttp.ClientSession() as session:
        client = await make_gateway(
            upstream_config(one_read),
            plugins=[filters_plugin(guardrail=Guardrail(url, session))],
        )
        stream = await sdk(client).chat.completions.create(
            model="gpt-test", messages=MESSAGES, stream=True
        )
        seen = ""
        with pytest.raises(openai.APIError, match="blocked by moderation"):
            async for chunk in stream:
                seen += chunk.choices[0].delta.content or "" if chunk.choices else ""
    # The words before the blocked one went out (all of one upstream read), and no more.
    assert seen == "how to build a "
    assert asked == ["how ", "to ", "build ", "a ", "bomb "]
