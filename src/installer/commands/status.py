"""`comfy-install status`: which steps of an install are done, when, with which inputs.

Read-only: it reads `DIR/.comfy-install/state.json` (no network), so it answers
instantly even on a broken machine. It shows the newest accelerator proof (step 10's
or verify's: each attention backend working, or broken and what was done). When DIR
has an attention calibration (`comfy-install tune`), it also says whether `launch` can
still use it: that detects the GPUs and asks the venv for its package versions.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from installer.core.errors import UsageError
from installer.core.proof import latest_proof
from installer.edges.state import read_state
from installer.plan.model import STEPS

if TYPE_CHECKING:
    from rich.console import Console


def install_status(install_dir: Path) -> dict[str, Any]:
    """Return the recorded state of each step of the install in ``install_dir``.

    Args:
        install_dir: DIR, the install directory.

    Returns:
        The `data` of `status --json`: `install_dir`, `tool_version`, `updated_at`, a `summary`
        (ComfyUI, torch, Python, optimizations, `accelerators`: the newest proof) and each of
        the `steps`.

    Raises:
        UsageError: DIR holds no install state (exit code 2).
    """
    from installer.edges.environment import current_platform
    from installer.edges.generations import current_root

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
        "generations": generations_report(install_dir),
    }


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

    from installer.launch.calibration import calibration_path

    if not calibration_path(install_dir).exists():
        return {"status": "missing", "detail": "no calibration",
                "hint": f"comfy-install tune {install_dir}"}  # fmt: skip
    from installer.edges.gpu import detect_gpus
    from installer.launch.facts import check_calibration

    return asdict(check_calibration(install_dir, detect_gpus()))


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


def render_status(report: dict[str, Any], console: Console) -> None:
    """Print a status report as a short header and a table of steps.

    Args:
        report: A report from [`install_status`][installer.commands.status.install_status].
        console: Where to print.
    """
    from rich.markup import escape
    from rich.table import Table

    summary = report["summary"]
    console.print(f"[bold]{escape(report['install_dir'])}[/] (updated {report['updated_at']})")
    console.print(
        escape(
            f"ComfyUI {summary['comfyui_ref']} @ {summary['comfyui_commit']}; torch "
            f"{summary['torch']} ({summary['torch_variant']}, CUDA {summary['torch_cuda']}); "
            f"Python {summary['python']}"
        )
    )
    table = Table()
    for column in ("#", "step", "status", "finished", "time"):
        table.add_column(column)
    styles = {
        "done": "green",
        "failed": "bold red",
        "interrupted": "bold red",
        "running": "yellow",
        "not run": "dim",
        "skipped": "yellow",
    }
    for step in report["steps"]:
        seconds = f"{step['seconds']:.1f}s" if step["seconds"] is not None else ""
        style = styles.get(step["status"], "")
        table.add_row(
            str(step["number"]),
            step["id"],
            f"[{style}]{step['status']}[/]",
            step["finished_at"] or "",
            seconds,
        )
    console.print(table)
    for package in summary["optimizations"]:
        console.print(escape(f"  {package['name']}: {package['status']} ({package['reason']})"))
    for line in proof_lines(summary.get("accelerators")):
        console.print(escape(line))
    generations = report.get("generations") or []
    if generations:
        listing = Table(title="generations")
        for column in ("", "#", "ComfyUI", "torch", "created", "verified"):
            listing.add_column(column)
        for item in generations:
            full = item.get("comfyui_commit") or ""
            commit, ref = full[:12], item.get("comfyui_ref") or ""
            listing.add_row(
                "*" if item["current"] else "",
                str(item["id"]),
                escape(
                    f"{ref} @ {commit}" if ref and ref != item.get("comfyui_commit") else commit
                ),
                escape(str(item.get("torch") or "")),
                escape(str(item.get("created_at") or "")),
                "yes" if item["verified"] else escape(f"no ({item['status']})"),
            )
        console.print(listing)
    calibration = report.get("calibration")
    if calibration:
        hint = f" — {calibration['hint']}" if calibration.get("hint") else ""
        style = {"fresh": "green", "stale": "yellow", "unreadable": "yellow"}.get(
            calibration["status"], "dim"
        )
        console.print(
            f"attention calibration: [{style}]{calibration['status']}[/] "
            + escape(f"({calibration['detail']}){hint}")
        )
