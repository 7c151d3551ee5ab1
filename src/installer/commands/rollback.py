"""`comfy-install rollback`: make the previous generation current again, in one rename.

No network, no rebuild: the previous generation is still on disk (until pruned), so a
rollback reads the registry, picks the newest verified generation older than the current
one, and replaces the pointer file. It takes DIR's lock, so it never races an update.

What stays: the custom node folders are the user's, in `DIR/ComfyUI/custom_nodes`, shared by
every generation; a rollback moves none of them, and the requirements `nodes add` installed
into a later generation's venv are not in the older one. The result names each recorded
node whose requirements the generation gone back to lacks (`nodes_without_requirements`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from installer.commands.generations import switch_generation
from installer.core.errors import UsageError
from installer.core.generations import Generation
from installer.core.log import InstallerLogger
from installer.edges.environment import current_platform
from installer.edges.generations import current_generation, read_generations
from installer.edges.probe import installed_distributions, layout
from installer.edges.state import InstallLock, state_dir
from installer.nodes.files import node_folders
from installer.nodes.record import read_nodes
from installer.plan.generations import rollback_target
from installer.plan.nodes import unmet_requirements


@dataclass(frozen=True)
class RollbackResult:
    """Which generation was current, and which one is now."""

    install_dir: Path
    previous: int
    current: Generation
    switch: str
    nodes_without_requirements: dict[str, list[str]] = field(default_factory=dict)
    """Node folders that stay (they are the user's) whose requirements this generation's venv
    lacks: they were added (`nodes add`) into a later generation's venv."""

    def as_data(self) -> dict[str, Any]:
        """The `data` of the JSON envelope."""
        return {
            "install_dir": str(self.install_dir),
            "from_generation": self.previous,
            "to_generation": self.current.id,
            "generation": self.current.model_dump(mode="json"),
            "switch": self.switch,
            "nodes_without_requirements": self.nodes_without_requirements,
        }


def rollback(install_dir: Path, log: InstallerLogger) -> RollbackResult:
    """Switch DIR back to its previous verified generation.

    Args:
        install_dir: DIR.
        log: Where to say what happened.

    Raises:
        UsageError: DIR is not an install, or it has no previous generation (exit code 2).
        LockHeldError: An update (or install) is working on DIR.
        EnvironmentUnsupportedError: The pointer could not be written.
    """
    if not state_dir(install_dir).is_dir():
        raise UsageError(
            f"{install_dir} holds no comfy-install install.",
            f"Run `comfy-install install {install_dir}` first.",
        )
    with InstallLock(install_dir, command="rollback").held(log):
        registry = read_generations(install_dir, current_platform())
        current = current_generation(install_dir)
        target = rollback_target(registry.generations, current)
        generation = registry.get(target)
        if (
            generation is None
            or not Path(generation.root).is_dir()
            or not (Path(generation.root) / "venv").is_dir()
        ):
            raise UsageError(
                f"Generation {target} is recorded but its folder is gone.",
                "`comfy-install status DIR` lists the generations kept.",
            )
        plan = switch_generation(install_dir, target, log)
        lacking = _nodes_without_requirements(install_dir, Path(generation.root))
    return RollbackResult(install_dir, current, generation, plan.describe(), lacking)


def _nodes_without_requirements(install_dir: Path, root: Path) -> dict[str, list[str]]:
    """The recorded nodes in `DIR/ComfyUI/custom_nodes` whose requirements ROOT's venv lacks."""
    platform = current_platform()
    folders = {folder.name for folder in node_folders(install_dir / "ComfyUI" / "custom_nodes")}
    recorded = {
        node.name: node.requirements
        for node in read_nodes(install_dir).nodes
        if node.name in folders and not node.no_deps
    }
    if not recorded:
        return {}
    installed = installed_distributions(layout(root, platform)["venv"], platform)
    return unmet_requirements(recorded, installed)
