"""`comfy-install doctor`: what this machine is and what will work on it.

The doctor reuses the planner: it detects the environment and GPUs, builds the
same plan `install --dry-run` would, and turns it into checks, each `ok`,
`warn`, `fail` or `info` with a hint: OS, Python, uv, git, free disk, every
GPU (name, compute capability, VRAM, driver and the CUDA version it supports),
which torch build fits and why, which optimizations apply and why not, and, if
DIR holds an install, the recorded state of each step, the last benchmark's
headline, what its accelerator proof found (each attention backend working or
broken on this GPU, and what was done about it) and whether its attention
calibration (`comfy-install tune`) still describes this machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from installer.core.facts import (
    SUPPORTED_PLATFORMS,
    Environment,
    GpuReport,
    InstallProbe,
    KitchenReport,
)
from installer.core.records import InstallState, RecordedInputs
from installer.plan.inputs import recorded_inputs, rerun_command
from installer.plan.records import Plan

Status = Literal["ok", "warn", "fail", "info"]


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report."""

    section: str
    name: str
    status: Status
    detail: str
    hint: str | None = None


def _gib(value: int | None) -> str:
    return "unknown" if value is None else f"{value / 2**30:.1f} GiB"


def system_checks(env: Environment, min_free_gb: float, python_supported: str) -> list[Check]:
    """Check the OS, Python, uv, git and free disk space.

    Args:
        env: The detected machine.
        min_free_gb: The free disk space an install needs, in GiB (less: `warn`).
        python_supported: The venv's supported Python range, e.g. ``>=3.10,<3.14``; the Python
            running comfy-install outside it is only `info` (uv finds another).
    """
    from installer.core.config import PythonConfig

    checks = [
        Check(
            "system",
            "os",
            "ok" if env.platform in SUPPORTED_PLATFORMS else "fail",
            f"{env.os_name} ({env.platform}, {env.arch})",
            None
            if env.platform in SUPPORTED_PLATFORMS
            else "comfy-install supports Linux and Windows.",
        ),
    ]
    supported = PythonConfig(default="3.12", supported=python_supported)
    py_ok = supported.supported_contains(env.python_version)
    checks.append(
        Check(
            "system",
            "python",
            "ok" if py_ok else "info",
            f"{env.python_version} runs comfy-install ({env.python_executable})",
            None
            if py_ok
            else f"the venv uses a Python in {python_supported}; uv finds or downloads one",
        )
    )
    checks.append(
        Check(
            "system",
            "uv",
            "ok" if env.uv.ok else "fail",
            f"uv {env.uv.version} ({env.uv.path})" if env.uv.ok else str(env.uv.error),
            None if env.uv.ok else "Reinstall comfy-install (it ships uv).",
        )
    )
    checks.append(
        Check(
            "system",
            "git",
            "ok" if env.git.ok else "fail",
            f"git {env.git.version}" if env.git.ok else str(env.git.error),
            None if env.git.ok else "Install git and make sure it is on PATH.",
        )
    )
    free = env.free_disk_bytes
    enough = free is not None and free >= min_free_gb * 2**30
    checks.append(
        Check(
            "system",
            "disk",
            "ok" if enough else "warn",
            f"{_gib(free)} free at {env.disk_path} (an install needs {min_free_gb:g} GiB)",
            None if enough else "Free disk space or choose a DIR on another drive.",
        )
    )
    for name, tool, found in (
        ("compiler", env.compiler, env.compiler.path),
        ("cuda toolkit", env.nvcc, f"nvcc {env.nvcc.version}"),
    ):
        if tool.ok:
            checks.append(Check("system", name, "ok", str(found)))
        else:
            detail = tool.error or "not checked (nothing in this plan is built from source)"
            hint = "Only needed to build packages from source."
            checks.append(Check("system", name, "info", detail, hint))
    return checks


def gpu_checks(gpu: GpuReport) -> list[Check]:
    """Describe each GPU and the driver, or why none was found.

    Args:
        gpu: The detected (or `--gpu` given) GPUs and driver.
    """
    warnings = [Check("gpu", "warning", "warn", text) for text in gpu.warnings]
    if not gpu.has_nvidia:
        return [
            Check(
                "gpu",
                "nvidia gpu",
                "warn",
                gpu.reason,
                "ComfyUI will run on the CPU (slow). Install the NVIDIA driver if this "
                "machine has an NVIDIA GPU.",
            ),
            *warnings,
        ]
    checks = [
        Check(
            "gpu",
            "driver",
            "ok",
            f"driver {gpu.driver_version or 'unknown'}, supports CUDA "
            f"{gpu.cuda_driver_version or 'unknown'} ({gpu.source})",
        )
    ]
    for card in gpu.gpus:
        vram = _gib(card.vram_total_bytes)
        free = f", {_gib(card.vram_free_bytes)} free" if card.vram_free_bytes is not None else ""
        checks.append(
            Check(
                "gpu",
                f"gpu {card.index}",
                "ok",
                f"{card.name}, compute capability {card.cc}, {vram} VRAM{free}",
            )
        )
    return checks + warnings


def plan_checks(plan: Plan, shown: Sequence[str] = ()) -> list[Check]:
    """Say which torch build fits and which optimizations apply, from the plan.

    Args:
        plan: The plan for DIR (as `install --dry-run` would make it).
        shown: Warnings already reported (the GPU's), not repeated.
    """
    torch = plan.torch
    limited = torch.minor_version_compat
    status: Status = "ok" if (torch.cuda and not limited) or not plan.gpu.gpus else "warn"
    hint = None
    if status == "warn":
        hint = torch.advice or "Update the NVIDIA driver to use a CUDA build."
    detail = f"{torch.variant} ({torch.index_url or 'default index'}): {torch.reason}"
    checks = [Check("torch", "build", status, detail + (f"; {limited}" if limited else ""), hint)]
    for entry in plan.optimizations:
        what = entry.requirement or entry.distribution or entry.name
        if entry.action == "install":
            checks.append(Check("optimizations", entry.name, "ok", f"{what}: {entry.reason}"))
        else:
            checks.append(
                Check("optimizations", entry.name, "info", f"not installed: {entry.reason}")
            )
    checks.extend(
        Check("plan", "warning", "warn", text) for text in plan.warnings if text not in shown
    )
    return checks


def install_checks(plan: Plan, probe: InstallProbe, install_dir: Path | None = None) -> list[Check]:
    """Report the recorded state of an existing install, step by step.

    Args:
        plan: The plan for DIR; its step actions say what is done or still to run.
        probe: The existing install in DIR (its recorded `state.json`), or in its current
            generation.
        install_dir: DIR, which the hints name (default: the probe's folder).
    """
    command = rerun_command(install_dir or probe.install_dir, recorded_inputs(probe.state))
    if probe.state is None and probe.state_problem:
        return [Check("install", "state", "warn", probe.state_problem, command)]
    if probe.state is None:
        return [Check("install", "state", "info", f"no install recorded in {probe.install_dir}")]
    checks: list[Check] = []
    for step in plan.steps:
        record = probe.state.steps.get(step.id)
        if step.action == "done":
            when = record.finished_at if record else ""
            checks.append(Check("install", step.id, "ok", f"done {when}".strip()))
        elif step.action == "skip":
            checks.append(Check("install", step.id, "info", f"skipped: {step.reason}"))
        else:
            status: Status = "fail" if record and record.status == "failed" else "warn"
            checks.append(
                Check(
                    "install",
                    step.id,
                    status,
                    f"to run: {step.reason}",
                    command,
                )
            )
    return checks


def kitchen_checks(
    kitchen: KitchenReport | None,
    plan: Plan,
    inputs: RecordedInputs | None = None,
    install_dir: Path | None = None,
) -> list[Check]:
    """Say which comfy-kitchen back ends load in the install's venv.

    Args:
        kitchen: What the venv's Python reported (None: no venv to ask).
        plan: The plan (whether a GPU and a CUDA torch are planned).
        inputs: The inputs the install recorded (its hint repeats them).
        install_dir: DIR, which the hint names (default: the plan's folder).
    """
    if kitchen is None:
        return []
    gpu_planned = bool(plan.gpu.gpus) and plan.torch.cuda is not None
    status: Status = "info"
    hint = None
    if kitchen.error is not None:
        status = "warn"
        redo = rerun_command(
            install_dir or plan.install_dir, inputs or RecordedInputs(), "--force", "requirements"
        )
        hint = f"Redo ComfyUI's requirements: {redo}"
    elif gpu_planned and kitchen.installed and not kitchen.cuda_in_comfyui:
        status = "warn"
        hint = (
            "ComfyUI's fp8/fp4 kernels and comfy-kitchen attention need its cuda back end: "
            "a cu130 torch on a CUDA 13 driver."
        )
    elif kitchen.cuda_in_comfyui:
        status = "ok"
    return [Check("optimizations", "comfy-kitchen", status, kitchen.summary(), hint)]


def proof_checks(state: InstallState) -> list[Check]:
    """Report what the install's newest accelerator proof found, one check per backend.

    Args:
        state: The install's recorded `state.json`.

    Returns:
        `ok` for a working backend, `warn` for a broken one (with what was done), `info`
        for the rest and for a proof that was skipped; none without a proof.
    """
    from installer.core.proof import latest_proof
    from installer.plan.proof import describe_backend

    proof = latest_proof(state)
    if proof is None:
        return []
    if proof.status != "proved":
        return [Check("accelerators", "proof", "info", f"{proof.status}: {proof.reason}")]
    checks = []
    for backend in proof.backends:
        if backend.verdict == "absent":
            continue
        status: Status = "info"
        if backend.verdict in ("working", "broken"):
            status = "ok" if backend.verdict == "working" else "warn"
        detail = f"{describe_backend(backend)} on {proof.device}"
        if backend.verdict == "working" and backend.reason:
            detail += f" ({backend.reason})"
        checks.append(Check("accelerators", backend.name, status, detail, backend.action_reason))
    return checks


def benchmark_checks(install_dir: Path) -> list[Check]:
    """Report the headline of the install's last `comfy-install benchmark`, if one was saved.

    Args:
        install_dir: The install directory whose `.comfy-install/benchmarks/` is read.
    """
    from installer.benchmark.headline import latest_headline

    line = latest_headline(install_dir)
    if line is None:
        return [
            Check(
                "benchmark",
                "attention",
                "info",
                "no benchmark saved yet",
                f"comfy-install benchmark {install_dir}",
            )
        ]
    return [Check("benchmark", "attention", "warn" if "WRONG" in line else "info", line)]


_CALIBRATION_STATUS: dict[str, Status] = {
    "fresh": "ok",
    "stale": "warn",
    "unreadable": "warn",
    "missing": "info",
    "unchecked": "info",
}


def calibration_checks(install_dir: Path, gpu: GpuReport) -> list[Check]:
    """Report whether the install's attention calibration can be used by `launch` now.

    Args:
        install_dir: The install directory whose `.comfy-install/calibration.json` is read.
        gpu: The GPUs detected now (the calibration must have been measured on one of them).

    Returns:
        One check (none without a GPU and without a calibration).
    """
    from installer.attention.files import check_calibration

    state = check_calibration(install_dir, gpu)
    if state.status == "missing" and not gpu.has_nvidia:
        return []
    detail = f"{state.status}: {state.detail}"
    return [
        Check("attention", "calibration", _CALIBRATION_STATUS[state.status], detail, state.hint)
    ]


def doctor_report(
    env: Environment,
    gpu: GpuReport,
    plan: Plan,
    probe: InstallProbe | None,
    kitchen: KitchenReport | None = None,
    install_dir: Path | None = None,
    generation: int = 1,
) -> dict[str, Any]:
    """Assemble the full doctor report (the `data` of `doctor --json`).

    Args:
        env: The detected machine.
        gpu: The detected GPUs.
        plan: The plan for DIR's current generation (as `install --dry-run` would make it).
        probe: The existing install (DIR's current generation), if any.
        kitchen: comfy-kitchen's back ends as the install's venv reports them (None: no venv).
        install_dir: DIR (default: the probe's folder, which is DIR for generation 1); the
            hints name it, and its benchmarks and calibration are DIR's.
        generation: The current generation's number.
    """
    folder = install_dir or (probe.install_dir if probe is not None else None)
    checks = system_checks(env, plan.min_free_gb, plan.python_supported)
    inputs = recorded_inputs(probe.state if probe is not None else None)
    checks += (
        gpu_checks(gpu)
        + plan_checks(plan, gpu.warnings)
        + kitchen_checks(kitchen, plan, inputs, folder)
    )
    if probe is not None and folder is not None:
        checks += install_checks(plan, probe, folder)
        if probe.state is not None:
            checks += proof_checks(probe.state)
            checks += benchmark_checks(folder)
            checks += calibration_checks(folder, gpu)
    worst = (
        "fail"
        if any(c.status == "fail" for c in checks)
        else ("warn" if any(c.status == "warn" for c in checks) else "ok")
    )
    return {
        "overall": worst,
        "checks": [asdict(check) for check in checks],
        "gpu": plan.gpu.model_dump(),
        "torch": plan.torch.model_dump(),
        "optimizations": [entry.model_dump() for entry in plan.optimizations],
        "comfy_kitchen": None if kitchen is None else kitchen.as_dict(),
        "install": None
        if probe is None or probe.state is None
        else {
            "install_dir": str(folder),
            "generation": generation,
            "root": str(probe.install_dir),
            "steps": {step.id: step.action for step in plan.steps},
        },
    }


def checks_from_report(report: dict[str, Any]) -> list[Check]:
    """Rebuild the checks of a report (for rendering).

    Args:
        report: A report from
            [`doctor_report`][installer.commands.doctor.doctor_report] (or its JSON); its
            `checks` are read.
    """
    return [Check(**item) for item in report["checks"]]


def doctor(install_dir: Path, config: Path | None = None) -> dict[str, Any]:
    """Detect the machine, plan DIR's install as `install --dry-run` would, and report on both.

    After an update the install reported is DIR's current generation (its venv, torch,
    checkout and steps); the hints name DIR.

    Args:
        install_dir: DIR (made absolute here).
        config: Another dependencies.json (`--config`).

    Returns:
        The report (the `data` of `doctor --json`; see
        [`checks_from_report`][installer.commands.doctor.checks_from_report]).

    Raises:
        ConfigError: A configuration file is invalid (exit code 2).
    """
    from installer.commands.generations import on_current_generation
    from installer.commands.planning import make_plan
    from installer.edges.generations import current_generation
    from installer.plan.records import InstallOptions

    install_dir = install_dir.expanduser().absolute()
    options = InstallOptions(
        install_dir=install_dir,
        config_path=config,
        dry_run=True,
        given=frozenset({"config_path"}) if config is not None else frozenset(),
    )
    # After an update, the install is the current generation's venv and checkout.
    options = on_current_generation(options)
    generation = current_generation(install_dir) if options.install_dir != install_dir else 1
    context = make_plan(options, probe_build_tools=True)
    kitchen = None
    if context.probe is not None and context.probe.venv_python_exists:
        from installer.edges.kitchen import probe_kitchen
        from installer.edges.probe import layout

        venv_python = layout(context.probe.install_dir, context.plan.platform)["venv_python"]
        kitchen = probe_kitchen(venv_python)
    gpu = context.gpu
    if "gpu" in context.options.recorded:
        # The plan is the install's (made for the GPU it recorded); the machine checks
        # are of this machine's GPUs.
        from installer.edges.gpu import detect_gpus

        gpu = detect_gpus()
    return doctor_report(
        context.env, gpu, context.plan, context.probe, kitchen, install_dir, generation
    )
