"""What each step would do, before its action is decided: inputs, details, outputs check.

[`draft_steps`][installer.plan.drafts.draft_steps] turns the configuration, the
detected facts and the choices already made (torch build, ComfyUI commit, lock)
into one [`StepDraft`][installer.plan.drafts.StepDraft] per step: the inputs its
fingerprint is made of, the lines `--dry-run` shows, and whether its recorded
outputs are still there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from installer.core.config import Dependencies
from installer.core.facts import Environment, GpuReport, InstallProbe, launcher_name, pure_path
from installer.plan.compat import TorchSelection
from installer.plan.lock import LockChoice
from installer.plan.optimizations import PlannedOptimization
from installer.plan.records import ComfyUIPlan, InstallOptions, RecordedNode, TorchPlan
from installer.plan.sage_routes import route_lines


@dataclass(frozen=True)
class Step10Plan:
    """Step 10's plan and the torch it was made for (the planned one, or the venv's)."""

    torch_version: str
    planned: list[PlannedOptimization]


@dataclass
class StepDraft:
    """One step before its action is decided: fingerprint inputs, details, outputs check."""

    inputs: dict[str, Any]
    details: list[str] = field(default_factory=list)
    not_applicable: str | None = None
    outputs_ok: tuple[bool, str] = (True, "")
    always: str | None = None


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def draft_steps(
    *,
    deps: Dependencies,
    env: Environment,
    gpu: GpuReport,
    options: InstallOptions,
    probe: InstallProbe,
    platform: str,
    selection: TorchSelection,
    torch_plan: TorchPlan,
    comfyui_plan: ComfyUIPlan,
    python_request: str,
    min_free: float,
    lock: LockChoice,
    optimizations: Step10Plan,
) -> dict[str, StepDraft]:
    """Draft every step from the choices made so far (all given by keyword).

    Args:
        deps: The loaded `dependencies.json`.
        env: The detected machine.
        gpu: Detected or overridden GPUs.
        options: Command-line options.
        probe: What the install directory already holds.
        platform: The target platform.
        selection: The torch build chosen.
        torch_plan: The torch part of the plan.
        comfyui_plan: The ComfyUI source and commit.
        python_request: The Python asked for.
        min_free: The free disk space preflight requires, in GiB.
        lock: The lock choice for step 8.
        optimizations: Step 10's plan, made once by
            [`build_plan`][installer.plan.build.build_plan].

    Returns:
        The drafts by step id.
    """
    state = probe.state
    drafts: dict[str, StepDraft] = {}

    free = env.free_disk_bytes
    free_text = f"{free / 2**30:.1f} GiB free" if free is not None else "free space unknown"
    drafts["preflight"] = StepDraft(
        inputs={"platform": platform, "min_free_gb": min_free},
        details=[
            f"{env.os_name} ({env.arch}); needs {min_free:g} GiB, {free_text} at {env.disk_path}",
            f"git: {env.git.version or env.git.error}",
        ],
        always="checks are made on every run (no network)",
    )
    drafts["uv"] = StepDraft(
        inputs={"path": env.uv.path, "version": env.uv.version},
        details=[f"uv {env.uv.version} at {env.uv.path}" if env.uv.ok else str(env.uv.error)],
    )
    python_record = state.done("python") if state else None
    drafts["python"] = StepDraft(
        inputs={"request": python_request},
        details=[
            f"Python {python_request} (supported: {deps.python.supported}); "
            "`uv python find`, else `uv python install`"
        ],
        outputs_ok=(probe.recorded_python_exists, "the recorded interpreter is gone")
        if python_record
        else (True, ""),
    )
    if lock.locked and options.python is None:
        drafts["python"].details.append(
            f"if Python {python_request} cannot be found or downloaded here, another supported "
            f"Python is used, and step 8 then resolves live ({lock.target} is for Python "
            f"{python_request} only)"
        )
    drafts["venv"] = StepDraft(
        inputs={"python": python_request, "path": "venv"},
        details=[f"uv venv {pure_path(platform, 'venv')} (in DIR)"],
        outputs_ok=(probe.venv_python_exists, "the venv's Python is missing"),
    )
    if probe.venv_python_exists and (state is None or "venv" not in state.steps):
        drafts["venv"].details.append(
            "DIR has a venv with no record of it: it is kept if its Python runs and is the "
            "one wanted (nothing is cleared)"
        )
    recorded_python = python_record.outputs.get("version") if python_record else None
    if (
        probe.venv_python_exists
        and probe.venv_python_version
        and recorded_python
        and _minor(probe.venv_python_version) != _minor(str(recorded_python))
    ):
        drafts["venv"].outputs_ok = (
            False,
            f"the venv has Python {probe.venv_python_version}, not {recorded_python}",
        )
    comfy_record = state.done("comfyui") if state else None
    recorded_head = comfy_record.outputs.get("commit") if comfy_record else None
    target = comfyui_plan.commit or comfyui_plan.ref
    drafts["comfyui"] = StepDraft(
        inputs={"url": comfyui_plan.url, "target": target},
        details=[
            f"{comfyui_plan.url} @ {comfyui_plan.ref}"
            + (
                f" (commit {comfyui_plan.commit})"
                if comfyui_plan.commit
                else " (commit resolved at clone)"
            )
        ],
        outputs_ok=(
            probe.comfyui_head is not None and probe.comfyui_head == recorded_head,
            f"ComfyUI's HEAD is {probe.comfyui_head or 'missing'}, not {recorded_head}",
        ),
    )
    drafts["gpu"] = StepDraft(
        inputs={
            "source": gpu.source,
            "gpus": [[g.name, g.cc] for g in gpu.gpus],
            "driver": gpu.driver_version,
            "cuda_driver": gpu.cuda_driver_version,
        },
        details=[gpu.reason]
        + [
            f"GPU {g.index}: {g.name}, cc {g.cc}"
            + (f", {g.vram_gib:.0f} GiB" if g.vram_gib else "")
            for g in gpu.gpus
        ],
    )
    torch_record = state.done("torch") if state else None
    where = torch_plan.index_url or "uv's default index"
    drafts["torch"] = StepDraft(
        inputs={
            "packages": torch_plan.packages,
            "variant": torch_plan.variant,
            "index_url": torch_plan.index_url,
        },
        details=[f"{' '.join(torch_plan.packages)} from {where}", torch_plan.reason],
        outputs_ok=_torch_outputs_ok(torch_record.outputs if torch_record else None, probe),
    )
    drafts["requirements"] = StepDraft(
        inputs={
            "comfyui": target,
            "torch": torch_plan.packages,
            "extra": list(deps.extra_requirements),
            **lock.step_input(),
        },
        details=[
            lock.reason,
            "ComfyUI/requirements.txt"
            + (f" + {', '.join(deps.extra_requirements)}" if deps.extra_requirements else ""),
            "torch, torchvision, torchaudio held by a constraints file",
        ],
    )
    kept_nodes = [node for node in deps.custom_nodes if node.name not in probe.removed_nodes]
    removed_nodes = [node for node in deps.custom_nodes if node.name in probe.removed_nodes]
    recorded = carried_nodes(deps, options)
    drafts["custom_nodes"] = StepDraft(
        # The recorded nodes are not inputs: a venv holds their requirements or not, and that
        # is judged against the venv (`generation_lacks`), so a node `nodes add` put into the
        # current venv does not make the step's inputs, and so the generation, outdated.
        inputs={"nodes": [node.model_dump() for node in kept_nodes]},
        details=[f"{node.name} @ {node.commit[:12]}" for node in kept_nodes]
        + [node.describe() for node in recorded]
        + [removed_node_line(node.name) for node in removed_nodes],
        not_applicable=(
            None
            if kept_nodes or any(node.requirements for node in recorded)
            else "; ".join(removed_node_line(node.name) for node in removed_nodes)
            or "no custom nodes configured"
        ),
    )

    planned = optimizations.planned
    gate = None
    if not gpu.has_nvidia:
        gate = "no NVIDIA GPU"
    elif selection.cuda is None:
        gate = "torch is a CPU build"
    opt_record = state.done("optimizations") if state else None
    failed_before = int(opt_record.outputs.get("failed", 0)) if opt_record else 0
    drafts["optimizations"] = StepDraft(
        inputs={
            "torch": optimizations.torch_version,
            "planned": [_fingerprinted(p) for p in planned],
        },
        details=route_lines(planned) + [_describe_optimization(p) for p in planned],
        not_applicable=gate,
        outputs_ok=(
            failed_before == 0,
            f"{failed_before} optional package(s) failed last time; trying them again",
        ),
    )
    drafts["launchers"] = StepDraft(
        inputs={"platform": platform, "launcher": launcher_name(platform), "template": 2},
        details=[f"{launcher_name(platform)} → comfy-install launch {options.install_dir}"],
        outputs_ok=("launcher" in probe.existing_files, "the launcher script is missing"),
    )
    if deps.models:
        # Refuse now, not at step 12 after everything else has run: unknown kinds, names
        # that leave models/, entries without a sha256 (unless --allow-unverified).
        from installer.plan.model_downloads import plan_model_downloads

        plan_model_downloads(
            deps.models,
            Path(options.install_dir) / "ComfyUI" / "models",
            allow_unverified=options.allow_unverified,
            source="dependencies.json",
        )
    drafts["models"] = StepDraft(
        inputs={"models": [m.model_dump() for m in deps.models]},
        details=[f"{m.kind}/{m.filename or m.url.rsplit('/', 1)[-1]}" for m in deps.models],
        not_applicable=None if deps.models else "no models configured",
    )
    drafts["verify"] = StepDraft(
        inputs={},
        details=[
            "import torch (+ CUDA when a GPU is present) and each installed optimization",
            "python ComfyUI/main.py --help",
        ],
    )
    return drafts


def _torch_outputs_ok(outputs: dict[str, Any] | None, probe: InstallProbe) -> tuple[bool, str]:
    if outputs is None:
        return True, ""
    if probe.torch is None or "torch" not in probe.installed:
        return False, "torch is not installed in the venv"
    # Compare distribution versions with distribution versions: the step records what
    # the dist-info says (PyPI's build says 2.9.1 there and 2.9.1+cu128 in version.py).
    for name in ("torch", "torchvision", "torchaudio"):
        recorded = outputs.get(name)
        if recorded and probe.installed.get(name) != recorded:
            return False, (
                f"the venv has {name} {probe.installed.get(name) or 'missing'}, "
                f"not the recorded {recorded}"
            )
    return True, ""


def carried_nodes(deps: Dependencies, options: InstallOptions) -> list[RecordedNode]:
    """Return the recorded nodes step 9 installs the requirements of, beside the configured ones.

    A node the configuration lists with `requirements: true` is left out: step 9 installs its
    requirements from its folder already.

    Args:
        deps: The loaded `dependencies.json`.
        options: The options; their `recorded_nodes` are DIR's `nodes.json` nodes (`update`).
    """
    read = {node.name for node in deps.custom_nodes if node.requirements}
    return [node for node in options.recorded_nodes if node.name not in read]


def removed_node_line(name: str) -> str:
    """Say that step 9 leaves a configured node out because `nodes remove` took it out.

    Args:
        name: The node's name.
    """
    return (
        f"{name}: not installed again, `comfy-install nodes remove` took it out "
        "(`comfy-install nodes add DIR URL` brings it back)"
    )


def _fingerprinted(entry: PlannedOptimization) -> dict[str, Any]:
    """Return what of an entry decides the step's work.

    All of it when it installs (or stands by); only that it is skipped otherwise: a reason
    that names the GPU is not a change to redo the step for.
    """
    if entry.action == "install" or entry.fallback_for is not None:
        return entry.model_dump(mode="json")
    return {"name": entry.name, "action": entry.action}


def _describe_optimization(entry: PlannedOptimization) -> str:
    what = entry.requirement or entry.distribution or entry.name
    if entry.action == "install" and entry.source is not None:
        settings = " ".join(f"{k}={v}" for k, v in entry.source.build_env.items())
        return (
            f"build {entry.name} from {entry.source.url} @ {entry.source.commit[:12]}: "
            f"{entry.reason} [{settings}; a wheel built before for the same commit, torch, Python "
            "and architectures is reused from the cache]"
        )
    if entry.action == "install":
        line = f"install {what}: {entry.reason}"
        if entry.wheel and entry.wheel.sha256:
            line += f" [sha256 {entry.wheel.sha256[:12]}…]"
        return line
    return f"skip {entry.name}: {entry.reason}"
