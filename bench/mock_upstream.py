"""A fast mock model server for the benchmark: canned OpenAI and Anthropic answers.

It is a raw ``asyncio.Protocol`` on uvloop (no framework, no JSON parsing) so that it is never
the bottleneck: answering costs a few microseconds, far less than any gateway in front of it.

- ``POST /v1/chat/completions``: a ``chat.completion`` JSON body, or, when the request body says
  ``"stream": true``, a stream of ``--chunks`` ``chat.completion.chunk`` frames (role first,
  finish reason last, then usage) and ``data: [DONE]``.
- ``POST /v1/messages``: an Anthropic ``message``, or its stream (``message_start``, one text
  block of ``--chunks`` deltas, ``message_delta`` with usage, ``message_stop``).
- A chat request for model ``mock-long`` streams ``--long-chunks`` frames (default 1,000) instead;
  one for ``mock-idle`` streams its first frame and then nothing, holding the stream open until
  the client goes (the benchmark's idle streams).
- ``GET /v1/models`` and anything else: a small JSON body (404 for unknown paths).

Streams are written with chunked transfer encoding, one HTTP chunk per SSE frame, all frames in
one write (``--interval`` spaces them out instead). Keep-alive is honoured; HTTP/1.0 and
``connection: close`` close after the answer.

    python bench/mock_upstream.py --port 9100 [--chunks 50] [--long-chunks 1000] [--interval 0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys

CHUNKS = 50
LONG_CHUNKS = 1000
MODEL = "mock-model"


def _sse(obj: dict, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def _chunked(frames: list[bytes]) -> list[bytes]:
    return [b"%x\r\n%s\r\n" % (len(f), f) for f in frames] + [b"0\r\n\r\n"]


def openai_reply() -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-mock",
            "object": "chat.completion",
            "created": 1700000000,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello from the mock upstream."},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15},
        },
        separators=(",", ":"),
    ).encode()


def openai_stream(chunks: int) -> list[bytes]:
    base = {"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1700000000}
    frames = []
    for i in range(chunks):
        delta: dict = {"content": f"tok{i} "}
        if i == 0:
            delta = {"role": "assistant", "content": ""}
        finish = "stop" if i == chunks - 1 else None
        if finish:
            delta = {}
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        frames.append(_sse({**base, "model": MODEL, "choices": [choice]}))
    usage = {"prompt_tokens": 9, "completion_tokens": chunks, "total_tokens": 9 + chunks}
    frames.append(_sse({**base, "model": MODEL, "choices": [], "usage": usage}))
    frames.append(b"data: [DONE]\n\n")
    return frames


def anthropic_reply() -> bytes:
    return json.dumps(
        {
            "id": "msg_mock",
            "type": "message",
            "role": "assistant",
            "model": MODEL,
            "content": [{"type": "text", "text": "Hello from the mock upstream."}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 9, "output_tokens": 6},
        },
        separators=(",", ":"),
    ).encode()


def anthropic_stream(chunks: int) -> list[bytes]:
    message = {
        "id": "msg_mock",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 9, "output_tokens": 1},
    }
    frames = [
        _sse({"type": "message_start", "message": message}, "message_start"),
        _sse(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
            "content_block_start",
        ),
    ]
    for i in range(chunks):
        delta = {"type": "text_delta", "text": f"tok{i} "}
        frames.append(
            _sse({"type": "content_block_delta", "index": 0, "delta": delta}, "content_block_delta")
        )
    frames += [
        _sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        _sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": chunks},
            },
            "message_delta",
        ),
        _sse({"type": "message_stop"}, "message_stop"),
    ]
    return frames


def _head(status: str, content_type: bytes, length: int | None) -> bytes:
    framing = b"transfer-encoding: chunked" if length is None else b"content-length: %d" % length
    return (
        b"HTTP/1.1 "
        + status.encode()
        + b"\r\ncontent-type: "
        + content_type
        + b"\r\n"
        + framing
        + b"\r\n\r\n"
    )


class Answers:
    """Every answer, encoded once at startup."""

    def __init__(self, chunks: int, long_chunks: int = LONG_CHUNKS) -> None:
        json_type = b"application/json"
        sse_type = b"text/event-stream"
        self.long_stream = [_head("200 OK", sse_type, None), *_chunked(openai_stream(long_chunks))]
        # The head and the first frame of a stream, which then stays open and silent.
        self.idle_stream = self.long_stream[:2]
        body = openai_reply()
        self.openai = _head("200 OK", json_type, len(body)) + body
        self.openai_stream = [_head("200 OK", sse_type, None), *_chunked(openai_stream(chunks))]
        body = anthropic_reply()
        self.anthropic = _head("200 OK", json_type, len(body)) + body
        self.anthropic_stream = [
            _head("200 OK", sse_type, None),
            *_chunked(anthropic_stream(chunks)),
        ]
        body = b'{"object":"list","data":[{"id":"mock-model","object":"model"}]}'
        self.models = _head("200 OK", json_type, len(body)) + body
        body = b'{"error":{"message":"not found","type":"not_found_error"}}'
        self.not_found = _head("404 Not Found", json_type, len(body)) + body


class MockProtocol(asyncio.Protocol):
    """One client connection: parse requests (content-length bodies) and answer from cache."""

    def __init__(self, answers: Answers, interval: float) -> None:
        self.answers = answers
        self.interval = interval
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.drips: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while self.transport is not None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].lower()
            length = 0
            at = head.find(b"\r\ncontent-length:")
            if at >= 0:
                stop = head.find(b"\r\n", at + 2)
                length = int(head[at + 17 : stop if stop > 0 else None])
            elif b"\r\ntransfer-encoding:" in head:
                self.transport.write(b"HTTP/1.1 411 Length Required\r\ncontent-length: 0\r\n\r\n")
                self.transport.close()
                return
            if len(self.buf) < end + 4 + length:
                return
            body = self.buf[end + 4 : end + 4 + length]
            self.buf = self.buf[end + 4 + length :]
            line = head[: head.find(b"\r\n")] if b"\r\n" in head else head
            close = line.endswith(b"http/1.0") or b"\r\nconnection: close" in head
            self.answer(line, body, close)

    def answer(self, line: bytes, body: bytes, close: bool) -> None:
        a = self.answers
        path = line.split(b" ")[1] if line.count(b" ") >= 2 else b""
        path = path.split(b"?")[0]
        assert self.transport is not None
        stream = b'"stream":true' in body or b'"stream": true' in body
        if path.endswith(b"/chat/completions") and stream and b'"mock-idle"' in body:
            self.transport.writelines(a.idle_stream)  # and nothing more: the client ends it
            return
        if path.endswith(b"/chat/completions"):
            reply: bytes | list[bytes] = a.openai_stream if stream else a.openai
            if stream and b'"mock-long"' in body:
                reply = a.long_stream
        elif path.endswith(b"/messages"):
            reply = a.anthropic_stream if stream else a.anthropic
        elif path.endswith(b"/models"):
            reply = a.models
        else:
            reply = a.not_found
        if isinstance(reply, bytes):
            self.transport.write(reply)
        elif self.interval:
            task = asyncio.ensure_future(self.drip(reply, close))
            self.drips.add(task)
            task.add_done_callback(self.drips.discard)
            return
        else:
            self.transport.writelines(reply)
        if close:
            self.transport.close()

    async def drip(self, parts: list[bytes], close: bool) -> None:
        for part in parts:
            if self.transport is None:
                return
            self.transport.write(part)
            await asyncio.sleep(self.interval)
        if close and self.transport is not None:
            self.transport.close()


async def serve(host: str, port: int, chunks: int, interval: float, long_chunks: int) -> None:
    answers = Answers(chunks, long_chunks)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: MockProtocol(answers, interval), host, port, backlog=2048, reuse_address=True
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"mock upstream listening on http://{host}:{port}/v1 (pid {os.getpid()})", flush=True)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--chunks", type=int, default=CHUNKS, help="stream frames (default 50)")
    parser.add_argument(
        "--long-chunks",
        type=int,
        default=LONG_CHUNKS,
        help="stream frames for model mock-long (default 1000)",
    )
    parser.add_argument(
        "--interval", type=float, default=0.0, help="seconds between stream frames (default 0)"
    )
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        run = asyncio.run
    else:
        run = uvloop.run
    run(serve(args.host, args.port, args.chunks, args.interval, args.long_chunks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
