"""Step 10: accelerator packages (xformers, triton, SageAttention), installed and proved."""

from __future__ import annotations

from typing import Any

from installer.core.proof import PROOF_KEY
from installer.edges.kitchen import probe_kitchen
from installer.optimizations.target import StepTarget
from installer.plan.records import PlannedStep
from installer.steps.context import StepContext
from installer.steps.packages import lock_path


def run_optimizations(ctx: StepContext, step: PlannedStep) -> dict[str, Any]:
    """Install xformers, triton and SageAttention as planned, torch held; then prove them.

    The proof calls each installed attention backend on the GPU against SDPA; a
    broken xformers is uninstalled (its package's outcome becomes `skipped`, with the reason).

    Args:
        ctx: The run's context; the packages come from its config and plan.
        step: The planned `optimizations` step (not used: ``ctx.plan`` holds what to do).

    Returns:
        `packages` (each package's outcome), the counts `installed`, `skipped` and `failed`,
        `accelerators` (the proof) and `comfy_kitchen`: which of comfy-kitchen's back ends load
        in the venv.

    Raises:
        IntegrityError: A downloaded wheel does not match its checksum.
        InstallerError: A package marked `required` failed.
        StepFailedError: torch changed (the constraints should prevent it, and an uninstall
            never should).
    """
    # Heavy (pydantic result models): imported when the step runs, not on a no-op re-run.
    from installer.attention.measure.proof import prove_accelerators
    from installer.optimizations.install import install_optimizations
    from installer.optimizations.proof import with_proof

    target = StepTarget(
        python_exe=ctx.venv_python,
        install_path=ctx.install_dir,
        platform=ctx.plan.platform,
        gpu=ctx.gpu,
        uv=ctx.uv,
        manifest=ctx.manifest,
        torch_index_url=ctx.plan.torch.index_url,
        build_host=ctx.env.build_host(offline=ctx.options.offline),
        allow_unverified=ctx.options.allow_unverified,
        lock=lock_path(ctx),
    )
    outcomes = install_optimizations(
        ctx.venv_python, ctx.comfyui_dir, ctx.install_dir, ctx.deps, ctx.log, target=target
    )
    proof = prove_accelerators(ctx.venv_python, ctx.uv, ctx.gpu, ctx.log, "optimizations")
    outcomes = with_proof(outcomes, proof)
    for outcome in outcomes:
        if outcome.status != "installed":
            ctx.log.info(f"{outcome.name}: {outcome.status} ({outcome.reason})")
    counts = {
        status: sum(o.status == status for o in outcomes)
        for status in ("installed", "skipped", "failed")
    }
    # comfy-kitchen comes with ComfyUI's requirements (step 8); whether its CUDA back end
    # loads beside this torch is step 10's business too, so it is reported here.
    kitchen = probe_kitchen(ctx.venv_python)
    ctx.log.info(kitchen.summary())
    return {
        "packages": [o.as_dict() for o in outcomes],
        **counts,
        PROOF_KEY: proof.as_data(),
        "comfy_kitchen": kitchen.as_dict(),
    }
