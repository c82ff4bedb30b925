"""An OpenAI-compatible upstream that answers in two parts: the first chunks at once, the rest
only when the test releases them. A test can act in between (close its client, cancel a task)
knowing exactly where the answer stands, without waiting on a clock."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiohttp import web

from fakes.openai_upstream import USAGE, _chunk


class HeldUpstream:
    """``await aiohttp_server(held.app())``; ``held.release.set()`` lets the rest go."""

    def __init__(self, first: Sequence[str], rest: Sequence[str] = ()) -> None:
        self.first = list(first)
        self.rest = list(rest)
        #: Set by the test: the rest of the answer (and a non-streamed answer) may go.
        self.release = asyncio.Event()
        #: Set when a request arrived, and when its first chunks were written.
        self.received = asyncio.Event()
        self.sent_first = asyncio.Event()
        #: Set when the gateway dropped a request before its answer was complete.
        self.gone = asyncio.Event()
        #: The headers of each request, in order.
        self.headers: list[dict[str, str]] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        return app

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        model = body.get("model", "?")
        self.headers.append(dict(request.headers))
        self.received.set()
        try:
            if not body.get("stream"):
                await self.release.wait()
                text = "".join(self.first + self.rest)
                message = {"role": "assistant", "content": text, "refusal": None}
                choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
                return web.json_response(
                    {
                        "id": "chatcmpl-held",
                        "object": "chat.completion",
                        "created": 1700000001,
                        "model": model,
                        "choices": [choice],
                        "usage": USAGE,
                    }
                )
            resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
            await resp.prepare(request)
            await resp.write(_chunk(model, {"role": "assistant", "content": ""}))
            for text in self.first:
                await resp.write(_chunk(model, {"content": text}))
            self.sent_first.set()
            await self.release.wait()
            for text in self.rest:
                await resp.write(_chunk(model, {"content": text}))
            await resp.write(_chunk(model, {}, "stop") + b"data: [DONE]\n\n")
            await resp.write_eof()
            return resp
        except (asyncio.CancelledError, ConnectionResetError):
            self.gone.set()
            raise
