"""`DIR/.comfy-install/nodes.json`: read (a damaged file is moved aside, never lost) and written."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from installer.core.log import InstallerLogger
from installer.core.nodes import NodesState
from installer.core.records import now_iso
from installer.edges.state import atomic_write_text, state_dir


def nodes_path(install_dir: Path) -> Path:
    """Return `DIR/.comfy-install/nodes.json`.

    Args:
        install_dir: DIR.
    """
    return state_dir(install_dir) / "nodes.json"


def read_nodes(install_dir: Path, log: InstallerLogger | None = None) -> NodesState:
    """Read the nodes record of DIR; an empty one when there is none.

    A damaged file is renamed to `nodes.json.damaged-<time>` (and said so), not deleted.

    Args:
        install_dir: DIR.
        log: Where the warning about a damaged file goes.
    """
    path = nodes_path(install_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return NodesState()
    try:
        return NodesState.model_validate_json(text)
    except ValidationError:
        aside = path.with_name(f"nodes.json.damaged-{now_iso().replace(':', '')}")
        path.replace(aside)
        if log is not None:
            log.warn(f"{path} was damaged; moved it to {aside.name} and started a new record")
        return NodesState()


def write_nodes(install_dir: Path, state: NodesState) -> Path:
    """Write the nodes record of DIR atomically.

    Args:
        install_dir: DIR.
        state: The record.

    Raises:
        EnvironmentUnsupportedError: The file cannot be written.
    """
    from installer.core.log import redact

    path = nodes_path(install_dir)
    atomic_write_text(path, redact(state.model_dump_json(indent=2)) + "\n")
    return path
