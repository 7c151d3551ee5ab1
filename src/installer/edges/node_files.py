"""A custom node's dependency files as they are on disk.

Its `requirements.txt`, `pyproject.toml` and `install.py`:
[`read_node_files`][installer.edges.node_files.read_node_files] reads them raw; what they ask
for is decided by [`installer.plan.nodes.node_requirements`][installer.plan.nodes.node_requirements]
(as ComfyUI-Manager reads them). `nodes add`, step 9, `snapshot save` and `lock` all read a
node through these two, so a node's pyproject dependencies count everywhere alike.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from installer.core.errors import StepFailedError
from installer.core.nodes import NodeFiles


def read_node_files(node_dir: Path) -> NodeFiles:
    """Read a node's `requirements.txt` and `pyproject.toml`, and see whether it has `install.py`.

    The pyproject file is read on Python 3.11 and later (tomllib); on 3.10 it counts as absent.

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
    return NodeFiles(
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
