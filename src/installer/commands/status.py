"""`comfy-install status`: which steps of an install are done, when, with which inputs.

Read-only: it reads `DIR/.comfy-install/state.json` (no network), so it answers
instantly even on a broken machine. It shows the newest accelerator proof (step 10's
or verify's: each attention backend working, or broken and what was done). When DIR
has an attention calibration (`comfy-install tune`), it also says whether `launch` can
still use it: that detects the GPUs and asks the venv for its package versions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from installer.core.errors import UsageError
from installer.core.proof import latest_proof
from installer.edges.state import read_state
from installer.plan.records import STEPS


def install_status(install_dir: Path) -> dict[str, Any]:
    """Return the recorded state of each step of the install in ``install_dir``.

    Args:
        install_dir: DIR, the install directory.

    Returns:
        The `data` of `status --json`: `install_dir`, `tool_version`, `updated_at`, a `summary`
        (ComfyUI, torch, Python, optimizations, `accelerators`: the newest proof), each of the
        `steps`, the `calibration`, and the `fleet` of `launch --gpus` (GPU, name, port, URL,
        pid, running, ready; empty without one).

    Raises:
        UsageError: DIR is a file or holds no install state (exit code 2).
        StateTooNewError: The state was written by a newer comfy-install (exit code 3).
    """
    from installer.edges.environment import current_platform
    from installer.edges.generations import current_root

    if install_dir.exists() and not install_dir.is_dir():
        raise UsageError(
            f"{install_dir} is a file, not an install directory.",
            "Pass the folder comfy-install installed into (the one holding .comfy-install/).",
        )
    # The steps shown are the current generation's (DIR's own until an update).
    state, problem = read_state(current_root(install_dir, current_platform()))
    if state is None:
        raise UsageError(
            problem or f"{install_dir} holds no comfy-install install.",
            f"Run `comfy-install install {install_dir}` first.",
        )
    steps: list[dict[str, Any]] = []
    for number, (step_id, title) in enumerate(STEPS, start=1):
        record = state.steps.get(step_id)
        steps.append(
            {
                "number": number,
                "id": step_id,
                "title": title,
                "status": record.status if record else "not run",
                "finished_at": record.finished_at if record else None,
                "seconds": record.seconds if record else None,
                "inputs": record.inputs if record else {},
                "message": record.message if record else "",
            }
        )

    def output(step: str, key: str) -> Any:
        record = state.done(step)
        return record.outputs.get(key) if record else None

    proof = latest_proof(state)
    summary = {
        "comfyui_commit": output("comfyui", "commit"),
        "comfyui_ref": output("comfyui", "ref"),
        "torch": output("torch", "torch"),
        "torch_cuda": output("torch", "cuda"),
        "torch_variant": output("torch", "variant"),
        "python": output("python", "version"),
        "optimizations": output("optimizations", "packages") or [],
        "accelerators": None if proof is None else proof.as_data(),
    }
    return {
        "install_dir": str(install_dir),
        "tool_version": state.tool_version,
        "updated_at": state.updated_at,
        "summary": summary,
        "steps": steps,
        "calibration": _calibration(install_dir),
        "fleet": _fleet(install_dir),
        "generations": generations_report(install_dir),
    }


def _fleet(install_dir: Path) -> list[dict[str, Any]]:
    """The ComfyUIs `launch --gpus` started from DIR (none without a set): GPU, port, pid, ready."""
    from installer.launch.fleet import fleet_status

    return fleet_status(install_dir)


def generations_report(install_dir: Path) -> list[dict[str, Any]]:
    """Return DIR's generations, oldest first, each with `current` set on the current one.

    Args:
        install_dir: DIR.

    Returns:
        One entry per generation: `id`, `current`, `comfyui_commit`, `comfyui_ref`, `torch`,
        `torch_cuda`, `created_at`, `verified`, `status`, `root`; just the adopted
        generation 1 for an install that was never updated.
    """
    from installer.edges.environment import current_platform
    from installer.edges.generations import current_generation, read_generations

    registry = read_generations(install_dir, current_platform())
    current = current_generation(install_dir)
    return [
        {
            **generation.model_dump(mode="json", exclude={"packages", "message", "log"}),
            "verified": generation.verified,
            "current": generation.id == current,
            "message": generation.message,
        }
        for generation in registry.generations
    ]


def _calibration(install_dir: Path) -> dict[str, Any]:
    """The calibration's state: checked against the GPU and the venv only when there is one."""
    from dataclasses import asdict

    from installer.attention.files import check_calibration

    return asdict(check_calibration(install_dir))


def proof_lines(data: dict[str, Any] | None) -> list[str]:
    """Return the lines `status` prints about the accelerator proof (none without one).

    Args:
        data: The ``accelerators`` of the status summary.
    """
    from installer.core.proof import AcceleratorProof
    from installer.plan.proof import describe_backend

    if not data:
        return []
    proof = AcceleratorProof.model_validate(data)
    step = {"optimizations": "step 10", "verify": "verify"}.get(proof.step, proof.step)
    if proof.status != "proved":
        return [f"attention proof ({step}): {proof.status}: {proof.reason}"]
    lines = [f"attention proof ({step}, on {proof.device}, torch {proof.torch}):"]
    for backend in proof.backends:
        if backend.verdict != "absent":
            extra = f" — {backend.action_reason}" if backend.action_reason else ""
            lines.append(f"  {describe_backend(backend)}{extra}")
    return lines
