"""The benchmark's script (bench/run.py), loaded as a module for its tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

RUN = Path(__file__).resolve().parents[2] / "bench" / "run.py"


def load_bench(name: str = "bench_run") -> ModuleType:
    """``bench/run.py`` as the module ``name``."""
    spec = importlib.util.spec_from_file_location(name, RUN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
