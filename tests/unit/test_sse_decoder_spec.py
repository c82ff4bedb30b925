"""The SSE decoder against the rules of the SSE specification (the HTML standard's "event stream
interpretation"), each rule checked with its input split into chunks every possible way."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from gateway.streaming.sse import SSEDecoder, SSEFrame

BOM = "\ufeff".encode()


def splits(data: bytes) -> Iterator[list[bytes]]:
    """Every way to cut ``data`` into chunks (for inputs past 14 bytes: every way with at most
    three cuts, and byte by byte)."""
    positions = range(1, len(data))
    if len(data) <= 14:
        cut_sets: Iterator[tuple[int, ...]] = itertools.chain.from_iterable(
            itertools.combinations(positions, n) for n in range(len(data))
        )
    else:
        cut_sets = itertools.chain(
            itertools.chain.from_iterable(itertools.combinations(positions, n) for n in range(4)),
            [tuple(positions)],
        )
    for cuts in cut_sets:
        bounds = [0, *cuts, len(data)]
        yield [data[a:b] for a, b in itertools.pairwise(bounds)]


def decoded(chunks: list[bytes]) -> tuple[list[SSEFrame], SSEDecoder]:
    decoder = SSEDecoder()
    return [frame for chunk in chunks for frame in decoder.feed(chunk)], decoder


RULES = {
    "one data line (the short path)": (b"data: hi\n\n", [SSEFrame(None, "hi")]),
    "an event with no data dispatches nothing, and its type does not carry over": (
        b"event: x\n\ndata: y\n\n",
        [SSEFrame(None, "y")],
    ),
    "a comment alone dispatches nothing": (b": hello\n\ndata: a\n\n", [SSEFrame(None, "a")]),
    "an id alone dispatches nothing but is kept": (
        b"id: 5\n\ndata: z\n\n",
        [SSEFrame(None, "z", "5")],
    ),
    "a leading byte order mark is ignored": (BOM + b"data: a\n\n", [SSEFrame(None, "a")]),
    "a byte order mark later is part of the line": (
        b"data: a\n\n" + BOM + b"data: b\n\n",
        [SSEFrame(None, "a")],
    ),
    "only one leading byte order mark is ignored": (BOM + BOM + b"data: a\n\n", []),
    "the event type names the event, then resets": (
        b"event: add\ndata: 1\n\ndata: 2\n\n",
        [SSEFrame("add", "1"), SSEFrame(None, "2")],
    ),
    "an empty event type is the default": (b"event\ndata: 1\n\n", [SSEFrame(None, "1")]),
    "data lines join with line feeds": (
        b"data: a\ndata:\ndata: b\n\n",
        [SSEFrame(None, "a\n\nb")],
    ),
    "a field without a colon is the whole line, with an empty value": (
        b"data\n\ndata\ndata\n\n",
        [SSEFrame(None, ""), SSEFrame(None, "\n")],
    ),
    "only one space after the colon is dropped": (b"data:  x \n\n", [SSEFrame(None, " x ")]),
    "no space after the colon": (b"data:x\n\n", [SSEFrame(None, "x")]),
    "unknown fields are ignored": (b"foo: bar\ndata: a\n\n", [SSEFrame(None, "a")]),
    "CR, LF and CRLF all end lines": (
        b"data: a\r\ndata: b\rdata: c\n\r\n",
        [SSEFrame(None, "a\nb\nc")],
    ),
    "CR CR is two line ends": (
        b"data: a\r\rdata: b\r\n\r\n",
        [SSEFrame(None, "a"), SSEFrame(None, "b")],
    ),
    "the last id persists, an id with NUL is ignored": (
        b"id: 1\ndata: a\n\nid: x\x00y\ndata: b\n\n",
        [SSEFrame(None, "a", "1"), SSEFrame(None, "b", "1")],
    ),
    "an empty id clears it": (
        b"id: 1\ndata: a\n\nid\ndata: b\n\n",
        [SSEFrame(None, "a", "1"), SSEFrame(None, "b", "")],
    ),
    "text is UTF-8 wherever the chunks are cut": (
        "data: é✓\n\n".encode(),
        [SSEFrame(None, "é✓")],
    ),
    "an unfinished event is not dispatched": (b"data: a\n\ndata: b\n", [SSEFrame(None, "a")]),
}


@pytest.mark.parametrize("rule", RULES)
def test_decoder_rule_holds_for_every_split(rule: str):
    data, expected = RULES[rule]
    count = 0
    for chunks in splits(data):
        frames, _ = decoded(chunks)
        assert frames == expected, chunks
        count += 1
    assert count >= len(data)  # the splits were really tried


@pytest.mark.parametrize(
    ("data", "retry"),
    [
        (b"retry: 3000\ndata: a\n\n", 3000),
        (b"retry: 3000\n\n", 3000),  # dispatches nothing, still sets the retry
        (b"retry: 3s\ndata: a\n\n", None),
        (b"retry: -1\ndata: a\n\n", None),
        (b"retry: \xd9\xa3\ndata: a\n\n", None),  # an Arabic-Indic digit is not ASCII
    ],
)
def test_retry_is_kept_when_it_is_ascii_digits(data: bytes, retry: int | None):
    for chunks in splits(data):
        frames, decoder = decoded(chunks)
        assert decoder.retry == retry, chunks
        assert [f.data for f in frames] == (["a"] if b"data" in data else [])


def test_last_event_id_follows_events_that_dispatch_nothing():
    for chunks in splits(b"id: 1\ndata: a\n\nid: 2\n\n"):
        frames, decoder = decoded(chunks)
        assert frames == [SSEFrame(None, "a", "1")]
        assert decoder.last_event_id == "2"


def test_a_stream_of_only_part_of_a_byte_order_mark_is_text():
    decoder = SSEDecoder()
    assert decoder.feed(BOM[:2]) == []
    assert decoder.feed(b"data: a\n\n") == []  # the half mark began a line that is no field
    assert decoder.feed(b"data: b\n\n") == [SSEFrame(None, "b")]


def test_end_also_flushes_an_unfinished_event_for_lenient_callers():
    decoder = SSEDecoder()
    assert decoder.feed(BOM + b"event: x\n\ndata: tail") == []
    assert decoder.end() == [SSEFrame(None, "tail")]
