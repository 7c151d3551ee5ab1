"""How the plan is computed: every decision of an install, made up front, from data.

[`build_plan`][installer.plan.build.build_plan] takes the configuration, the
detected environment and GPUs, the command-line options and what the install
directory already holds, and returns a [`Plan`][installer.plan.records.Plan] without
doing any I/O. The plan lists the 13 steps with `run`, `skip` or `done` and
the reason for each, the torch build and index and why, and for step 10 every
package and wheel with what will be installed or why not, and in `blocking` what would
stop the install before its first step
([`preflight_blockers`][installer.plan.preflight.preflight_blockers]). `--dry-run` renders
it; `--json` prints it (the `data` of the JSON envelope); the executor runs
exactly it.

A step is `done` when it finished before with the same inputs (its
fingerprint), nothing it depends on changed since, and its outputs are still
there (the venv's Python, ComfyUI's HEAD at the pin, torch at the recorded
version). Otherwise it runs, and so does every step that depends on it.
"""

from __future__ import annotations

from collections.abc import Sequence

from packaging.version import InvalidVersion, Version

from installer.core.config import Dependencies, IndexOptions, ToolsManifest
from installer.core.errors import UsageError
from installer.core.facts import (
    Environment,
    GpuReport,
    InstallProbe,
    launcher_name,
    pure_path,
    venv_python,
)
from installer.core.git_arguments import git_argument_problem
from installer.plan.compat import select_torch
from installer.plan.decide import decide_steps
from installer.plan.drafts import Step10Plan, carried_nodes, draft_steps
from installer.plan.inputs import planned_inputs, withheld_warnings
from installer.plan.lock import choose_lock
from installer.plan.optimizations import PlannedOptimization, plan_optimizations
from installer.plan.preflight import preflight_blockers
from installer.plan.records import (
    ComfyUIPlan,
    GpuPlan,
    InstallOptions,
    LockPlan,
    PathsPlan,
    Plan,
    PlannedGpu,
    TorchPlan,
    parse_steps,
    plan_install_tune,
    target_platform,
)
from installer.plan.toolkit_torch import trade_for_toolkit


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
    platform = target_platform(options.platform, env.platform)
    for flag, value in (
        ("--comfyui-url", options.comfyui_url),
        ("--comfyui-ref", options.comfyui_ref),
    ):
        problem = git_argument_problem(value, flag) if value is not None else None
        if problem is not None:
            raise UsageError(
                f"{problem}.",
                f"Pass {flag} a repository URL, local path or git bundle."
                if flag == "--comfyui-url"
                else f"Pass {flag} a tag, branch or commit.",
            )
    if platform != env.platform and not options.dry_run:
        # The message says why, the hint what to do: --dry-run is named once, in the hint.
        raise UsageError(
            f"--platform {platform} plans for another OS (this machine runs {env.platform}): "
            "nothing can be installed for it here.",
            f"Add --dry-run to see that plan, or run the install on {platform}.",
        )
    probe = probe or InstallProbe(install_dir=options.install_dir)
    only = parse_steps(options.only, "--only")
    skip = parse_steps(options.skip, "--skip")
    force = parse_steps(options.force, "--force")
    warnings: list[str] = list(gpu.warnings)
    if probe.state_problem:
        warnings.append(probe.state_problem)
    warnings.extend(withheld_warnings(options))

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
    host = env.build_host(offline=options.offline)

    def plan_step10(
        cuda: str | None, index_url: str | None, torch_version: str = str(deps.torch.torch_version)
    ) -> list[PlannedOptimization]:
        return plan_optimizations(
            deps,
            manifest,
            platform=platform,
            gpu=gpu,
            torch_version=torch_version,
            torch_cuda=cuda,
            torch_index_url=index_url,
            python_version=python_version or "3.12",
            build_host=host,
            allow_unverified=options.allow_unverified,
        )

    # Step 10 is planned once here; the toolkit hook reuses it, and plans only another build.
    planned = plan_step10(selection.cuda, selection.index_url)
    trade = trade_for_toolkit(
        deps,
        gpu=gpu,
        platform=platform,
        selection=selection,
        request=options.torch_index,
        host=host,
        installed=probe.torch,
        planned=planned,
        plan_for=plan_step10,
    )
    if trade is not None and trade.selection is not None and trade.planned is not None:
        selection, planned = trade.selection, trade.planned
    if trade is not None and trade.note is not None:
        warnings.append(trade.note)
    warnings.extend(selection.warnings)
    torch_plan = TorchPlan(
        variant=selection.variant,
        index_url=selection.index_url,
        cuda=selection.cuda,
        packages=held_torch_packages(deps.torch.packages, probe.comfyui_requirements),
        version=str(deps.torch.torch_version),
        reason=selection.reason,
        installed=probe.torch.version if probe.torch else None,
        minor_version_compat=selection.driver_limit.note if selection.driver_limit else None,
        advice=selection.advice,
    )

    dropped = [p for p in deps.torch.packages if p not in torch_plan.packages]
    if dropped:
        warnings.append(
            f"{', '.join(dropped)}: not in this ComfyUI's requirements.txt; not installed or held"
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
        problems=probe.lock_problems,
        python_found=_python_found(probe, python_request),
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

    step10 = Step10Plan(torch_version=torch_plan.version, planned=planned)
    torch_selected = (not only or "torch" in only) and "torch" not in skip
    installed = probe.torch
    if installed is not None and not torch_selected:
        # torch is not managed by this run: plan step 10 against the torch the venv really has.
        if (installed.version, installed.build) != (torch_plan.version, selection.cuda):
            planned = plan_step10(installed.build, selection.index_url, installed.version)
        step10 = Step10Plan(torch_version=installed.version, planned=planned)
    drafts = draft_steps(
        deps=deps,
        env=env,
        gpu=gpu,
        options=options,
        probe=probe,
        platform=platform,
        selection=selection,
        torch_plan=torch_plan,
        comfyui_plan=comfyui_plan,
        python_request=python_request,
        min_free=min_free,
        lock=lock,
        optimizations=step10,
    )
    steps = decide_steps(drafts, probe, only, skip, force)
    blocking = preflight_blockers(
        env,
        platform=platform,
        will_run={step.id for step in steps if step.action == "run"},
        min_free_gb=min_free,
    )
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
        inputs=planned_inputs(options),
        custom_nodes=[node for node in deps.custom_nodes if node.name not in probe.removed_nodes],
        removed_custom_nodes=sorted(
            node.name for node in deps.custom_nodes if node.name in probe.removed_nodes
        ),
        recorded_nodes=carried_nodes(deps, options),
        optimizations=step10.planned,
        models=len(deps.models),
        steps=steps,
        tune=plan_install_tune(options, gpu.has_nvidia, gpu.reason),
        warnings=warnings,
        blocking=blocking,
    )


def _python_found(probe: InstallProbe, request: str) -> str | None:
    """The Python the python step found for ``request`` last time (None: not recorded)."""
    record = probe.state.done("python") if probe.state else None
    if record is None or record.inputs.get("request") != request:
        return None
    version = record.outputs.get("version")
    return str(version) if version else None


def _is_sha(value: str) -> bool:
    return len(value) == 40 and all(c in "0123456789abcdef" for c in value)


"""Marks a step that runs only because a dependency runs (see `PlannedStep.cascade`)."""


def held_torch_packages(packages: Sequence[str], requirements: frozenset[str] | None) -> list[str]:
    """Return the torch set to install and hold: the pins ComfyUI's requirements still name.

    torch itself always stays; torchvision or torchaudio is dropped when the checkout's
    `requirements.txt` no longer lists it (ComfyUI after v0.33 drops torchaudio), so an
    update never installs, or keeps pinning, a package ComfyUI stopped asking for.

    Args:
        packages: The configured torch requirements (`torch.packages`).
        requirements: Canonical names in the checkout's `requirements.txt`; None when no
            checkout exists yet (a first install): every configured pin is kept.
    """
    if requirements is None:
        return list(packages)
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    kept: list[str] = []
    for spec in packages:
        try:
            name = canonicalize_name(Requirement(spec).name)
        except InvalidRequirement:
            kept.append(spec)
            continue
        if name == "torch" or name in requirements:
            kept.append(spec)
    return kept
