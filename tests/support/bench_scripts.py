"""Load the GPU benchmark's scripts (bench/gpu/NAME.py) as modules, to test their functions."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCH_GPU = Path(__file__).resolve().parents[2] / "bench" / "gpu"


def load_bench_script(name: str) -> ModuleType:
    """Import ``bench/gpu/NAME.py`` (with its folder on ``sys.path`` while it imports its siblings).

    Args:
        name: The script's name without ``.py``, e.g. ``"stage_wheels"``.
    """
    sys.path.insert(0, str(BENCH_GPU))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCH_GPU / f"{name}.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH_GPU))
