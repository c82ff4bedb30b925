"""A load client for reload and drain tests: concurrent keep-alive connections (aiohttp's
client, which never retries a POST) sending chat requests, some streamed, in a thread of its
own, counting every answer and every failure."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Any

import aiohttp
import orjson


class Load:
    """``with Load(url, connections=32) as load:`` sends requests until the block ends.

    ``ok`` counts answers that came whole (status 200, a stream up to ``[DONE]``); ``failures``
    lists what went wrong otherwise (an error, a status, a cut stream); a request that takes
    longer than ``timeout`` is a failure too (a hang). ``prefixes`` counts the answers' first
    word, so a test sees which configuration answered.
    """

    def __init__(
        self, url: str, *, connections: int = 32, stream_every: int = 10, timeout: float = 15.0
    ) -> None:
        self.url = url + "/v1/chat/completions"
        self.connections = connections
        self.stream_every = stream_every
        self.timeout = timeout
        self.ok = 0
        self.failures: list[str] = []
        self.prefixes: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(self.timeout + 10)
        assert not self._thread.is_alive(), "the load client did not stop"

    async def _run(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.connections)
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            await asyncio.gather(*(self._worker(session, i) for i in range(self.connections)))

    async def _worker(self, session: aiohttp.ClientSession, index: int) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            stream = self.stream_every > 0 and (n + index) % self.stream_every == 0
            body = {
                "model": "echo",
                "stream": stream,
                "messages": [{"role": "user", "content": f"r{index}-{n}"}],
            }
            try:
                async with session.post(self.url, data=orjson.dumps(body)) as resp:
                    if resp.status != 200:
                        self.failures.append(f"status {resp.status}: {await resp.text()}")
                        continue
                    if stream:
                        text = await resp.text()
                        if not text.rstrip().endswith("data: [DONE]"):
                            self.failures.append(f"a stream cut short: {text[-200:]!r}")
                            continue
                        first = orjson.loads(text.split("data: ", 2)[1])
                        words = first["choices"][0]["delta"].get("content") or ""
                    else:
                        answer = await resp.json()
                        words = answer["choices"][0]["message"]["content"]
            except TimeoutError:
                self.failures.append("a request hung")
                continue
            except Exception as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
                continue
            self.ok += 1
            self.prefixes[(words.split() or [""])[0]] += 1
