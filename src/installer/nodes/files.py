"""A node's requirement files, read as ComfyUI-Manager reads them; the node folders of DIR."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from installer.core.errors import StepFailedError
from installer.plan.nodes import NodeRequirements, node_requirements


def read_node_requirements(node_dir: Path) -> NodeRequirements:
    """Read a node's `requirements.txt`, `pyproject.toml` dependencies and `install.py`.

    The pyproject dependencies are read on Python 3.11 and later (tomllib).

    Args:
        node_dir: The node's folder (a checkout).

    Raises:
        StepFailedError: A file exists but cannot be read or parsed.
    """
    text: str | None = None
    file = node_dir / "requirements.txt"
    if file.is_file():
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise StepFailedError(f"{file} cannot be read: {exc}.", "Check the node.") from exc
    return node_requirements(
        text, _pyproject(node_dir / "pyproject.toml"), (node_dir / "install.py").is_file()
    )


def _pyproject(path: Path) -> dict[str, Any] | None:
    if not path.is_file() or sys.version_info < (3, 11):
        return None
    import importlib

    # tomllib is Python 3.11's; on 3.10 a node's pyproject.toml is not read (as said above).
    tomllib = importlib.import_module("tomllib")
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
        return data
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise StepFailedError(f"{path} cannot be parsed: {exc}.", "Check the node.") from exc


def node_folders(custom_nodes: Path) -> list[Path]:
    """Return the node folders ComfyUI loads from `custom_nodes/` (not `.disabled` ones).

    Args:
        custom_nodes: `DIR/ComfyUI/custom_nodes`.
    """
    try:
        entries = sorted(custom_nodes.iterdir())
    except OSError:
        return []
    return [
        entry
        for entry in entries
        if entry.is_dir()
        and not entry.name.startswith((".", "__"))
        and not entry.name.endswith(".disabled")
    ]
