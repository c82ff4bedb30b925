"""The SSE decoder: every frame whatever the split and line ends; and which upstream frames
carry content only."""

from __future__ import annotations

import random

import pytest

from gateway.backends.openai import content_only
from gateway.streaming.sse import SSEDecoder, SSEFrame

STREAM = (
    b": a comment first\n"
    b'data: {"n": 1}\n\n'
    b'event: message_start\ndata: {"n": 2}\n\n'
    b"data: first line\ndata: second line\n\n"
    b"id: 7\ndata:no space\n\n"
    b"event: ping\n\n"
    b"\n\n"
    b"data: after blank lines\n\n"
    b"data: [DONE]\n\n"
)
FRAMES = [
    SSEFrame(None, '{"n": 1}'),
    SSEFrame("message_start", '{"n": 2}'),
    SSEFrame(None, "first line\nsecond line"),
    SSEFrame(None, "no space", "7"),
    # "event: ping" with no data dispatches nothing (the SSE specification)
    SSEFrame(None, "after blank lines", "7"),
    SSEFrame(None, "[DONE]", "7"),
]


def decode(chunks: list[bytes]) -> list[SSEFrame]:
    decoder = SSEDecoder()
    frames = [f for chunk in chunks for f in decoder.feed(chunk)]
    return frames + decoder.end()


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_decoder_reads_every_frame_whatever_the_split_and_line_ends(newline: bytes):
    data = STREAM.replace(b"\n", newline)
    assert decode([data]) == FRAMES
    rng = random.Random(7)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(data)), rng.randint(1, 12)))
        chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        assert decode(chunks) == FRAMES, chunks
    assert decode([data[i : i + 1] for i in range(len(data))]) == FRAMES


def test_decoder_end_flushes_a_last_frame_without_its_blank_line():
    assert decode([b"data: one\n\ndata: tail"]) == [SSEFrame(None, "one"), SSEFrame(None, "tail")]
    assert decode([b"data: one\n\n\n"]) == [SSEFrame(None, "one")]


def test_content_only_frames_are_recognised_conservatively():
    assert content_only(b'data: {"choices":[{"delta":{"content":"x"},"finish_reason":null}]}')
    assert content_only(
        b'data: {"choices":[{"delta":{"content":"say \\"error\\""},"finish_reason":null}],'
        b'"usage":null}'
    )
    for frame in (
        b'data: {"choices":[{"delta":{},"finish_reason":"stop"}]}',
        b'data: {"choices":[],"usage":{"prompt_tokens":1}}',
        b'data: {"choices":[{"delta":{},"finish_reason":null}],"usage":{"total_tokens":3}}',
        b'data: {"error":{"message":"boom"},"finish_reason":null}',
        b'data: {"choices": [{"delta": {"content": "x"}, "finish_reason": null}]}',
    ):
        assert not content_only(frame), frame


GOOD = b'{"choices":[{"delta":{"content":"x"},"finish_reason":null}]}'


@pytest.mark.parametrize(
    "bad",
    [
        b'{"choices":[{"delta":{"content":"x"},"finish_reason":null}]',  # cut short
        b'{"choices":[{"delta":{"content":"x",},"finish_reason":null}]}',  # trailing comma
        b'{"choices":[{"delta":{"content":tru},"finish_reason":null}]}',  # bad literal
        b'{"choices":[{"delta":{"content":"\xff"},"finish_reason":null}]}',  # not UTF-8
        b'{"choices":[{"delta":{"content":"x"},"finish_reason":null}]}, 1',  # two values
        b'{"choices":[{"delta":{"content":1e},"finish_reason":null}]}',  # bad number
        b'{"choices":[{"delta":{"content":"x"},"finish_reason":null}]}}',  # trailing brace
    ],
)
def test_a_skipping_decoder_drops_no_frame_of_a_read_with_a_malformed_one(bad: bytes):
    decoder = SSEDecoder(lambda block: True)
    # A read of well-formed frames only: all dropped, nobody needs to read them.
    assert decoder.feed(b"data: " + GOOD + b"\n\ndata: " + GOOD + b"\n\n") == []
    # A read with a malformed frame among them: every frame comes back, so the reader meets it.
    frames = decoder.feed(b"data: " + GOOD + b"\n\ndata: " + bad + b"\n\n")
    assert [f.data for f in frames] == [GOOD.decode(), bad.decode("utf-8", "replace")]


def test_a_skipping_decoder_drops_well_formed_frames_that_are_not_ascii():
    decoder = SSEDecoder(lambda block: True)
    text = '{"choices":[{"delta":{"content":"héllo 🌍"},"finish_reason":null}]}'.encode()
    assert decoder.feed(b"data: " + text + b"\n\n") == []
