"""``/metrics`` under ``--workers``: every worker's metrics in every scrape.

Each worker keeps its own counts (recording them stays plain arithmetic on its event loop). The
supervisor makes a private directory (mode 0700) before it forks; each worker answers its own
exposition on a Unix socket there, named for its pid, to whoever connects. The worker that
a scrape reaches asks the others at once, concurrently, and adds everything up
(:func:`gateway.core.metrics.merge`): each scrape is whole and current, nothing is written to
disk, and a worker that does not answer within a second (hung, or being replaced) is left out of
that scrape, which ``hookgate_metrics_workers`` shows. The socket of a worker that died is
removed by the next scrape.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable

#: Longest wait for another worker's metrics.
ASK_TIMEOUT = 1.0


class Peers:
    """This worker's socket, and the way to the others'."""

    def __init__(self, directory: str, exposition: Callable[[], bytes]) -> None:
        self.directory = directory
        self.exposition = exposition
        self.own = os.path.join(directory, f"{os.getpid()}.sock")
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(self._answer, path=self.own)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        with contextlib.suppress(OSError):
            os.unlink(self.own)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(self.exposition())
            await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def others(self) -> list[bytes]:
        """The expositions of the other workers that answer in time."""
        try:
            names = os.listdir(self.directory)
        except OSError:
            return []
        paths = [os.path.join(self.directory, n) for n in names if n.endswith(".sock")]
        found = await asyncio.gather(*(self._ask(p) for p in paths if p != self.own))
        return [f for f in found if f]

    async def _ask(self, path: str) -> bytes | None:
        try:
            async with asyncio.timeout(ASK_TIMEOUT):
                reader, writer = await asyncio.open_unix_connection(path)
                try:
                    return await reader.read()
                finally:
                    writer.close()
        except (OSError, TimeoutError):
            _forget_if_dead(path)
            return None


def _forget_if_dead(path: str) -> None:
    """Remove the socket of a worker that is gone (it could not remove it itself)."""
    try:
        pid = int(os.path.basename(path).removesuffix(".sock"))
        os.kill(pid, 0)
    except ProcessLookupError:
        with contextlib.suppress(OSError):
            os.unlink(path)
    except (ValueError, OSError):
        pass
