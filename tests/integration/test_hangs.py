"""No test hangs the run: pytest run on tests that hang, with this suite's conftest.py and
pyproject.toml's settings. An async test's body is cancelled where it waits, fails with that
place in its traceback, and the tests after it run; what cannot be cancelled (a blocked thread,
a teardown) ends the run with every thread's stack printed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support import TESTS

HANGING = """
import asyncio
import time


async def test_waits_forever():
    await asyncio.Event().wait()


async def test_after_it():
    await asyncio.sleep(0)


def test_blocks_its_thread():
    time.sleep(3600)
"""


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_hanging.py").write_text(HANGING)
    env = {**os.environ, "PYTHONPATH": str(TESTS), "HOOKGATE_TEST_BODY_TIMEOUT": "1"}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-c",
            str(TESTS.parent / "pyproject.toml"),
            "--rootdir",
            str(tmp_path),
            "-p",
            "conftest",
            "-p",
            "no:cacheprovider",
            "-o",
            "timeout=4",
            *args,
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_an_async_test_that_waits_forever_fails_and_the_run_goes_on(tmp_path: Path) -> None:
    done = run(tmp_path, "test_hanging.py::test_waits_forever", "test_hanging.py::test_after_it")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 failed, 1 passed" in done.stdout
    # The traceback names where the test waited.
    assert "await asyncio.Event().wait()" in done.stdout
    assert "TimeoutError" in done.stdout


def test_a_blocked_thread_ends_the_run_with_every_stack(tmp_path: Path) -> None:
    done = run(tmp_path, "test_hanging.py::test_blocks_its_thread")
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "Timeout" in output
    assert "time.sleep(3600)" in output
