"""A flood of slow readers, as a process of its own: ``python slow_readers.py PORT COUNT KEY``.

Opens COUNT connections to a gateway on 127.0.0.1:PORT (at most 500 connecting at once), sends
on each a streamed chat request of model ``slow`` with the key KEY, reads each answer's status
line and nothing more, and keeps every connection open. Prints ``connected {"200": n, ...}``
(the statuses, as JSON) once all are open, and on SIGTERM closes them all, prints ``closed`` and
exits 0. A connection that fails is counted under its error's name.

Run as a process so that its work (thousands of sockets in one event loop) does not slow the
test's own callers, whose waits are what a test measures.
"""

from __future__ import annotations

import asyncio
import json
import resource
import signal
import sys
from collections import Counter

GATE = 500


async def main(port: int, count: int, key: str) -> None:
    body = json.dumps(
        {"model": "slow", "stream": True, "messages": [{"role": "user", "content": "w " * 500}]}
    ).encode()
    request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\n"
        f"content-type: application/json\r\nauthorization: Bearer {key}\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body
    statuses: Counter[str] = Counter()
    writers: list[asyncio.StreamWriter] = []
    gate = asyncio.Semaphore(GATE)

    async def one() -> None:
        async with gate:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writers.append(writer)
                writer.write(request)
                line = await reader.readline()
                statuses[line.split()[1].decode() if line else "eof"] += 1
            except OSError as exc:
                statuses[type(exc).__name__] += 1

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await asyncio.gather(*(one() for _ in range(count)))
    print("connected", json.dumps(statuses), flush=True)
    await stop.wait()
    for writer in writers:
        writer.close()
    await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)
    print("closed", flush=True)


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]))
