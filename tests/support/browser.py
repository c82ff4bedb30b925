"""The console's browser tests' tools: Debian's Chromium driven headless by playwright, and the
folder where they leave screenshots for review (``test-output/console/``, git-ignored)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright

from support import ROOT

#: Where screenshots of each view go, one PNG per view and width.
SCREENSHOTS = ROOT / "test-output" / "console"


def chromium_path() -> str:
    """The system's Chromium (``apt-get install chromium``; ``scripts/test`` installs it):
    playwright drives it rather than downloading a browser of its own."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    raise AssertionError("Chromium is needed for the console's tests: apt-get install chromium")


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium_path())
        try:
            yield browser
        finally:
            await browser.close()


class Tab:
    """One page of the console, with what the browser said about it: console errors (a
    Content-Security-Policy violation among them) and every request the page made."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        self.requests: list[Any] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))
        page.on("request", lambda req: self.requests.append(req))

    def _console(self, msg: ConsoleMessage) -> None:
        if msg.type == "error":
            self.errors.append(msg.text)

    async def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        # From the top: a full-page shot of a scrolled page draws the sticky bar mid-page.
        await self.page.evaluate("window.scrollTo(0, 0)")
        await self.page.screenshot(path=path, full_page=True)
        return path
