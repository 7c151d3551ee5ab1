"""The plan: every decision of an install, made up front, as plain data.

[`build_plan`][installer.plan.build.build_plan] takes the configuration, the
detected environment and GPUs, the command-line options and what the install
directory already holds, and returns a [`Plan`][installer.plan.build.Plan] without
doing any I/O. The plan lists the 13 steps with `run`, `skip` or `done` and
the reason for each, the torch build and index and why, and for step 10 every
package and wheel with what will be installed or why not. `--dry-run` renders
it; `--json` prints it (the `data` of the JSON envelope); the executor runs
exactly it.

A step is `done` when it finished before with the same inputs (its
fingerprint), nothing it depends on changed since, and its outputs are still
there (the venv's Python, ComfyUI's HEAD at the pin, torch at the recorded
version). Otherwise it runs, and so does every step that depends on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from packaging.version import InvalidVersion, Version
from pydantic import BaseModel, Field

from installer import __version__
from installer.config import CustomNode, Dependencies, IndexOptions, ToolsManifest
from installer.core.errors import PlanError, UsageError
from installer.core.facts import (
    Environment,
    GpuReport,
    InstallProbe,
    launcher_name,
    pure_path,
    venv_python,
)
from installer.core.records import fingerprint
from installer.lock import LockChoice, choose_lock
from installer.optimizations import PlannedOptimization, plan_optimizations
from installer.plan.compat import TorchSelection, select_torch

PLAN_SCHEMA_VERSION = 1

STEPS: tuple[tuple[str, str], ...] = (
    ("preflight", "check the machine and DIR"),
    ("uv", "find uv"),
    ("python", "find or install Python"),
    ("venv", "create the virtual environment"),
    ("comfyui", "clone ComfyUI at the pinned commit"),
    ("gpu", "record the GPU"),
    ("torch", "install torch, torchvision, torchaudio"),
    ("requirements", "install ComfyUI's requirements (torch held)"),
    ("custom_nodes", "install custom nodes (torch held)"),
    ("optimizations", "install accelerator packages (torch held)"),
    ("launchers", "write the launcher scripts"),
    ("models", "download models"),
    ("verify", "check that everything imports and starts"),
)
STEP_IDS: tuple[str, ...] = tuple(step_id for step_id, _ in STEPS)

DEPENDS: dict[str, tuple[str, ...]] = {
    "preflight": (),
    "uv": (),
    "python": ("uv",),
    "venv": ("python",),
    "comfyui": (),
    "gpu": (),
    "torch": ("venv",),
    "requirements": ("venv", "torch", "comfyui"),
    "custom_nodes": ("comfyui", "requirements"),
    "optimizations": ("torch", "requirements"),
    "launchers": (),
    "models": ("comfyui",),
    "verify": ("venv", "comfyui", "torch", "requirements", "custom_nodes", "optimizations"),
}

Action = Literal["run", "skip", "done"]


@dataclass(frozen=True)
class InstallOptions:
    """What the user asked for on the command line (`comfy-install install`)."""

    install_dir: Path
    config_path: Path | None = None
    tools_manifest_path: Path | None = None
    gpu: str = "auto"
    cuda_driver: str | None = None
    platform: str | None = None
    python: str | None = None
    comfyui_ref: str | None = None
    comfyui_url: str | None = None
    torch_index: str = "auto"
    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    only: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()
    force: tuple[str, ...] = ()
    offline: bool = False
    allow_unverified: bool = False
    dry_run: bool = False
    min_free_gb: float | None = None
    command_line: tuple[str, ...] = ()
    """The arguments as typed (after `comfy-install`), for the hint to run them again."""
    no_lock: bool = False
    lock_dir: Path | None = None


class PlannedGpu(BaseModel):
    """One GPU as the plan saw it."""

    index: int
    name: str
    cc: str
    vram_total_bytes: int | None = None
    vram_free_bytes: int | None = None
    uuid: str | None = None
    pci_bus_id: str | None = None


class GpuPlan(BaseModel):
    """The GPUs the plan is made for, and how they were learned."""

    source: str
    reason: str
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    planning_cc: str | None = None
    gpus: list[PlannedGpu] = Field(default_factory=list)


class TorchPlan(BaseModel):
    """The torch build, its index, and why."""

    variant: str
    index_url: str | None = Field(description="None: uv's default index.")
    cuda: str | None = Field(description="CUDA build name (cu128), None for CPU.")
    packages: list[str]
    version: str
    reason: str
    installed: str | None = Field(default=None, description="Torch already in the venv.")


class ComfyUIPlan(BaseModel):
    """Which ComfyUI source and commit."""

    url: str
    ref: str
    commit: str | None = Field(description="The pin HEAD must equal; None for a --comfyui-ref.")


class LockPlan(BaseModel):
    """Whether step 8 installs a lock file or resolves live, and why."""

    path: str | None = Field(description="The lock step 8 installs; None: resolved live.")
    reason: str
    inputs_sha256: str | None = None


class PathsPlan(BaseModel):
    """Where the install's parts live (relative paths in the target OS's form)."""

    install_dir: str
    venv: str
    venv_python: str
    comfyui: str
    state_dir: str
    launcher: str


class PlannedStep(BaseModel):
    """One numbered step and what will happen to it."""

    number: int
    id: str
    title: str
    action: Action
    reason: str
    cascade: bool = Field(
        default=False,
        description="Runs only because a dependency runs; skipped if that changes nothing.",
    )
    details: list[str] = Field(default_factory=list)
    inputs: dict[str, Any] = Field(default_factory=dict)
    fingerprint: str = ""
    depends_on: list[str] = Field(default_factory=list)


class Plan(BaseModel):
    """Everything `install` will do, decided before anything is done."""

    schema_version: int = PLAN_SCHEMA_VERSION
    tool_version: str = __version__
    platform: str
    install_dir: str
    paths: PathsPlan
    python: str
    python_supported: str
    min_free_gb: float
    comfyui: ComfyUIPlan
    gpu: GpuPlan
    torch: TorchPlan
    index: IndexOptions
    lock: LockPlan | None = None
    custom_nodes: list[CustomNode] = Field(default_factory=list)
    optimizations: list[PlannedOptimization] = Field(default_factory=list)
    models: int = 0
    steps: list[PlannedStep] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)

    def step(self, step_id: str) -> PlannedStep:
        """Return the planned step with id ``step_id``.

        Args:
            step_id: A step id from `STEP_IDS`, e.g. `torch`.

        Raises:
            KeyError: The plan has no step ``step_id``.
        """
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    @property
    def to_run(self) -> list[PlannedStep]:
        """The steps the executor will run."""
        return [step for step in self.steps if step.action == "run"]


@dataclass
class _StepDraft:
    inputs: dict[str, Any]
    details: list[str] = field(default_factory=list)
    not_applicable: str | None = None
    outputs_ok: tuple[bool, str] = (True, "")
    always: str | None = None


def parse_steps(values: Sequence[str], flag: str) -> tuple[str, ...]:
    """Split ``--only a,b`` style values and check every name is a step.

    Args:
        values: The option's values as given (it may repeat), each one name or several separated by
            commas.
        flag: The option, for the message, e.g. `--only`.

    Returns:
        The step names in the order given, empty parts dropped.

    Raises:
        UsageError: An unknown step name (exit code 2).
    """
    names = tuple(part.strip() for value in values for part in value.split(",") if part.strip())
    unknown = [name for name in names if name not in STEP_IDS]
    if unknown:
        raise UsageError(
            f"{flag}: unknown step {', '.join(unknown)}.", f"Steps are: {', '.join(STEP_IDS)}."
        )
    return names


def _gpu_plan(gpu: GpuReport) -> GpuPlan:
    return GpuPlan(
        source=gpu.source,
        reason=gpu.reason,
        driver_version=gpu.driver_version,
        cuda_driver_version=gpu.cuda_driver_version,
        planning_cc=str(gpu.planning_cc) if gpu.planning_cc else None,
        gpus=[
            PlannedGpu(
                index=g.index,
                name=g.name,
                cc=g.cc,
                vram_total_bytes=g.vram_total_bytes,
                vram_free_bytes=g.vram_free_bytes,
                uuid=g.uuid,
                pci_bus_id=g.pci_bus_id,
            )
            for g in gpu.gpus
        ],
    )


def _python_version(request: str) -> Version | None:
    try:
        return Version(request)
    except InvalidVersion:
        return None


def build_plan(
    deps: Dependencies,
    manifest: ToolsManifest,
    env: Environment,
    gpu: GpuReport,
    options: InstallOptions,
    probe: InstallProbe | None = None,
) -> Plan:
    """Compute the whole install plan. Pure: reads only its arguments.

    Args:
        deps: The loaded `dependencies.json`.
        manifest: The loaded `tools_manifest.json`.
        env: The detected machine.
        gpu: Detected or overridden GPUs.
        options: Command-line options.
        probe: What the install directory already holds (None: nothing).

    Raises:
        UsageError: Options that contradict each other.
        PlanError: No torch build fits, or a selected step needs one that is
            neither done nor selected.
    """
    platform = options.platform or env.platform
    if platform != env.platform and not options.dry_run:
        raise UsageError(
            f"--platform {platform} plans for another OS; it works only with --dry-run.",
            "Add --dry-run, or run the install on that OS.",
        )
    probe = probe or InstallProbe(install_dir=options.install_dir)
    only = parse_steps(options.only, "--only")
    skip = parse_steps(options.skip, "--skip")
    force = parse_steps(options.force, "--force")
    warnings: list[str] = list(gpu.warnings)
    if probe.state_problem:
        warnings.append(probe.state_problem)

    python_request = options.python or deps.python.default
    python_version = _python_version(python_request)
    if python_version is not None and not deps.python.supported_contains(python_version):
        raise UsageError(
            f"Python {python_request} is not supported by this configuration "
            f"(python.supported is {deps.python.supported}).",
            f"Choose a version in {deps.python.supported} with --python.",
        )

    selection = select_torch(
        gpu,
        deps.torch,
        platform,
        options.torch_index,
        {str(k): v for k, v in deps.torch.default_index_builds.items()},
    )
    warnings.extend(selection.warnings)
    torch_plan = TorchPlan(
        variant=selection.variant,
        index_url=selection.index_url,
        cuda=selection.cuda,
        packages=list(deps.torch.packages),
        version=str(deps.torch.torch_version),
        reason=selection.reason,
        installed=probe.torch.version if probe.torch else None,
    )

    ref = options.comfyui_ref
    expected = deps.comfyui.commit if ref is None else (ref if _is_sha(ref) else None)
    comfyui_plan = ComfyUIPlan(
        url=options.comfyui_url or deps.comfyui.url, ref=ref or deps.comfyui.ref, commit=expected
    )
    lock = choose_lock(
        deps,
        platform=platform,
        variant=selection.variant,
        python=python_request,
        headers=probe.lock_headers,
        no_lock=options.no_lock,
        comfyui_commit=comfyui_plan.commit,
        arch=env.arch,
    )
    if lock.warning:
        warnings.append(lock.warning)
    index = IndexOptions(
        index_url=options.index_url,
        extra_index_urls=list(options.extra_index_urls),
        find_links=list(options.find_links),
        offline=options.offline,
    )
    root = options.install_dir
    paths = PathsPlan(
        install_dir=str(root),
        venv="venv",
        venv_python=str(venv_python(pure_path(platform, "venv"), platform)),
        comfyui="ComfyUI",
        state_dir=str(pure_path(platform, ".comfy-install")),
        launcher=launcher_name(platform),
    )
    min_free = (
        options.min_free_gb if options.min_free_gb is not None else (deps.preflight.min_free_gb)
    )

    drafts = _draft_steps(
        deps,
        manifest,
        env,
        gpu,
        options,
        probe,
        platform,
        selection,
        torch_plan,
        comfyui_plan,
        python_request,
        python_version,
        min_free,
        lock,
    )
    optimizations: list[PlannedOptimization] = drafts.pop("_optimizations").inputs["planned"]
    steps = _decide(drafts, probe, only, skip, force)
    return Plan(
        platform=platform,
        install_dir=str(root),
        paths=paths,
        python=python_request,
        python_supported=deps.python.supported,
        min_free_gb=min_free,
        comfyui=comfyui_plan,
        gpu=_gpu_plan(gpu),
        torch=torch_plan,
        index=index,
        lock=LockPlan(
            path=str(lock.path) if lock.path else None,
            reason=lock.reason,
            inputs_sha256=lock.lock_sha256,
        ),
        custom_nodes=list(deps.custom_nodes),
        optimizations=optimizations,
        models=len(deps.models),
        steps=steps,
        warnings=warnings,
    )


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def _is_sha(value: str) -> bool:
    return len(value) == 40 and all(c in "0123456789abcdef" for c in value)


def _draft_steps(
    deps: Dependencies,
    manifest: ToolsManifest,
    env: Environment,
    gpu: GpuReport,
    options: InstallOptions,
    probe: InstallProbe,
    platform: str,
    selection: TorchSelection,
    torch_plan: TorchPlan,
    comfyui_plan: ComfyUIPlan,
    python_request: str,
    python_version: Version | None,
    min_free: float,
    lock: LockChoice,
) -> dict[str, _StepDraft]:
    state = probe.state
    drafts: dict[str, _StepDraft] = {}

    free = env.free_disk_bytes
    free_text = f"{free / 2**30:.1f} GiB free" if free is not None else "free space unknown"
    drafts["preflight"] = _StepDraft(
        inputs={"platform": platform, "min_free_gb": min_free},
        details=[
            f"{env.os_name} ({env.arch}); needs {min_free:g} GiB, {free_text} at {env.disk_path}",
            f"git: {env.git.version or env.git.error}",
        ],
        always="checks are made on every run (no network)",
    )
    drafts["uv"] = _StepDraft(
        inputs={"path": env.uv.path, "version": env.uv.version},
        details=[f"uv {env.uv.version} at {env.uv.path}" if env.uv.ok else str(env.uv.error)],
    )
    python_record = state.done("python") if state else None
    drafts["python"] = _StepDraft(
        inputs={"request": python_request},
        details=[
            f"Python {python_request} (supported: {deps.python.supported}); "
            "`uv python find`, else `uv python install`"
        ],
        outputs_ok=(probe.recorded_python_exists, "the recorded interpreter is gone")
        if python_record
        else (True, ""),
    )
    drafts["venv"] = _StepDraft(
        inputs={"python": python_request, "path": "venv"},
        details=[f"uv venv {pure_path(platform, 'venv')} (in DIR)"],
        outputs_ok=(probe.venv_python_exists, "the venv's Python is missing"),
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
    drafts["comfyui"] = _StepDraft(
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
    drafts["gpu"] = _StepDraft(
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
    drafts["torch"] = _StepDraft(
        inputs={
            "packages": torch_plan.packages,
            "variant": torch_plan.variant,
            "index_url": torch_plan.index_url,
        },
        details=[f"{' '.join(torch_plan.packages)} from {where}", torch_plan.reason],
        outputs_ok=_torch_outputs_ok(torch_record.outputs if torch_record else None, probe),
    )
    drafts["requirements"] = _StepDraft(
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
    drafts["custom_nodes"] = _StepDraft(
        inputs={"nodes": [node.model_dump() for node in deps.custom_nodes]},
        details=[f"{node.name} @ {node.commit[:12]}" for node in deps.custom_nodes],
        not_applicable=None if deps.custom_nodes else "no custom nodes configured",
    )

    torch_version: str = torch_plan.version
    torch_cuda = selection.cuda
    torch_selected = (not options.only or "torch" in parse_steps(options.only, "--only")) and (
        "torch" not in parse_steps(options.skip, "--skip")
    )
    if probe.torch is not None and not torch_selected:
        # torch is not managed by this run: plan against the torch the venv really has.
        torch_version, torch_cuda = probe.torch.version, probe.torch.build
    planned = plan_optimizations(
        deps,
        manifest,
        platform=platform,
        gpu=gpu,
        torch_version=torch_version,
        torch_cuda=torch_cuda,
        torch_index_url=selection.index_url,
        python_version=python_version or "3.12",
        build_tools=(env.compiler.ok, env.nvcc.ok),
        allow_unverified=options.allow_unverified,
    )
    drafts["_optimizations"] = _StepDraft(inputs={"planned": planned})
    gate = None
    if not gpu.has_nvidia:
        gate = "no NVIDIA GPU"
    elif selection.cuda is None:
        gate = "torch is a CPU build"
    opt_record = state.done("optimizations") if state else None
    failed_before = int(opt_record.outputs.get("failed", 0)) if opt_record else 0
    drafts["optimizations"] = _StepDraft(
        inputs={"torch": torch_version, "planned": [p.model_dump(mode="json") for p in planned]},
        details=[_describe_optimization(p) for p in planned],
        not_applicable=gate,
        outputs_ok=(
            failed_before == 0,
            f"{failed_before} optional package(s) failed last time; trying them again",
        ),
    )
    drafts["launchers"] = _StepDraft(
        inputs={"platform": platform, "launcher": launcher_name(platform), "template": 2},
        details=[f"{launcher_name(platform)} → comfy-install launch {options.install_dir}"],
        outputs_ok=("launcher" in probe.existing_files, "the launcher script is missing"),
    )
    if deps.models:
        # Refuse now, not at step 12 after everything else has run: unknown kinds, names
        # that leave models/, entries without a sha256 (unless --allow-unverified).
        from installer.plan.models import plan_model_downloads

        plan_model_downloads(
            deps.models,
            Path(options.install_dir) / "ComfyUI" / "models",
            allow_unverified=options.allow_unverified,
            source="dependencies.json",
        )
    drafts["models"] = _StepDraft(
        inputs={"models": [m.model_dump() for m in deps.models]},
        details=[f"{m.kind}/{m.filename or m.url.rsplit('/', 1)[-1]}" for m in deps.models],
        not_applicable=None if deps.models else "no models configured",
    )
    drafts["verify"] = _StepDraft(
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


def _describe_optimization(entry: PlannedOptimization) -> str:
    what = entry.requirement or entry.distribution or entry.name
    if entry.action == "install":
        line = f"install {what}: {entry.reason}"
        if entry.wheel and entry.wheel.sha256:
            line += f" [sha256 {entry.wheel.sha256[:12]}…]"
        return line
    return f"skip {entry.name}: {entry.reason}"


def _decide(
    drafts: dict[str, _StepDraft],
    probe: InstallProbe,
    only: tuple[str, ...],
    skip: tuple[str, ...],
    force: tuple[str, ...],
) -> list[PlannedStep]:
    state = probe.state
    actions: dict[str, Action] = {}
    steps: list[PlannedStep] = []
    for number, (step_id, title) in enumerate(STEPS, start=1):
        draft = drafts[step_id]
        depends = DEPENDS[step_id]
        if step_id == "verify":
            draft.inputs = {dep: drafts[dep].inputs for dep in depends}
        fp = fingerprint(draft.inputs)
        record = state.steps.get(step_id) if state else None
        action, reason = _natural_action(step_id, draft, fp, record, depends, actions, state, force)
        selected = (not only or step_id in only) and step_id not in skip
        if not selected and action == "run":
            action, reason = (
                "skip",
                ("not selected by --only" if only and step_id not in only else "skipped by --skip"),
            )
        actions[step_id] = action
        steps.append(
            PlannedStep(
                number=number,
                id=step_id,
                title=title,
                action=action,
                reason=reason.removesuffix(CASCADE),
                cascade=action == "run" and reason.endswith(CASCADE),
                details=draft.details,
                inputs=draft.inputs,
                fingerprint=fp,
                depends_on=list(depends),
            )
        )
    preflight = steps[0]
    if preflight.action == "run" and not force and all(step.action != "run" for step in steps[1:]):
        preflight.action, preflight.reason = "done", "up to date (nothing to check: no step runs)"
    _check_dependencies(steps, actions, drafts, probe)
    return steps


def _natural_action(
    step_id: str,
    draft: _StepDraft,
    fp: str,
    record: Any,
    depends: tuple[str, ...],
    actions: dict[str, Action],
    state: Any,
    force: tuple[str, ...],
) -> tuple[Action, str]:
    if draft.not_applicable:
        return "skip", draft.not_applicable
    if step_id in force:
        return "run", "forced by --force"
    if draft.always:
        return "run", draft.always
    running = [dep for dep in depends if actions.get(dep) == "run"]
    if running:
        own, _ = _own_action(draft, fp, record, depends, state)
        # A step that is itself up to date runs only if a dependency's outputs change;
        # the executor skips it when they do not ("cascade").
        return "run", f"{', '.join(running)} will run first" + (CASCADE if own == "done" else "")
    return _own_action(draft, fp, record, depends, state)


CASCADE = " (if its outputs change)"
"""Marks a step that runs only because a dependency runs (see `PlannedStep.cascade`)."""


def _own_action(
    draft: _StepDraft, fp: str, record: Any, depends: tuple[str, ...], state: Any
) -> tuple[Action, str]:
    """The action a step needs by its own record, inputs and outputs (dependencies aside)."""
    if record is None:
        return "run", "not done yet"
    if record.status == "running":
        return "run", "did not finish last time (the process stopped mid-step); redoing it"
    if record.status == "interrupted":
        return "run", "was interrupted last time; redoing it"
    if record.status == "failed":
        return "run", "failed last time"
    if record.status != "done":
        return "run", "not done yet"
    if record.fingerprint != fp:
        changed = sorted(
            key
            for key in set(draft.inputs) | set(record.inputs)
            if draft.inputs.get(key) != record.inputs.get(key)
        )
        return "run", f"inputs changed ({', '.join(changed) or 'format'})"
    newer = [
        dep
        for dep in depends
        if state.done(dep) is not None and state.steps[dep].seq > record.current_as_of
    ]
    if newer:
        return "run", f"{', '.join(newer)} changed since it ran"
    ok, why = draft.outputs_ok
    if not ok:
        return "run", why
    return "done", "up to date"


def _check_dependencies(
    steps: list[PlannedStep],
    actions: dict[str, Action],
    drafts: dict[str, _StepDraft],
    probe: InstallProbe,
) -> None:
    state = probe.state
    for step in steps:
        if step.action != "run":
            continue
        for dep in step.depends_on:
            if actions[dep] != "skip" or drafts[dep].not_applicable:
                continue
            if state is not None and state.done(dep) is not None:
                continue
            if dep == "torch" and probe.torch is not None:
                continue
            raise PlanError(
                f"Step {step.id} needs {dep}, which is neither done nor selected.",
                f"Run without --only/--skip first, or add {dep} to --only.",
            )
