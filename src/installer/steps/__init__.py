"""The steps of an install, one module per concern, each a `run_*` function.

Every runner takes the [`StepContext`][installer.steps.context.StepContext]
and its [`PlannedStep`][installer.plan.records.PlannedStep], does the work, and
returns the outputs recorded in `state.json`. Runners decide nothing the plan
did not already decide; they raise an
[`InstallerError`][installer.core.errors.InstallerError] when they cannot finish.
May import: the feature packages (optimizations, lock, models, launch), the planner, the
edges and the core; never the commands or the CLI.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from installer.plan.records import PlannedStep
from installer.steps.context import StepContext

StepRunner = Callable[[StepContext, PlannedStep], dict[str, Any]]


def runners() -> dict[str, StepRunner]:
    """Return the runner of each step id (imported on first use)."""
    from installer.steps import (
        launchers,
        models,
        optimizations,
        packages,
        preflight,
        source,
        toolchain,
        verify,
    )

    return {
        "preflight": preflight.run_preflight,
        "uv": toolchain.run_uv,
        "python": toolchain.run_python,
        "venv": toolchain.run_venv,
        "comfyui": source.run_comfyui,
        "gpu": preflight.run_gpu,
        "torch": packages.run_torch,
        "requirements": packages.run_requirements,
        "custom_nodes": source.run_custom_nodes,
        "optimizations": optimizations.run_optimizations,
        "launchers": launchers.run_launchers,
        "models": models.run_models,
        "verify": verify.run_verify,
    }
