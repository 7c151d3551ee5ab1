"""Step 13: prove the install works: imports in the venv, and ComfyUI's `main.py --help`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from installer.core.errors import CommandFailedError, StepFailedError
from installer.core.proof import PROOF_KEY, proof_from_outputs
from installer.edges.kitchen import KITCHEN_CODE, kitchen_report
from installer.edges.proc import run_command
from installer.plan.records import PlannedStep
from installer.steps.context import StepContext

_PROBE = (
    KITCHEN_CODE
    + r"""
import importlib, json, sys
result = {"python": sys.version.split()[0], "imports": {}}
import torch
result["torch"] = torch.__version__
result["torch_cuda"] = torch.version.cuda
try:
    result["cuda_available"] = bool(torch.cuda.is_available())
except Exception as exc:
    result["cuda_available"] = False
    result["cuda_error"] = str(exc)
for name in sys.argv[1:]:
    try:
        module = importlib.import_module(name)
        result["imports"][name] = getattr(module, "__version__", "ok")
    except Exception as exc:
        result["imports"][name] = "ERROR: " + type(exc).__name__ + ": " + str(exc)
result["comfy_kitchen"] = _comfy_kitchen()
print("COMFY_INSTALL_VERIFY " + json.dumps(result))
"""
)


def installed_import_names(ctx: StepContext) -> list[str]:
    """Return the modules of the optimization packages recorded as installed.

    Args:
        ctx: The run's context; the `optimizations` step's outputs are read.

    Returns:
        The import names, sorted, each once.
    """
    packages = ctx.outputs("optimizations").get("packages", [])
    names = [
        p["import_name"]
        for p in packages
        if p.get("status") == "installed" and p.get("import_name")
    ]
    return sorted(set(names))


def run_verify(ctx: StepContext, step: PlannedStep) -> dict[str, Any]:
    """Import torch (and CUDA when a GPU is planned) and every installed optimization.

    Then prove each installed attention backend on the GPU against SDPA (a broken
    xformers is uninstalled before ComfyUI starts), and run `python ComfyUI/main.py --help`
    and, when this ComfyUI has it, `main.py --quick-test-for-ci`: every start-up import, all
    nodes and the database, without binding a port (`--cpu` when torch sees no GPU). A later
    generation's test loads the nodes of `DIR/ComfyUI/custom_nodes`, the ones `launch` loads.

    Args:
        ctx: The run's context.
        step: The planned `verify` step (not used: ``ctx.plan`` holds what to do).

    Returns:
        The import check's findings (`python`, `torch`, `torch_cuda`, `cuda_available`, each
        module's version or error in `imports`, `comfy_kitchen`: which of its back ends load),
        `broken_imports`, `accelerators` (the proof), `main_help` and `startup_test` (`not
        available` when this ComfyUI lacks the test).

    Raises:
        StepFailedError: torch does not import, ComfyUI does not start, or an uninstall
            changed torch.
    """
    names = installed_import_names(ctx)
    try:
        output = run_command(
            [ctx.venv_python, "-c", _PROBE, *names],
            log=ctx.log,
            what="import check in the venv",
            timeout=600,
        ).output
    except CommandFailedError as exc:
        raise StepFailedError(
            f"torch does not import in the venv: {exc.message}", "Redo torch with `--force torch`."
        ) from exc
    line = next((x for x in output.splitlines() if x.startswith("COMFY_INSTALL_VERIFY ")), "")
    result = json.loads(line.removeprefix("COMFY_INSTALL_VERIFY ") or "{}")
    broken = {k: v for k, v in result.get("imports", {}).items() if str(v).startswith("ERROR")}
    for name, error in broken.items():
        ctx.log.warn(f"{name} is installed but does not import: {error}")
    kitchen = kitchen_report(result.pop("comfy_kitchen", None))
    if kitchen is not None:
        ctx.log.info(kitchen.summary())
        result["comfy_kitchen"] = kitchen.as_dict()
    gpu_planned = bool(ctx.plan.gpu.gpus) and ctx.plan.torch.cuda is not None
    if gpu_planned and not result.get("cuda_available"):
        ctx.log.warn(
            "torch does not see the GPU (torch.cuda.is_available() is False): "
            + str(result.get("cuda_error", "check the NVIDIA driver"))
        )
    from installer.attention.measure.proof import prove_accelerators  # heavy: only when verify runs

    earlier = proof_from_outputs(ctx.outputs("optimizations"))
    proof = prove_accelerators(ctx.venv_python, ctx.uv, ctx.gpu, ctx.log, "verify", earlier)
    main = ctx.comfyui_dir / "main.py"
    hint = (
        "Read the lines above; a missing module usually means the requirements step must be "
        "redone (`--force requirements`) or belongs in extra_requirements."
    )
    try:
        usage = run_command(
            [ctx.venv_python, main, "--help"],
            log=ctx.log,
            cwd=ctx.comfyui_dir,
            what="python ComfyUI/main.py --help",
            timeout=600,
        ).output
        quick_test = "--quick-test-for-ci" in usage
        if quick_test:
            # Loads every node, the server module and the database, then exits: the whole
            # start-up except binding a port.
            args: list[str | Path] = [main, "--quick-test-for-ci", *_shared_nodes_args(ctx)]
            if not result.get("cuda_available"):
                args.append("--cpu")
            started = run_command(
                [ctx.venv_python, *args],
                log=ctx.log,
                cwd=ctx.comfyui_dir,
                what="ComfyUI start-up test (main.py --quick-test-for-ci)",
                timeout=900,
            ).output
            for line in started.splitlines():
                if "IMPORT FAILED" in line:
                    ctx.log.warn(f"a node failed to load: {line.strip()}")
    except CommandFailedError as exc:
        raise StepFailedError(f"ComfyUI does not start: {exc.message}", hint) from exc
    ctx.log.success(
        f"torch {result.get('torch')} imports"
        + (" with CUDA" if result.get("cuda_available") else "")
        + ("; ComfyUI starts (every node loads)" if quick_test else "; main.py --help runs")
    )
    return {
        **result,
        "main_help": "ok",
        "startup_test": "ok" if quick_test else "not available",
        "broken_imports": sorted(broken),
        PROOF_KEY: proof.as_data(),
    }


def _shared_nodes_args(ctx: StepContext) -> list[str | Path]:
    """The arguments that make a later generation's start-up test load DIR's custom nodes."""
    from installer.edges.state import atomic_write_text
    from installer.plan.generations import verify_nodes_paths

    text = verify_nodes_paths(ctx.install_dir, ctx.plan.platform)
    if text is None:
        return []
    file = ctx.paths["state_dir"] / "verify-custom-nodes.yaml"
    atomic_write_text(file, text)
    return ["--extra-model-paths-config", file]
