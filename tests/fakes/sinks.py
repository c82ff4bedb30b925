"""A request log sink whose writes hang until the test releases them (a destination that is
stuck)."""

from __future__ import annotations

import asyncio
from typing import Any


class StuckSink:
    def __init__(self, config: Any, gateway: Any) -> None:
        self.release = asyncio.Event()
        self.written: list[dict[str, Any]] = []

    async def start(self) -> None:
        return None

    async def write(self, records: list[dict[str, Any]]) -> None:
        await self.release.wait()
        self.written += records

    async def close(self) -> None:
        return None
