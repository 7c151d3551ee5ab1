"""Read and write ``DIR/.comfy-install/levers.json``: the levers and the tuning measured end to end.

`comfy-install tune DIR --workflow FILE` writes it (and the GPU benchmark,
`bench/gpu/run_workflows.py --levers-out`); `launch` reads it.
[`installer.plan.levers`][installer.plan.levers] holds its schema and the rules that
turn its figures into `launch`'s ComfyUI arguments and its attention routing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from installer.core.facts import GpuReport
from installer.edges.state import atomic_write_text
from installer.plan.levers import CPU_KEY, LeverRecords, merge_levers, parse_levers

LEVERS_FILE = Path(".comfy-install") / "levers.json"


def levers_path(install_dir: Path) -> Path:
    """Return where the install's lever figures live.

    Args:
        install_dir: DIR, the install directory.
    """
    return install_dir / LEVERS_FILE


def device_key(gpu: GpuReport) -> str:
    """Return the key of this machine's figures: the first GPU's name, or the CPU's key.

    Args:
        gpu: The GPUs detected now.
    """
    return gpu.gpus[0].name if gpu.gpus else CPU_KEY


def read_levers(install_dir: Path, gpu: GpuReport) -> LeverRecords | None:
    """Read the levers measured on this machine's GPU (or its CPU), if any were.

    Args:
        install_dir: DIR, the install directory.
        gpu: The GPUs detected now (the first one's name selects the figures; none: the
            figures measured with ComfyUI on the CPU).

    Returns:
        The records; None when there is no file, or the file cannot be used (a lever
        that cannot be judged stays off, as without the file).
    """
    path = levers_path(install_dir)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        return parse_levers(document, device_key(gpu), str(path))
    except (OSError, ValueError, AttributeError):
        return None


def write_levers(install_dir: Path, key: str, record: Mapping[str, Any]) -> Path:
    """Replace ``key``'s record in levers.json atomically, keeping every other GPU's.

    A file that cannot be read is replaced (its records could not be used either).

    Args:
        install_dir: DIR, the install directory.
        key: The GPU's name, or the CPU's key.
        record: The run's ``{"levers": ..., "tuned_vs_stock": ...}``.

    Returns:
        The file's path.

    Raises:
        EnvironmentUnsupportedError: The file could not be written.
    """
    path = levers_path(install_dir)
    document: dict[str, Any] | None = None
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
        document = loaded if isinstance(loaded, dict) else None
    except (OSError, ValueError):
        document = None
    merged = merge_levers(document, key, record)
    atomic_write_text(path, json.dumps(merged, indent=1, sort_keys=True) + "\n")
    return path
