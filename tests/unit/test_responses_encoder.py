"""The Responses stream encoder's final response: built before the last frames are sent (so it
can be stored first), and a failure after that (the store failed) still ends the stream as a
failed response, with every item's frames in order."""

from __future__ import annotations

import orjson
from support.openapi import validate

from gateway import Error, Finish, Start, TextDelta, Unavailable
from gateway.protocols.openai.responses import Shell
from gateway.protocols.openai.responses_stream import ResponseEncoder


def frames(data: bytes) -> list[dict]:
    out = []
    for chunk in data.decode().split("\n\n"):
        if chunk.strip():
            event = orjson.loads(chunk.split("data: ", 1)[1])
            validate(event, "ResponseStreamEvent")
            out.append(event)
    return out


def test_result_then_end_sends_the_same_response():
    encoder = ResponseEncoder(Shell({"input": "x"}, "m", store=True))
    sent = b"".join(encoder.encode(ev) for ev in (Start(), TextDelta("hi"), Finish("stop")))
    final = encoder.result()
    assert final["status"] == "completed" and final["store"] is True
    events = frames(sent + encoder.end())
    assert events[-1]["type"] == "response.completed"
    assert events[-1]["response"] == final
    assert [e["sequence_number"] for e in events] == list(range(len(events)))


def test_a_failure_after_the_result_fails_the_response():
    encoder = ResponseEncoder(Shell({"input": "x"}, "m", store=True))
    sent = b"".join(encoder.encode(ev) for ev in (Start(), TextDelta("hi")))
    encoder.result()
    sent += encoder.encode(Error(Unavailable("state store down")))
    events = frames(sent + encoder.end())
    types = [e["type"] for e in events]
    assert types[-3:] == ["response.output_item.done", "error", "response.failed"]
    assert events[-1]["response"]["status"] == "failed"
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == "hi"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
