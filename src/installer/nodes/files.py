"""A node's requirements, read as ComfyUI-Manager reads them; the node folders of DIR."""

from __future__ import annotations

from pathlib import Path

from installer.edges.node_files import read_node_files
from installer.plan.nodes import NodeRequirements, node_requirements


def read_node_requirements(node_dir: Path) -> NodeRequirements:
    """Read a node's `requirements.txt`, `pyproject.toml` dependencies and `install.py`.

    The files are read by [`read_node_files`][installer.edges.node_files.read_node_files] and
    decided by [`node_requirements`][installer.plan.nodes.node_requirements], the pair `lock`
    reads a node with too. The pyproject dependencies are read on Python 3.11 and later
    (tomllib).

    Args:
        node_dir: The node's folder (a checkout).

    Raises:
        StepFailedError: A file exists but cannot be read or parsed.
    """
    files = read_node_files(node_dir)
    return node_requirements(files.requirements_txt, files.pyproject, files.install_script)


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
