"""A node's requirements, read as ComfyUI-Manager reads them; the node folders of DIR."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from installer.core.log import InstallerLogger
from installer.edges.git import inspect_node_folder
from installer.edges.node_files import read_node_files
from installer.plan.nodes import NodeRequirements, node_requirements

if TYPE_CHECKING:
    from installer.plan.generations import PinnedNode, SharedNode

# The generations planner (and through it the config and optimization records, about 40 ms
# of imports) is loaded by `shared_node_decisions` only: `nodes add` reads requirements here
# and never meets a generation.


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


def shared_node_decisions(
    nodes: Sequence[PinnedNode], folder: Path, log: InstallerLogger
) -> list[SharedNode]:
    """Look at each pinned node's folder in `DIR/ComfyUI/custom_nodes` and decide its fate.

    The one check of every build that meets the user's shared node folders: `update`'s
    preview, `snapshot restore` (and its `--dry-run`) before it builds, and step 9 of a later
    generation. Each folder is read as git sees it, HEAD and local changes to tracked files
    ([`inspect_node_folder`][installer.edges.git.inspect_node_folder]); nothing is written.

    Args:
        nodes: The nodes the build installs (configured ones, or a snapshot's).
        folder: `DIR/ComfyUI/custom_nodes`.
        log: Logger for git's output.

    Returns:
        What [`plan_shared_nodes`][installer.plan.generations.plan_shared_nodes] decided, one
        decision a node; `shared_nodes_refusal` turns the refused ones into the error.

    Raises:
        EnvironmentUnsupportedError: git is not on PATH.
    """
    from installer.plan.generations import plan_shared_nodes

    seen = {node.name: inspect_node_folder(folder / node.name, log) for node in nodes}
    return plan_shared_nodes(nodes, seen, folder)
