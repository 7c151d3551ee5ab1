"""Step 12: the model files `dependencies.json` lists, downloaded into `ComfyUI/models/<kind>/`."""

from __future__ import annotations

from typing import Any

from installer.plan.records import PlannedStep
from installer.steps.context import StepContext


def run_models(ctx: StepContext, step: PlannedStep) -> dict[str, Any]:
    """Download the models listed in `dependencies.json` into `ComfyUI/models/<kind>/`.

    Args:
        ctx: The run's context; `deps.models` are downloaded.
        step: The planned `models` step (not used: ``ctx.plan`` holds what to do).

    Returns:
        `files`: the path of each model file, in the configured order.

    Raises:
        ConfigError: A bad entry (unknown kind, unsafe file name, duplicate).
        IntegrityError: An entry without sha256 (without `--allow-unverified`), or a file whose hash
            or size is wrong.
        NetworkError: A server stayed unreachable or kept failing.
        DownloadError: A server refused a file, or a URL breaks the policy.
        FileConflictError: A different file has a configured name and no sha256 says which one is
            right; it is kept.
    """
    from installer.models.downloads import download_models

    replace_how = (
        f"run `comfy-install models download {ctx.install_dir} --replace`"
        if ctx.options.config_path is None
        else "rename or move your file away"
    )
    results = download_models(
        ctx.deps.models,
        ctx.comfyui_dir / "models",
        log=ctx.log,
        allow_unverified=ctx.options.allow_unverified,
        replace_how=replace_how,
    )
    return {"files": [str(path) for path in results]}
