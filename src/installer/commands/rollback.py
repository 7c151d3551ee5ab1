"""`comfy-install rollback`: make the previous generation current again, in one rename.

No network, no rebuild: the previous generation is still on disk (until pruned), so a
rollback reads the registry, picks the newest verified generation older than the current
one, and replaces the pointer file. It takes DIR's lock, so it never races an update.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from installer.commands.generations import switch_generation
from installer.core.errors import UsageError
from installer.core.generations import Generation
from installer.core.log import InstallerLogger
from installer.edges.environment import current_platform
from installer.edges.generations import current_generation, read_generations
from installer.edges.state import InstallLock, state_dir
from installer.plan.generations import rollback_target


@dataclass(frozen=True)
class RollbackResult:
    """Which generation was current, and which one is now."""

    install_dir: Path
    previous: int
    current: Generation
    switch: str

    def as_data(self) -> dict[str, Any]:
        """The `data` of the JSON envelope."""
        return {
            "install_dir": str(self.install_dir),
            "from_generation": self.previous,
            "to_generation": self.current.id,
            "generation": self.current.model_dump(mode="json"),
            "switch": self.switch,
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
    with InstallLock(install_dir, command="rollback").held():
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
    return RollbackResult(install_dir, current, generation, plan.describe())
