"""A test server on an event loop in a thread of its own: for tests whose code is synchronous
(a gateway process in front of it), or whose server should not share the test's loop."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Self


class ThreadedServer:
    """:meth:`running` starts the server (:meth:`_start`, which sets :attr:`port`) in a thread
    and stops it when the block ends."""

    #: What the server is, in the error when it does not start.
    what = "the test server"

    def __init__(self) -> None:
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()

    async def _start(self) -> Callable[[], Awaitable[None]]:
        """Start serving, set :attr:`port`; return what stops it."""
        raise NotImplementedError

    @contextlib.contextmanager
    def running(self) -> Iterator[Self]:
        thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)
        thread.start()
        if not self._ready.wait(30):
            raise AssertionError(f"{self.what} did not start")
        try:
            yield self
        finally:
            loop, stop = self._loop, self._stop
            if loop is not None and stop is not None:
                loop.call_soon_threadsafe(stop.set)
            thread.join(30)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        stop = await self._start()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await stop()
