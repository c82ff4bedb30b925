"""npm packages the tests run (real clients), installed once per machine from a pinned lockfile.

``installed(name)`` installs ``tests/<name>/`` (its ``package.json`` and ``package-lock.json``)
with ``npm ci`` into a cache directory outside the repository, keyed by the lockfile, and returns
that directory; only the first run on a machine downloads anything (npm must reach its registry
then).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from support import TESTS


def installed(name: str, marker: str, cache_name: str | None = None) -> Path:
    """The directory where ``tests/<name>`` is installed; ``marker`` (a path under it) tells an
    install that is complete; ``cache_name`` names the cached copy (default: ``name``)."""
    src = TESTS / name
    lock = (src / "package-lock.json").read_bytes()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hookgate-tests"
    target = cache / f"{cache_name or name}-{hashlib.sha256(lock).hexdigest()[:16]}"
    if not (target / marker).exists():
        building = cache / f"{target.name}.{os.getpid()}"
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir(parents=True)
        for file in ("package.json", "package-lock.json"):
            shutil.copy(src / file, building / file)
        npm = shutil.which("npm")
        assert npm, f"npm is needed to install tests/{name} (the client the test runs)"
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=building,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
        try:
            building.rename(target)
        except OSError:  # another test run installed it meanwhile
            shutil.rmtree(building, ignore_errors=True)
    return target
