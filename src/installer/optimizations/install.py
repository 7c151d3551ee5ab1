"""Step 10 run: plan again against the venv's torch, then install each group with torch held.

Entries that share install options go to uv in one call (one resolution); when that
call fails, each is tried alone, so one bad optional package does not take the others
down. Every call carries the constraints file that pins the venv's torch trio.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from installer.core.config import Dependencies, RetryOptions
from installer.core.errors import (
    BuildFailedError,
    InstallerError,
    StepFailedError,
    TorchConflictError,
)
from installer.core.log import InstallerLogger
from installer.edges.uv import Uv, write_constraints
from installer.optimizations.build import build_source
from installer.optimizations.outcome import OptimizationOutcome, outcome_of, skipped_outcome
from installer.optimizations.target import StepTarget
from installer.optimizations.venv import (
    VenvTorch,
    already_present,
    check_installed,
    inspect_venv_torch,
)
from installer.optimizations.wheels import download_wheels
from installer.plan.optimizations import PlannedOptimization, PlannedWheel, plan_optimizations


def install_optimizations(
    python_exe: Path,
    comfy_path: Path,
    install_path: Path,
    deps: Dependencies,
    log: InstallerLogger,
    *,
    target: StepTarget,
) -> list[OptimizationOutcome]:
    """Run step 10: install every optimization package that fits, torch held.

    Packages that share install options go to uv in one call (one resolution);
    when that call fails, each package is tried alone so one bad package does
    not take the others down.

    Args:
        python_exe: The venv's interpreter.
        comfy_path: The ComfyUI clone (for messages; nothing there is changed).
        install_path: The install directory (the constraints file lives in its
            `.comfy-install/`).
        deps: The loaded `dependencies.json`.
        log: Where progress goes.
        target: The venv's uv, the GPUs, the manifest and the other facts.

    Returns:
        One outcome per configured package and wheel: installed, skipped
        (reason) or failed (reason).

    Raises:
        IntegrityError: A downloaded wheel does not match its checksum (exit 4).
        InstallerError: A package marked `required` failed.
        StepFailedError: torch changed (it never should: the constraints hold it).
    """
    torch = inspect_venv_torch(python_exe)
    if torch.version is None:
        raise StepFailedError(
            f"torch is not installed in the venv of {comfy_path}.",
            "Run the torch step first (`comfy-install install DIR`).",
        )
    log.info(f"torch in the venv: {torch.version} ({torch.build or 'CPU build'})")
    return _run_planned(_replan(deps, target, torch), python_exe, install_path, torch, target, log)


def install_sageattention(
    python_exe: Path,
    install_path: Path,
    deps: Dependencies,
    log: InstallerLogger,
    *,
    target: StepTarget,
) -> list[OptimizationOutcome]:
    """Install the SageAttention wheels that fit (or the fallback when none does).

    Every fitting wheel is downloaded to the cache, checked against its sha256
    in `tools_manifest.json`, and installed from the local file.

    Args:
        python_exe: The venv's interpreter.
        install_path: The install directory.
        deps: The loaded `dependencies.json`.
        log: Where progress goes.
        target: The venv's uv, the GPUs, the manifest and the other facts.

    Returns:
        One outcome per SageAttention wheel entry and the fallback.

    Raises:
        IntegrityError: A wheel's checksum does not match (the file is deleted).
    """
    torch = inspect_venv_torch(python_exe)
    planned = [e for e in _replan(deps, target, torch) if e.kind != "package"]
    return _run_planned(planned, python_exe, install_path, torch, target, log)


def _replan(deps: Dependencies, target: StepTarget, torch: VenvTorch) -> list[PlannedOptimization]:
    return plan_optimizations(
        deps,
        target.manifest,
        platform=target.platform,
        gpu=target.gpu,
        torch_version=torch.version or "0",
        torch_cuda=torch.build,
        torch_index_url=target.torch_index_url,
        python_version=torch.python,
        build_host=target.build_host,
        allow_unverified=target.allow_unverified,
    )


def _run_planned(
    planned: Sequence[PlannedOptimization],
    python_exe: Path,
    install_path: Path,
    torch: VenvTorch,
    target: StepTarget,
    log: InstallerLogger,
) -> list[OptimizationOutcome]:
    constraints = write_constraints(install_path / ".comfy-install" / "constraints.txt", torch.pins)
    planned = list(planned)
    done: dict[int, OptimizationOutcome] = {}
    specs: dict[int, str] = {}
    standby: dict[str, int] = {}
    for index, entry in enumerate(planned):
        if entry.action == "skip" and entry.fallback_for is not None:
            standby[entry.fallback_for] = index
        elif entry.action == "skip":
            done[index] = skipped_outcome(entry, entry.reason)
        elif entry.kind not in ("wheel", "source"):
            specs[index] = entry.requirement or entry.name
    _build_sources(planned, specs, standby, done, python_exe, torch, target, log)
    for index in standby.values():
        done.setdefault(index, skipped_outcome(planned[index], planned[index].reason))
    wheels = {i: e for i, e in enumerate(planned) if e.action == "install" and e.kind == "wheel"}
    files, failures = download_wheels(list(wheels.values()), target, log)
    for index, entry in wheels.items():
        name = entry.wheel.filename if entry.wheel else ""
        if name in failures:
            if entry.required:
                raise StepFailedError(f"{name} could not be downloaded: {failures[name]}")
            log.warn(f"{entry.name}: download failed: {failures[name]}")
            done[index] = outcome_of(entry, "failed", f"download failed: {failures[name]}")
        else:
            specs[index] = str(files[name])
    pending: list[int] = already_present(specs, planned, python_exe, log)
    for index in pending:
        del specs[index]
    groups: dict[tuple[tuple[str, ...], tuple[str, ...], bool], list[int]] = {}
    for index in specs:
        entry = planned[index]
        # With a lock, wheel files stay apart from index packages: the lock constrains only
        # the latter (its sageattention pin would refuse the SageAttention 2 wheel).
        apart = entry.kind in ("wheel", "source") and target.lock is not None
        key = (tuple(entry.install_options), tuple(entry.extra_index_urls), apart)
        groups.setdefault(key, []).append(index)
    for key, members in groups.items():
        pending += _install_group(
            members, key, planned, specs, python_exe, constraints, target, log, done
        )
    check_installed(pending, planned, python_exe, torch, target, log, done)
    return [done[index] for index in range(len(planned))]


def _build_sources(
    planned: list[PlannedOptimization],
    specs: dict[int, str],
    standby: dict[str, int],
    done: dict[int, OptimizationOutcome],
    python_exe: Path,
    torch: VenvTorch,
    target: StepTarget,
    log: InstallerLogger,
) -> None:
    """Build (or take from the cache) each planned source; a failure brings in its stand-by."""
    for index, entry in enumerate(planned):
        if entry.action != "install" or entry.kind != "source" or entry.source is None:
            continue
        try:
            built = build_source(
                entry,
                python_exe,
                torch_version=torch.version or "0",
                torch_build=torch.build or "cpu",
                target=target,
                log=log,
            )
        except BuildFailedError as exc:
            if entry.required:
                raise
            log.warn(f"{exc.message}; the install goes on")
            done[index] = outcome_of(entry, "failed", exc.message)
            fallback = standby.pop(entry.name, None)
            if fallback is not None:
                log.info(f"{planned[fallback].name}: installed instead of {entry.name}")
                planned[fallback] = planned[fallback].model_copy(
                    update={
                        "action": "install",
                        "reason": f"installed because the {entry.name} build failed",
                    }
                )
                specs[fallback] = planned[fallback].requirement or planned[fallback].name
            continue
        fallback = standby.pop(entry.name, None)
        if fallback is not None:
            done[fallback] = skipped_outcome(
                planned[fallback], f"not needed: {entry.name} was built"
            )
        how = (
            "reused the wheel built before (sha256 verified)"
            if built.reused
            else f"built in {built.seconds:.0f} s"
        )
        planned[index] = entry.model_copy(
            update={
                "reason": f"{how}: {built.path}",
                "wheel": PlannedWheel(
                    filename=built.path.name,
                    url=built.path.as_uri(),
                    sha256=built.sha256,
                    size=built.size,
                ),
            }
        )
        specs[index] = str(built.path)


def _install_group(
    members: list[int],
    key: tuple[tuple[str, ...], tuple[str, ...], bool],
    planned: Sequence[PlannedOptimization],
    specs: dict[int, str],
    python_exe: Path,
    constraints: Path,
    target: StepTarget,
    log: InstallerLogger,
    done: dict[int, OptimizationOutcome],
) -> list[int]:
    """Install one group in one uv call; on failure, each member alone. Return the installed."""
    options, extra, wheels = key
    held = [constraints, *([target.lock] if target.lock and not wheels else [])]
    names = ", ".join(planned[i].name for i in members)
    retry = RetryOptions(
        attempts=max(planned[i].retry.attempts for i in members),
        backoff_seconds=max(planned[i].retry.backoff_seconds for i in members),
    )
    requirements = [specs[i] for i in members]
    try:
        if "--no-deps" in options:
            _check_against_torch(
                requirements, options, extra, python_exe, held, target.uv, log, names, retry
            )
        target.uv.pip_install(
            python_exe,
            requirements,
            constraints=held,
            options=list(options),
            extra_index_urls=list(extra),
            what=f"install {names}",
            retry=retry,
        )
        return list(members)
    except InstallerError as exc:
        if len(members) > 1:
            log.debug(f"installing {names} together failed ({exc.message}); one by one now")
            installed: list[int] = []
            for index in members:
                installed += _install_group(
                    [index], key, planned, specs, python_exe, constraints, target, log, done
                )
            return installed
        entry = planned[members[0]]
        if entry.required:
            raise
        if isinstance(exc, TorchConflictError):
            log.warn(f"{entry.name} skipped: {exc.message}")
            done[members[0]] = outcome_of(entry, "skipped", f"needs another torch: {exc.message}")
        else:
            log.warn(f"{entry.name} failed (optional, the install goes on): {exc.message}")
            done[members[0]] = outcome_of(entry, "failed", exc.message)
        return []


def _check_against_torch(
    requirements: list[str],
    options: tuple[str, ...],
    extra: tuple[str, ...],
    python_exe: Path,
    constraints: list[Path],
    uv: Uv,
    log: InstallerLogger,
    names: str,
    retry: RetryOptions,
) -> None:
    """Resolve with dependencies (installing nothing) to let the held torch decide.

    `--no-deps` would otherwise let in a release built for another torch. Only a torch
    conflict stops the install; other resolution failures (a dependency missing from a
    mirror, which is what `--no-deps` is for) are left to the real install and the check
    after it.

    Raises:
        TorchConflictError: A package needs another torch than the one held.
    """
    dry = [o for o in options if o != "--no-deps"] + ["--dry-run"]
    try:
        uv.pip_install(
            python_exe,
            requirements,
            constraints=constraints,
            options=dry,
            extra_index_urls=list(extra),
            what=f"check {names} against the held torch",
            retry=retry,
        )
    except TorchConflictError:
        raise
    except InstallerError as exc:
        log.debug(f"dependency check of {names} inconclusive: {exc.message}")
