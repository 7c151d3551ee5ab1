"""What every step runner gets: the plan, the config, the machine and the tools."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from installer.core.config import Dependencies, ToolsManifest
from installer.core.facts import Environment, GpuReport
from installer.core.log import InstallerLogger
from installer.core.records import InstallState
from installer.edges.uv import Uv
from installer.plan.records import InstallOptions, Plan


@dataclass
class StepContext:
    """The shared inputs of the step runners of one install run."""

    plan: Plan
    deps: Dependencies
    manifest: ToolsManifest
    env: Environment
    gpu: GpuReport
    options: InstallOptions
    log: InstallerLogger
    uv: Uv
    state: InstallState
    paths: dict[str, Path]

    @property
    def install_dir(self) -> Path:
        """The install directory."""
        return self.paths["install_dir"]

    @property
    def venv_python(self) -> Path:
        """The venv's interpreter."""
        return self.paths["venv_python"]

    @property
    def comfyui_dir(self) -> Path:
        """The ComfyUI clone."""
        return self.paths["comfyui"]

    @property
    def custom_nodes_dir(self) -> Path:
        """`DIR/ComfyUI/custom_nodes`: where the configured nodes live, in every generation."""
        from installer.plan.generations import shared_nodes_dir

        return Path(shared_nodes_dir(self.install_dir, self.plan.platform))

    @property
    def shares_custom_nodes(self) -> bool:
        """True for a later generation: its nodes folder is DIR's, not its checkout's."""
        from installer.plan.generations import shares_custom_nodes

        return shares_custom_nodes(self.install_dir, self.plan.platform)

    def outputs(self, step_id: str) -> dict[str, Any]:
        """Return the recorded outputs of a finished step ({} if it has none).

        Args:
            step_id: A step id, e.g. `python`; a step that is not `done` has none.
        """
        record = self.state.done(step_id)
        return dict(record.outputs) if record else {}
