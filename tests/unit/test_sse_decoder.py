"""The SSE decoder: every frame whatever the split and line ends; and which upstream frames
carry content only."""

from __future__ import annotations

import random

import orjson
import pytest

from gateway.backends.openai import CONTENT_ONLY, content_chunks, content_only
from gateway.streaming.sse import FrameSkip, SSEDecoder, SSEFrame

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


CONTENT = b'{"choices":[{"index":0,"delta":{"content":"w%d"},"finish_reason":null}]}'
FINISH = b'{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}'
USAGE = b'{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":9}}'


def _frames(*datas: bytes) -> bytes:
    return b"".join(b"data: " + d + b"\n\n" for d in datas)


def _array(*datas: bytes) -> bytes:
    return b"[" + b",".join(datas) + b"]"


def test_content_chunks_answers_for_several_frames_at_once():
    contents = [CONTENT % i for i in range(5)]
    assert content_chunks(_array(*contents), 5)
    assert not content_chunks(_array(*contents), 4)  # one value more than frames: no
    for odd in (
        FINISH,
        USAGE,
        b'{"error":{"message":"boom"}}',
        # Two choices, one finished: not content only, whatever the other says.
        b'{"choices":[{"finish_reason":null},{"finish_reason":"stop"}]}',
        b'{"choices":[{"delta":{"content":"x",},"finish_reason":null}]}',  # malformed
        b"[DONE]",
    ):
        assert not content_chunks(_array(*contents[:2], odd, *contents[2:]), 6), odd
    # Explicit nulls are content only; so is a frame that names no finish at all.
    assert content_chunks(_array(b'{"choices":[{"delta":{}}],"usage":null,"error":null}'), 1)


@pytest.mark.parametrize("chunks", [1, 2, 7])
def test_a_skipping_decoder_returns_what_the_parser_needs_whatever_the_reads(chunks: int):
    """A stream of content frames with a finish, usage and [DONE] in the middle and at the end,
    read in one or several pieces: the skipping decoder returns exactly the frames that are not
    content only, in order, and a plain decoder returns every frame."""
    datas = [CONTENT % i for i in range(20)] + [FINISH]
    datas += [CONTENT % i for i in range(20, 30)] + [FINISH, USAGE, b"[DONE]"]
    data = _frames(*datas)
    size = -(-len(data) // chunks)
    pieces = [data[i : i + size] for i in range(0, len(data), size)]
    skipping = SSEDecoder(CONTENT_ONLY)
    kept = [f.data for piece in pieces for f in skipping.feed(piece)] + [
        f.data for f in skipping.end()
    ]
    assert kept == [d.decode() for d in datas if not content_only(d)]
    plain = SSEDecoder()
    every = [f.data for piece in pieces for f in plain.feed(piece)]
    assert every == [d.decode() for d in datas]


def test_a_skipping_decoder_asks_about_other_frame_shapes_one_by_one():
    """Frames with more than one line, an event name or a comment among content frames: the
    decoder does not ask about the read at once, and still drops only single data lines."""
    contents = [CONTENT % i for i in range(6)]
    for odd in (b"event: ping\ndata: {}\n\n", b": keep-alive\n\n", b"data: a\ndata: b\n\n"):
        asked: list[bytes] = []

        def skip(block: bytes, asked: list[bytes] = asked) -> bool:
            asked.append(block)
            return content_only(block)

        decoder = SSEDecoder(FrameSkip(skip, content_chunks))
        frames = decoder.feed(_frames(*contents[:3]) + odd + _frames(*contents[3:]))
        assert all(b"\n" not in block for block in asked), odd
        expected = [f.data for f in SSEDecoder().feed(odd)]
        assert [f.data for f in frames] == expected


def test_a_skipping_decoder_meets_a_malformed_frame_in_a_read_asked_about_at_once():
    contents = [CONTENT % i for i in range(8)]
    bad = b'{"choices":[{"delta":{"content":"x",},"finish_reason":null}]}'
    decoder = SSEDecoder(CONTENT_ONLY)
    frames = decoder.feed(_frames(*contents[:2], bad, *contents[2:]))
    # Every frame of the read comes back, the malformed one among them.
    assert [f.data for f in frames] == [d.decode() for d in [*contents[:2], bad, *contents[2:]]]
    # The next read, well-formed, is dropped whole again.
    assert decoder.feed(_frames(*contents)) == []


def test_a_skipping_decoder_checks_utf8_of_a_read_asked_about_at_once():
    contents = [CONTENT % i for i in range(8)]
    bad = b'{"choices":[{"delta":{"content":"\xff"},"finish_reason":null}]}'
    good = '{"choices":[{"delta":{"content":"h\u00e9llo \U0001f30d"},"finish_reason":null}]}'
    decoder = SSEDecoder(CONTENT_ONLY)
    frames = decoder.feed(_frames(*contents[:2], bad, *contents[2:]))
    assert len(frames) == 9  # every frame back: the reader meets the one that is not UTF-8
    assert decoder.feed(_frames(*contents[:2], good.encode(), *contents[2:])) == []


def test_a_skipping_decoder_given_one_frame_a_read_returns_what_the_parser_needs():
    """A stream read one frame at a time (a model's tokens as they come): the frames that are
    content only are dropped, and every other one, malformed ones among them, comes back."""
    bad = [
        b'{"choices":[{"delta":{"content":"\xff"},"finish_reason":null}]}',  # not UTF-8
        b'{"choices":[{"delta":{"content":"x",},"finish_reason":null}]}',  # trailing comma
        b'{"choices":[{"delta":{"content":"x"},"finish_reason":null}]}, 1',  # two values
    ]
    nonascii = '{"choices":[{"delta":{"content":"h\u00e9llo"},"finish_reason":null}]}'.encode()
    datas = [CONTENT % 1, nonascii, *bad, CONTENT % 2, FINISH, USAGE, b"[DONE]"]
    decoder = SSEDecoder(CONTENT_ONLY)
    kept = [f.data for d in datas for f in decoder.feed(b"data: " + d + b"\n\n")]
    assert kept == [d.decode("utf-8", "replace") for d in [*bad, FINISH, USAGE, b"[DONE]"]]
    assert decoder.completed == 1


def test_a_per_frame_test_is_never_given_several_frames():
    """A plain test (a backend plugin's, written for one frame) is asked about each frame."""
    asked: list[bytes] = []

    def skip(block: bytes) -> bool:
        asked.append(block)
        return content_only(block)

    decoder = SSEDecoder(skip)
    assert decoder.feed(_frames(*[CONTENT % i for i in range(10)])) == []
    assert len(asked) == 10
    assert all(b"\n" not in block for block in asked)


@pytest.mark.parametrize(
    "block",
    [
        b"event: message_start\ndata: {}",
        b"event: \ndata: x",  # an empty name is the default event
        b"event:  two spaces\ndata:  kept",
        b"event: a\ndata: b\ndata: c",
        b"event: a\nid: 9\ndata: b",
        b"event: a\ndata: b\nid: 3",
        b"event: a\n: comment\ndata: b",
        b"event: caf\xc3\xa9\ndata: \xff",
    ],
)
def test_an_event_and_one_data_line_decode_as_the_general_parser_does(block: bytes):
    fast = SSEDecoder().feed(block + b"\n\n" + block + b"\n\n")
    general: list[SSEFrame] = []
    SSEDecoder()._parse(block, general)
    assert fast == general * 2


def _as_json(data: bytes | str) -> object:
    """A frame's data as a JSON reader meets it (invalid UTF-8 replaced, as feed() decodes)."""
    if isinstance(data, bytes):
        data = data.decode("utf-8", "replace")
    try:
        return ("json", orjson.loads(data))
    except orjson.JSONDecodeError:
        return ("text", data)


def _blocks(rng: random.Random) -> list[bytes]:
    """A stream's events: mostly what model servers send, all with one shape or mixed, and now
    and then what the general parser must meet."""
    shape = rng.randrange(3)  # data lines only, named events only, mixed
    out = []
    for _ in range(rng.randrange(1, 12)):
        obj = orjson.dumps({"type": "x", "text": rng.choice(["a", "event: b", "\n", "\u2603"])})
        named = shape == 1 or (shape == 2 and rng.random() < 0.5)
        block = b"event: " + rng.choice([b"delta", b'q"uote', b""]) + b"\ndata: " + obj
        out.append(block if named else b"data: " + obj)
        if rng.random() < 0.15:
            out[-1] = rng.choice(
                [
                    b"data: [DONE]",
                    b"id: 5\ndata: " + obj,
                    b": comment\ndata: " + obj,
                    b'data: {"a":\ndata: 1}',
                    b"event: alone",
                    b"data: \xff",
                    b"data: 1,2",
                    b"data: ",
                    b"event: two\ndata: " + obj + b"\ndata: " + obj,
                ]
            )
    return out


def test_json_data_of_a_read_is_what_the_frames_carry_whatever_the_shape_and_split():
    rng = random.Random(7)
    fast = 0
    for _ in range(1500):
        ends = [rng.choice([b"\n\n", b"\r\n\r\n", b"\n\n\n"]) for _ in range(12)]
        text = b"".join(b + e for b, e in zip(_blocks(rng), ends, strict=False))
        text += rng.choice([b"", b'data: {"partial', b"\n"])
        cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, rng.randrange(4))))
        frames, data = SSEDecoder(), SSEDecoder()
        for start, end in zip([0, *cuts], [*cuts, len(text)], strict=True):
            chunk = text[start:end]
            expected = [_as_json(f.data) for f in frames.feed(chunk)]
            parsed, items = data.feed_json(chunk)
            got = [
                _as_json(v) if isinstance(v, bytes) or not parsed else ("json", v) for v in items
            ]
            assert got == expected
            assert data.completed == frames.completed
            fast += parsed and len(items) > 1
        assert [_as_json(f.data) for f in data.end()] == [_as_json(f.data) for f in frames.end()]
        assert data.last_event_id == frames.last_event_id
    assert fast  # the one-pass parse was met, not only the fallback


def test_a_reads_end_marker_is_left_out_of_the_one_pass_and_handed_on_as_bytes():
    """An OpenAI stream's last read ends with ``[DONE]``, which is no JSON: the frames before it
    are still parsed in one pass, and the marker comes last as its bytes."""
    decoder = SSEDecoder()
    read = b'data: {"a":1}\n\ndata: {"b":[2]}\n\ndata: [DONE]\n\n'
    assert decoder.feed_json(read) == (True, [{"a": 1}, {"b": [2]}, b"[DONE]"])
    assert decoder.completed == 3
    # Only the last one: a marker in the middle, or a last event of two lines, is read as feed()
    # reads it.
    middle = b'data: {"a":1}\n\ndata: [DONE]\n\ndata: {"b":2}\n\n'
    assert SSEDecoder().feed_json(middle) == (False, [b'{"a":1}', b"[DONE]", b'{"b":2}'])
    lines = b'data: {"a":1}\n\ndata: x\ndata: y\n\n'
    assert SSEDecoder().feed_json(lines) == (False, [b'{"a":1}', "x\ny"])
