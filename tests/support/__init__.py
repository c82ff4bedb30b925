"""What the tests share besides fixtures: configurations, gateway processes, local services
(Redis, NATS), waiting with a deadline, and checks against the protocols' own clients and
schemas. ``tests/`` is on ``sys.path`` (``pythonpath`` in pyproject.toml), so every test imports
``support.<module>`` and ``fakes.<module>`` the same way."""

from __future__ import annotations

from pathlib import Path

#: The repository's root.
ROOT = Path(__file__).resolve().parents[2]
#: ``tests/``: on ``PYTHONPATH`` of gateway processes too, for configurations naming ``fakes.*``.
TESTS = ROOT / "tests"
