"""Redis commands packed by hiredis are the bytes redis-py's own asyncio packer makes."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import DataError

from gateway import Count, Duration
from gateway.state.redis import PackedByHiredis, packed_by_hiredis

COMMANDS: list[tuple[Any, ...]] = [
    ("EVALSHA", "a" * 40, 1, "hg:budget:{vk-1}:key:vk-1:day:2026-12-01", 12345, 10**12, 90000),
    ("EVALSHA", "b" * 40, 1, "hg:budget:{vk-1}:key:vk-1:day:2026-12-01", -2345, 0),
    ("SET", "clé", "välue ✓", "PX", 60000),
    ("SET", b"k\r\n", b"\x00\xff", "NX"),
    ("SET", "k", memoryview(b"a view")),
    ("SET", "k", 0.1),
    ("SET", "k", 1e-7),
    ("SET", "k", float("inf")),
    ("SET", "k", 2**70),
    ("SET", "k", ""),
    ("SCRIPT LOAD", "return 1"),
    (b"CLIENT SETNAME", "hookgate"),
    ("PING",),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: str(c[0]))
def test_the_same_bytes_as_redis_py(command: tuple[Any, ...]) -> None:
    theirs = b"".join(Connection().pack_command(*command))
    ours = packed_by_hiredis(Connection)().pack_command(*command)
    assert b"".join(ours) == theirs


def test_many_commands_at_once() -> None:
    theirs = b"".join(Connection().pack_commands(COMMANDS))
    assert b"".join(packed_by_hiredis(Connection)().pack_commands(COMMANDS)) == theirs


@pytest.mark.parametrize("value", [None, True, [1], {"a": 1}])
def test_a_value_redis_takes_none_of_is_a_data_error(value: Any) -> None:
    with pytest.raises(DataError):
        Connection().pack_command("SET", "k", value)
    with pytest.raises(DataError):
        packed_by_hiredis(Connection)().pack_command("SET", "k", value)


@pytest.mark.parametrize("cls", [Connection, SSLConnection, UnixDomainSocketConnection])
def test_every_kind_of_connection_keeps_its_kind(cls: type[Any]) -> None:
    packed = packed_by_hiredis(cls)
    assert issubclass(packed, cls) and issubclass(packed, PackedByHiredis)


class Number(int):
    """An int of a type of its own, as the configuration's counts are."""


@pytest.mark.parametrize("value", [Number(7), bytearray(b"bytes"), Duration(1.5), Count(3)])
def test_a_type_hiredis_does_not_take_is_packed_by_redis_py(value: Any) -> None:
    command = ("EVALSHA", "a" * 40, 1, "k", value)
    theirs = b"".join(Connection().pack_command(*command))
    assert b"".join(packed_by_hiredis(Connection)().pack_command(*command)) == theirs
