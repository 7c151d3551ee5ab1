"""Read the levers measured on this GPU from ``DIR/.comfy-install/levers.json`` (issue 30).

The file is written by the GPU benchmark (`bench/gpu/run_workflows.py --levers-out`);
[`installer.plan.levers`][installer.plan.levers] holds its schema and the rule that
turns its figures into `launch`'s ComfyUI arguments.
"""

from __future__ import annotations

import json
from pathlib import Path

from installer.core.facts import GpuReport
from installer.plan.levers import LeverRecords, parse_levers

LEVERS_FILE = Path(".comfy-install") / "levers.json"


def levers_path(install_dir: Path) -> Path:
    """Return where the install's lever figures live.

    Args:
        install_dir: DIR, the install directory.
    """
    return install_dir / LEVERS_FILE


def read_levers(install_dir: Path, gpu: GpuReport) -> LeverRecords | None:
    """Read the levers measured on this machine's GPU, if any were.

    Args:
        install_dir: DIR, the install directory.
        gpu: The GPUs detected now (the first one's name selects the figures).

    Returns:
        The records; None when there is no file, no GPU, or the file cannot be
        used (a lever that cannot be judged stays off, as without the file).
    """
    if not gpu.gpus:
        return None
    path = levers_path(install_dir)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        return parse_levers(document, gpu.gpus[0].name, str(path))
    except (OSError, ValueError, AttributeError):
        return None
