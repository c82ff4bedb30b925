"""Renaming the upstream's model in relayed bytes (gateway.protocols.model_name)."""

from __future__ import annotations

import orjson

from gateway.streaming import model_name
from gateway.streaming.sse import FrameRelay


def test_a_whole_body_says_the_asked_name_and_nothing_else_changes():
    body = b'{"id":"x","model":"up-model","choices":[{"message":{"content":"hi"}}]}'
    for upstream in ("up-model", None, "not-what-it-says"):  # found by name, else by pattern
        out = model_name.in_body(body, "public", upstream)
        assert orjson.loads(out) == {**orjson.loads(body), "model": "public"}
        # Byte for byte otherwise, and as long (spaces after the colon make up the length).
        assert len(out) == len(body)
        assert out.replace(b'":  "public"', b'":"up-model"') == body
    longer = model_name.in_body(body, "a-longer-public-name", "up-model")
    assert orjson.loads(longer) == {**orjson.loads(body), "model": "a-longer-public-name"}


def test_spacing_escapes_and_names_that_need_escaping():
    body = b'{"model" :  "meta-llama\\/Llama \\"3\\"", "x": 1}'
    out = model_name.in_body(body, 'caf\u00e9 "fast"')
    assert orjson.loads(out) == {"model": 'caf\u00e9 "fast"', "x": 1}


def test_bodies_without_a_model_or_with_the_asked_name_are_left_alone():
    assert model_name.in_body(b'{"object":"list"}', "m") == b'{"object":"list"}'
    same = b'{"model":"m","n":1}'
    assert model_name.in_body(same, "m") is same
    assert model_name.in_body(same, "m", "m") is same


def test_content_that_quotes_a_model_member_is_not_touched():
    text = '{"model":"up"} is what it said'
    body = orjson.dumps({"choices": [{"text": text}], "model": "up"})
    out = orjson.loads(model_name.in_body(body, "public"))
    assert out == {"choices": [{"text": text}], "model": "public"}


def test_a_relayed_stream_learns_the_upstream_name_once_and_renames_every_read():
    relay = FrameRelay("public")
    assert relay.feed(b": keep-alive\n\n") == b": keep-alive\n\n"  # nothing to learn from yet
    first = b'data: {"model":"up-2024-08-06","choices":[]}\n\ndata: {"model":"up-2024-08-06"}\n\n'
    out = relay.feed(first)
    assert len(out) == len(first)
    assert [orjson.loads(f[6:]) for f in out.split(b"\n\n")[:2]] == [
        {"model": "public", "choices": []},
        {"model": "public"},
    ]
    later = b'data: {"model":"up-2024-08-06","choices":[{"delta":{"content":"up-2024-08-06"}}]}'
    assert relay.feed(later[:30]) == b""  # half a frame is held back, as before
    out = relay.feed(later[30:] + b"\n\n")
    assert orjson.loads(out[6:]) == {
        "model": "public",
        "choices": [{"delta": {"content": "up-2024-08-06"}}],  # content keeps its words
    }
    assert relay.feed(b'data: {"model":"up-2024-08-06"}') == b""
    assert orjson.loads(relay.end()[6:]) == {"model": "public"}  # an unclosed last frame too


def test_a_relayed_stream_that_already_says_the_asked_name_is_passed_as_it_is():
    relay = FrameRelay("public")
    data = b'data: {"model":"public"}\n\n'
    assert relay.feed(data) is data
    assert relay.feed(data) is data


def test_a_relay_without_a_name_passes_frames_as_they_are():
    relay = FrameRelay()
    data = b'data: {"model":"up"}\n\n'
    assert relay.feed(data) is data
