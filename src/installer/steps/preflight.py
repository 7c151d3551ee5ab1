"""Step 1 (preflight) and step 6 (gpu): checks before work, and the GPU on record."""

from __future__ import annotations

import os
import tempfile
from typing import Any

from installer.core.errors import EnvironmentUnsupportedError
from installer.core.facts import SUPPORTED_PLATFORMS
from installer.plan.model import PlannedStep
from installer.steps.context import StepContext

HEAVY_STEPS = (
    "python",
    "venv",
    "comfyui",
    "torch",
    "requirements",
    "custom_nodes",
    "optimizations",
    "models",
)
GIT_STEPS = ("comfyui", "custom_nodes")


def format_gib(value: float) -> str:
    """Format a GiB amount without exponent or trailing zeros (15, 0.5, 1000000).

    Args:
        value: An amount in GiB; it is rounded to one decimal.
    """
    return f"{value:.1f}".rstrip("0").rstrip(".")


def check_writable(directory: os.PathLike[str]) -> None:
    """Prove ``directory`` accepts new files by creating and removing one.

    Args:
        directory: The folder to test; it must exist.

    Raises:
        EnvironmentUnsupportedError: It does not (read-only, no permission, full).
    """
    try:
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise EnvironmentUnsupportedError(
            f"{os.fspath(directory)} is not writable ({exc.strerror or exc}).",
            "Choose a DIR you can write to, or fix its permissions.",
        ) from exc


def run_preflight(ctx: StepContext, step: PlannedStep) -> dict[str, Any]:
    """Check the OS, git, free disk space and that DIR is writable.

    Disk space and git are required only when a step that needs them will run,
    so a finished install can be re-checked on a full disk.

    Args:
        ctx: The run's context; its plan says which steps will run.
        step: The planned `preflight` step (not used: ``ctx.plan`` holds what to do).

    Returns:
        `free_bytes` at DIR (None: unknown) and `platform`.

    Raises:
        EnvironmentUnsupportedError: The OS is not supported, DIR is not writable, or a step that
            will run lacks git or free disk space.
    """
    plan, env = ctx.plan, ctx.env
    if env.platform not in SUPPORTED_PLATFORMS:
        raise EnvironmentUnsupportedError(
            f"{env.os_name} is not supported.", "comfy-install supports Linux and Windows."
        )
    will_run = {s.id for s in plan.to_run}
    if will_run & set(GIT_STEPS) and not env.git.ok:
        raise EnvironmentUnsupportedError(
            f"git is needed to clone ComfyUI, but {env.git.error}.",
            "Install git (https://git-scm.com/downloads), make sure it is on PATH, run again.",
        )
    check_writable(ctx.install_dir)
    needed = plan.min_free_gb * 2**30
    free = env.free_disk_bytes
    if will_run & set(HEAVY_STEPS) and free is not None and free < needed:
        raise EnvironmentUnsupportedError(
            f"Not enough free disk space at {env.disk_path}: {free / 2**30:.1f} GiB free, "
            f"{format_gib(plan.min_free_gb)} GiB needed.",
            "Free some space or choose a DIR on another drive (--min-free-gb changes the "
            "threshold, at your own risk).",
        )
    ctx.log.info(
        f"{env.os_name}, {env.arch}; git {env.git.version}; "
        + (f"{free / 2**30:.1f} GiB free" if free is not None else "free space unknown")
    )
    return {"free_bytes": free, "platform": env.platform}


def run_gpu(ctx: StepContext, step: PlannedStep) -> dict[str, Any]:
    """Record the GPU the install is planned for (detected or given with --gpu).

    Args:
        ctx: The run's context.
        step: The planned `gpu` step (not used: ``ctx.plan`` holds what to do).

    Returns:
        The plan's GPU report as JSON, without each GPU's free VRAM.
    """
    gpu = ctx.plan.gpu
    for card in gpu.gpus:
        ctx.log.info(f"GPU {card.index}: {card.name}, compute capability {card.cc}")
    if not gpu.gpus:
        ctx.log.info(gpu.reason)
    return gpu.model_dump(mode="json", exclude={"gpus": {"__all__": {"vram_free_bytes"}}})
