"""The OpenAI chunk encoder's short path for text deltas writes what its general path writes."""

from __future__ import annotations

import json

import pytest

from gateway.canonical import Finish, TextDelta
from gateway.protocols.openai.chat_stream import ChunkEncoder

TEXTS = ["hi", "", 'a "quote" and a \\ backslash', "line\nbreak\ttab", "héllo 🌍", "\x00\u2028"]


@pytest.mark.parametrize("include_usage", [False, True])
def test_text_deltas_are_the_chunks_the_general_path_makes(include_usage: bool):
    short = ChunkEncoder("gpt-x", include_usage, id="chatcmpl-1")
    general = ChunkEncoder("gpt-x", include_usage, id="chatcmpl-1")
    general._head = short._head  # same created time
    for text in TEXTS:
        made = short.encode(TextDelta(text))
        if general._role_sent:
            expected = general._delta({"content": text})
        else:
            expected = general.encode(TextDelta(text))  # the first carries the role too
        assert made == expected
    frames = [
        json.loads(line[6:])
        for text in TEXTS
        for line in short.encode(TextDelta(text)).decode().split("\n\n")
        if line
    ]
    assert [f["choices"][0]["delta"]["content"] for f in frames] == TEXTS
    assert all(("usage" in f) is include_usage for f in frames)
    assert short.encode(Finish("stop")).startswith(b'data: {"id":"chatcmpl-1"')
