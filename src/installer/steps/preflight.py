"""Step 1 (preflight) and step 6 (gpu): checks before work, and the GPU on record."""

from __future__ import annotations

import os
import tempfile
from typing import Any

from installer.core.errors import EnvironmentUnsupportedError
from installer.plan.preflight import blocking_error, preflight_blockers
from installer.plan.records import PlannedStep
from installer.steps.context import StepContext


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

    The checks of [`preflight_blockers`][installer.plan.preflight.preflight_blockers] (the plan
    ran them before anything was written; they run again here, under the lock), then a file is
    created in DIR to prove it writable. Disk space and git are required only when a step that
    needs them will run, so a finished install can be re-checked on a full disk.

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
    blockers = preflight_blockers(
        env,
        platform=env.platform,
        will_run={s.id for s in plan.to_run},
        min_free_gb=plan.min_free_gb,
    )
    if blockers:
        raise blocking_error(blockers, ctx.options.typed_command())
    check_writable(ctx.install_dir)
    free = env.free_disk_bytes
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
