"""Steps 10 and 12: accelerator packages, and model downloads."""

from __future__ import annotations

from typing import Any

from installer.optimizations import StepTarget, install_optimizations
from installer.plan import PlannedStep
from installer.steps.context import StepContext
from installer.steps.packages import lock_path


def run_optimizations(ctx: StepContext, step: PlannedStep) -> dict[str, Any]:
    """Install xformers, triton and SageAttention as planned, torch held."""
    target = StepTarget(
        python_exe=ctx.venv_python,
        install_path=ctx.install_dir,
        platform=ctx.plan.platform,
        gpu=ctx.gpu,
        uv=ctx.uv,
        manifest=ctx.manifest,
        torch_index_url=ctx.plan.torch.index_url,
        build_tools=(ctx.env.compiler.ok, ctx.env.nvcc.ok),
        allow_unverified=ctx.options.allow_unverified,
        lock=lock_path(ctx),
    )
    outcomes = install_optimizations(
        ctx.venv_python, ctx.comfyui_dir, ctx.install_dir, ctx.deps, ctx.log, target=target
    )
    for outcome in outcomes:
        if outcome.status != "installed":
            ctx.log.info(f"{outcome.name}: {outcome.status} ({outcome.reason})")
    counts = {
        status: sum(o.status == status for o in outcomes)
        for status in ("installed", "skipped", "failed")
    }
    return {"packages": [o.as_dict() for o in outcomes], **counts}


def run_models(ctx: StepContext, step: PlannedStep) -> dict[str, Any]:
    """Download the models listed in `dependencies.json` into `ComfyUI/models/<kind>/`."""
    from installer.models import download_models

    results = download_models(
        ctx.deps.models,
        ctx.comfyui_dir / "models",
        log=ctx.log,
        allow_unverified=ctx.options.allow_unverified,
    )
    return {"files": [str(path) for path in results]}
