"""Frames from a worker to a process of its own (the span exporter, the SQLite ledger's
writer), and the scheduling class such a process keeps.

Such a process is started through this file, run by path: ``python sidecar.py PROGRAM ARGS...``
loads PROGRAM (a file of the gateway, by path) with this module as ``hookgate_sidecar`` and calls
its ``main()`` with ``sys.argv`` ``[PROGRAM, ARGS...]`` (:func:`main`). So the process imports
nothing of the gateway, whose import would cost it most of a second and tens of megabytes, and
this module imports only the standard library.

A frame: a 4-byte big-endian length, the time the worker wrote it (8 bytes, big-endian,
``time.monotonic_ns()``: the same clock in every process of a machine), then a list of records
(``marshal``: the fastest way for plain tuples between two processes of one Python).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import marshal
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

log = logging.getLogger(__name__)

#: This file: what a process of its own is started with (see the module's docstring).
PATH = Path(__file__).resolve()

#: Seconds a frame may wait in the pipe before an idle process takes ordinary priority.
LATE = 0.25
#: The pipe's own buffer, asked of the kernel (Linux gives 64 KiB, less than a batch's frame:
#: each would be written in two or three turns of the loop, waking the process as often); the
#: most an unprivileged process may ask is ``/proc/sys/fs/pipe-max-size``.
PIPE_SIZE = 1024 * 1024


async def start(program: Path, *args: str, answers: bool = False) -> asyncio.subprocess.Process:
    """The process of ``program`` (through this file: see the module's docstring), frames to
    go to its standard input (a pipe of :data:`PIPE_SIZE`); with ``answers``, its standard
    output a pipe too."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(PATH),
        str(program),
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE if answers else None,
    )
    assert proc.stdin is not None
    widen(proc.stdin, PIPE_SIZE)
    return proc


async def stop(proc: asyncio.subprocess.Process, grace: float, what: str) -> None:
    """End ``proc``'s input and wait for it to finish what it has (``grace`` seconds at most;
    then it is killed)."""
    assert proc.stdin is not None
    with contextlib.suppress(ConnectionError):
        await proc.stdin.drain()
    proc.stdin.close()
    try:
        async with asyncio.timeout(grace):
            await proc.wait()
    except TimeoutError:
        log.error("%s did not stop in time: killed", what)
        proc.kill()
        await proc.wait()


def widen(stdin: asyncio.StreamWriter, size: int) -> None:
    """Ask for a pipe buffer of ``size`` bytes (Linux), or of what the system allows at most;
    where neither can be had, the pipe stays as it is."""
    try:
        import fcntl
    except ImportError:  # not a POSIX system
        return
    pipe = stdin.transport.get_extra_info("pipe")
    setting = getattr(fcntl, "F_SETPIPE_SZ", None)
    if pipe is None or setting is None:
        return
    try:
        most = int(Path("/proc/sys/fs/pipe-max-size").read_text())
    except (OSError, ValueError):
        most = size
    with contextlib.suppress(OSError):
        fcntl.fcntl(pipe.fileno(), setting, min(size, most))


def frame(records: list[Any], written: int) -> bytes:
    """``records`` as a frame written at ``written`` (``time.monotonic_ns()``)."""
    data = marshal.dumps(records)
    return (len(data) + 8).to_bytes(4, "big") + written.to_bytes(8, "big") + data


def _read(stream: BinaryIO, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = stream.read(n - len(data))
        if not chunk:
            return b""
        data += chunk
    return data


def frames(stream: BinaryIO) -> Iterator[tuple[int, Any]]:
    """``(written, records)`` of each frame on ``stream``, until its end."""
    while True:
        head = _read(stream, 4)
        if not head:
            return
        body = _read(stream, int.from_bytes(head, "big"))
        if len(body) < 8:
            return
        yield int.from_bytes(body[:8], "big"), marshal.loads(body[8:])


def background(idle: bool) -> bool:
    """Move this process to Linux's idle scheduling class (``SCHED_IDLE``), or back to the
    ordinary one. Idle, it runs on CPU time no other process wants. Woken by each batch the
    gateway writes to its pipe, a process of ordinary priority is placed on the waking
    worker's core and takes turns with it; measured with the span exporter, a worker under load
    was on its core 93% of the time with the exporter beside it, 99% with the exporter idle.
    Whether this process is idle now (where there is no such class, it stays as it was)."""
    policy = getattr(os, "SCHED_IDLE" if idle else "SCHED_OTHER", None)
    if policy is None:
        return not idle
    try:
        os.sched_setscheduler(0, policy, os.sched_param(0))
    except OSError:
        return not idle
    return idle


class Turns:
    """When a process reading frames keeps to the idle class (with ``idle``: :func:`background`).

    It starts at ordinary priority (its imports and first frame are not held back), takes the
    idle class after a frame that came in time, and goes back to ordinary priority before
    handling a frame that waited more than :data:`LATE` seconds in the pipe (the machine's
    cores were all busy, and an idle process runs only on time no other wants), until one comes
    in time again. So its work is late by about that much at most when the machine is
    saturated, never held back for as long as it stays so."""

    def __init__(self, idle: Callable[[bool], bool] | None) -> None:
        self.idle = idle
        self.idling = False
        self.late = False

    def arrived(self, written: int) -> None:
        """Before handling a frame written at ``written``."""
        self.late = time.monotonic_ns() - written > LATE * 1e9
        if self.idle is not None and self.late and self.idling:
            self.idling = self.idle(False)

    def handled(self) -> None:
        """After handling it."""
        if self.idle is not None and not self.late and not self.idling:
            self.idling = self.idle(True)


def main() -> None:
    """``python sidecar.py PROGRAM ARGS...``: PROGRAM's ``main()``, this module importable to it
    as ``hookgate_sidecar``."""
    sys.modules["hookgate_sidecar"] = sys.modules[__name__]
    program = sys.argv[1]
    sys.argv = sys.argv[1:]
    spec = importlib.util.spec_from_file_location("hookgate_program", program)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main()


if __name__ == "__main__":
    main()
