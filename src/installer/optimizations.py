"""Step 10: the accelerator packages (xformers, triton, SageAttention), planned and installed.

`dependencies.json` declares the step: `optimizations.packages` lists packages
resolved from an index (each with `requires` terms, a per-platform
distribution name, `torch_constraints` mapping torch versions to the release
built for them, `install_options` and `retry_options`), and
`pip_packages.sageattention_wheels` lists prebuilt SageAttention wheels with
the compute capabilities, torch, CUDA build, Python and platform they fit; their
sha256 comes from `tools_manifest.json`. `sageattention_fallback` is installed
only when no wheel fits.

The whole step is skipped, with that reason, when there is no NVIDIA GPU (or
torch is a CPU build). Everything it installs carries a constraints file that
pins the torch trio already in the venv, so no package can replace torch: a
package that needs another torch is reported as skipped with uv's reason.

[`plan_optimizations`][installer.optimizations.plan_optimizations] is the pure
part used by the plan (and `--dry-run`);
[`install_optimizations`][installer.optimizations.install_optimizations] runs it
against the torch the venv really has (read from the venv, not from the
config), and [`install_sageattention`][installer.optimizations.install_sageattention]
downloads each chosen wheel (resumable, to the download cache), checks its
sha256 against `tools_manifest.json` before installing it from the local file,
and never downloads or runs a script.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from packaging.version import Version
from pydantic import BaseModel, Field

from installer.config import (
    Dependencies,
    OptimizationPackage,
    RetryOptions,
    SageAttentionWheel,
    ToolsManifest,
)
from installer.core.errors import (
    EnvironmentUnsupportedError,
    InstallerError,
    IntegrityError,
    StepFailedError,
    TorchConflictError,
)
from installer.core.facts import GpuReport
from installer.core.log import InstallerLogger
from installer.edges.uv import TORCH_TRIO, Uv, write_constraints
from installer.plan.compat import (
    first_outside,
    requires_met,
    resolve_torch_constraint,
    select_sageattention_wheels,
    spec_contains,
)


class PlannedWheel(BaseModel):
    """A wheel file to download, verify and install."""

    filename: str
    url: str
    sha256: str | None = Field(description="From tools_manifest.json; None only if unverified.")
    size: int | None = None


class PlannedOptimization(BaseModel):
    """One package of step 10 as the plan decided it."""

    name: str
    kind: Literal["package", "wheel", "fallback"]
    action: Literal["install", "skip"]
    reason: str
    distribution: str | None = None
    requirement: str | None = Field(default=None, description="What uv is asked to install.")
    import_name: str | None = None
    install_options: list[str] = Field(default_factory=list)
    extra_index_urls: list[str] = Field(default_factory=list)
    retry: RetryOptions = Field(default_factory=RetryOptions)
    required: bool = False
    wheel: PlannedWheel | None = None
    builds_from_source: bool = False


def plan_optimizations(
    deps: Dependencies,
    manifest: ToolsManifest,
    *,
    platform: str,
    gpu: GpuReport,
    torch_version: Version | str,
    torch_cuda: str | None,
    torch_index_url: str | None,
    python_version: Version | str,
    build_tools: tuple[bool, bool] = (False, False),
    allow_unverified: bool = False,
) -> list[PlannedOptimization]:
    """Decide, for each package of step 10, what will be installed or why not.

    Args:
        deps: The loaded `dependencies.json`.
        manifest: The loaded `tools_manifest.json` (wheel checksums).
        platform: Target OS.
        gpu: Detected or overridden GPUs.
        torch_version: The torch the venv has (or will have).
        torch_cuda: Its CUDA build (`cu128`), None for a CPU build.
        torch_index_url: The index torch comes from (None: default index);
            packages with `index: torch` also look there.
        python_version: The venv's Python version.
        build_tools: ``(compiler found, nvcc found)``, for source fallbacks.
        allow_unverified: Accept wheels without a checksum in the manifest.

    Returns:
        One entry per configured package and wheel, in install order.
    """
    planned: list[PlannedOptimization] = []
    gate = requires_met(["nvidia"], platform, gpu, torch_cuda)
    for package in deps.optimizations.packages:
        distribution = package.package_for(platform)
        base = PlannedOptimization(
            name=package.name,
            kind="package",
            action="skip",
            reason="",
            distribution=distribution,
            import_name=package.import_name,
            required=package.required,
            retry=package.retry_options,
        )
        planned.append(
            _plan_package(
                package,
                base,
                distribution,
                gate.value and gate.reason,
                platform,
                gpu,
                torch_version,
                torch_cuda,
                torch_index_url,
            )
        )
    planned.extend(
        _plan_sageattention(
            deps,
            manifest,
            platform=platform,
            gpu=gpu,
            torch_version=torch_version,
            torch_cuda=torch_cuda,
            python_version=python_version,
            gate_reason=None if gate.value else gate.reason,
            build_tools=build_tools,
            allow_unverified=allow_unverified,
        )
    )
    return planned


def _plan_package(
    package: OptimizationPackage,
    base: PlannedOptimization,
    distribution: str | None,
    gate_ok: str | bool,
    platform: str,
    gpu: GpuReport,
    torch_version: Version | str,
    torch_cuda: str | None,
    torch_index_url: str | None,
) -> PlannedOptimization:
    if not gate_ok:
        met = requires_met(["nvidia"], platform, gpu, torch_cuda)
        return base.model_copy(update={"reason": met.reason})
    if distribution is None:
        return base.model_copy(update={"reason": f"not published for {platform}"})
    met = requires_met(package.requires, platform, gpu, torch_cuda)
    if not met.value:
        return base.model_copy(update={"reason": met.reason})
    spec = resolve_torch_constraint(package, distribution, torch_version)
    if spec.value is None:
        return base.model_copy(update={"reason": spec.reason})
    extra = [torch_index_url] if package.index == "torch" and torch_index_url else []
    return base.model_copy(
        update={
            "action": "install",
            "reason": spec.reason,
            "requirement": spec.value,
            "install_options": list(package.install_options),
            "extra_index_urls": extra,
        }
    )


def _wheel_entry(wheel: SageAttentionWheel, manifest: ToolsManifest) -> PlannedOptimization:
    entry = manifest.files.get(wheel.filename)
    return PlannedOptimization(
        name=wheel.name,
        kind="wheel",
        action="skip",
        reason="",
        import_name=wheel.import_name,
        requirement=wheel.filename,
        wheel=PlannedWheel(
            filename=wheel.filename,
            url=wheel.url,
            sha256=entry.sha256 if entry else None,
            size=entry.size if entry else None,
        ),
    )


def _plan_sageattention(
    deps: Dependencies,
    manifest: ToolsManifest,
    *,
    platform: str,
    gpu: GpuReport,
    torch_version: Version | str,
    torch_cuda: str | None,
    python_version: Version | str,
    gate_reason: str | None,
    build_tools: tuple[bool, bool],
    allow_unverified: bool,
) -> list[PlannedOptimization]:
    section = deps.pip_packages
    fallback = section.sageattention_fallback
    fallback_entry = (
        None
        if fallback is None
        else PlannedOptimization(
            name=f"{fallback.spec} (fallback)",
            kind="fallback",
            action="skip",
            reason="",
            requirement=fallback.spec,
            import_name=fallback.import_name,
            builds_from_source=fallback.build == "source",
        )
    )
    if gate_reason is not None:
        skipped = [
            _wheel_entry(w, manifest).model_copy(update={"reason": gate_reason})
            for w in section.sageattention_wheels
        ]
        if fallback_entry is not None:
            skipped.append(fallback_entry.model_copy(update={"reason": gate_reason}))
        return skipped
    chosen, rejected = select_sageattention_wheels(
        section.sageattention_wheels,
        gpu.ccs,
        torch_version,
        torch_cuda,
        python_version,
        platform,
    )
    planned: list[PlannedOptimization] = []
    installable = 0
    for choice in chosen:
        entry = _wheel_entry(choice.value, manifest)
        verified = entry.wheel is not None and entry.wheel.sha256 is not None
        if not verified and not allow_unverified:
            planned.append(
                entry.model_copy(
                    update={
                        "reason": f"refused: {choice.value.filename} has no sha256 in "
                        "tools_manifest.json (pass --allow-unverified to accept it)"
                    }
                )
            )
            continue
        note = "" if verified else " (UNVERIFIED: no checksum, --allow-unverified)"
        planned.append(
            entry.model_copy(update={"action": "install", "reason": choice.reason + note})
        )
        installable += 1
    planned.extend(
        _wheel_entry(choice.value, manifest).model_copy(update={"reason": choice.reason})
        for choice in rejected
    )
    if fallback is None or fallback_entry is None:
        return planned
    if installable:
        reason = "a prebuilt SageAttention wheel fits"
    elif fallback.cc is not None and first_outside(fallback.cc, gpu.ccs) is not None:
        reason = (
            f"supports compute capability {fallback.cc}, GPU is "
            f"{first_outside(fallback.cc, gpu.ccs)}"
        )
    elif fallback.build == "source" and not all(build_tools):
        missing = [
            name
            for name, ok in zip(
                ("a C++ compiler", "the CUDA toolkit (nvcc)"), build_tools, strict=True
            )
            if not ok
        ]
        reason = f"no prebuilt wheel fits and building it needs {' and '.join(missing)}"
    else:
        how = (
            "will COMPILE from source (--no-build-isolation)"
            if fallback.build == "source"
            else "a prebuilt wheel from the index"
        )
        options = ["--no-build-isolation"] if fallback.build == "source" else []
        text = f"{fallback.description} ({how})" if fallback.description else how
        planned.append(
            fallback_entry.model_copy(
                update={
                    "action": "install",
                    "install_options": options,
                    "reason": f"no prebuilt SageAttention 2/3 wheel fits; {text}",
                }
            )
        )
        return planned
    planned.append(fallback_entry.model_copy(update={"reason": reason}))
    return planned


def installing(planned: Sequence[PlannedOptimization]) -> list[PlannedOptimization]:
    """Return the entries the step will install.

    Args:
        planned: The step's entries, as the plan decided them.
    """
    return [entry for entry in planned if entry.action == "install"]


Status = Literal["installed", "skipped", "failed"]


@dataclass(frozen=True)
class OptimizationOutcome:
    """How one package of step 10 ended."""

    name: str
    kind: str
    status: Status
    reason: str
    requirement: str | None = None
    import_name: str | None = None
    version: str | None = None
    sha256: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        """Return the outcome as a plain dict (for state.json and JSON output)."""
        return asdict(self)


@dataclass(frozen=True)
class VenvTorch:
    """The torch trio a venv's interpreter really sees (its own or system site-packages)."""

    pins: dict[str, str]
    cuda: str | None
    python: str

    @property
    def version(self) -> str | None:
        """The torch version, None when torch is absent."""
        return self.pins.get("torch")

    @property
    def build(self) -> str | None:
        """The CUDA build name (`cu128`), None for a CPU build or no torch."""
        return "cu" + self.cuda.replace(".", "") if self.cuda else None


_INSPECT = r"""
import importlib.metadata as md, importlib.util as iu, json, os, re, sys
pins = {}
for name in sys.argv[1:]:
    try:
        pins[name] = md.version(name)
    except md.PackageNotFoundError:
        pass
cuda = None
spec = iu.find_spec("torch")
if spec and spec.origin:
    try:
        text = open(os.path.join(os.path.dirname(spec.origin), "version.py")).read()
        m = re.search(r"^cuda\s*(?::[^=]*)?=\s*'([^']+)'", text, re.M)
        cuda = m.group(1) if m else None
    except OSError:
        pass
print(json.dumps({"pins": pins, "cuda": cuda, "python": "%d.%d.%d" % sys.version_info[:3]}))
"""


def inspect_venv_torch(python_exe: Path) -> VenvTorch:
    """Ask the venv's interpreter which torch trio it has, without importing torch.

    This sees a torch from the system site-packages too (a venv made with
    `--system-site-packages`), which reading the venv's folders would miss.

    Args:
        python_exe: The venv's interpreter.

    Raises:
        EnvironmentUnsupportedError: The interpreter does not run.
    """
    try:
        done = subprocess.run(
            [str(python_exe), "-c", _INSPECT, *TORCH_TRIO],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise EnvironmentUnsupportedError(
            f"The venv's Python ({python_exe}) does not run: {exc}.",
            "Redo the venv with `--force venv`.",
        ) from exc
    data = json.loads(done.stdout.strip().splitlines()[-1])
    return VenvTorch(pins=data["pins"], cuda=data["cuda"], python=data["python"])


def download_cache_dir() -> Path:
    """Return the folder downloaded wheels are kept in (`COMFY_INSTALL_CACHE_DIR` overrides)."""
    override = os.environ.get("COMFY_INSTALL_CACHE_DIR")
    if override:
        return Path(override) / "downloads"
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("comfy-install", appauthor=False)) / "downloads"


@dataclass(frozen=True)
class StepTarget:
    """Where and how step 10 installs: the venv, its uv, and the machine's facts."""

    python_exe: Path
    install_path: Path
    platform: str
    gpu: GpuReport
    uv: Uv
    manifest: ToolsManifest
    torch_index_url: str | None = None
    build_tools: tuple[bool, bool] = (False, False)
    allow_unverified: bool = False
    download_jobs: int = 4
    lock: Path | None = None
    """A lock file whose pins (and hashes) also constrain the index packages."""


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
        build_tools=target.build_tools,
        allow_unverified=target.allow_unverified,
    )


def _skipped(entry: PlannedOptimization, reason: str) -> OptimizationOutcome:
    return _outcome(entry, "skipped", reason)


def _outcome(
    entry: PlannedOptimization, status: Status, reason: str, version: str | None = None
) -> OptimizationOutcome:
    return OptimizationOutcome(
        entry.name,
        entry.kind,
        status,
        reason,
        entry.requirement,
        entry.import_name,
        version,
        entry.wheel.sha256 if entry.wheel else None,
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
    done: dict[int, OptimizationOutcome] = {}
    specs: dict[int, str] = {}
    for index, entry in enumerate(planned):
        if entry.action == "skip":
            done[index] = _skipped(entry, entry.reason)
        elif entry.kind != "wheel":
            specs[index] = entry.requirement or entry.name
    wheels = {i: e for i, e in enumerate(planned) if e.action == "install" and e.kind == "wheel"}
    files, failures = _download_wheels(list(wheels.values()), target, log)
    for index, entry in wheels.items():
        name = entry.wheel.filename if entry.wheel else ""
        if name in failures:
            if entry.required:
                raise StepFailedError(f"{name} could not be downloaded: {failures[name]}")
            log.warn(f"{entry.name}: download failed: {failures[name]}")
            done[index] = _outcome(entry, "failed", f"download failed: {failures[name]}")
        else:
            specs[index] = str(files[name])
    pending: list[int] = _already_present(specs, planned, python_exe, log)
    for index in pending:
        del specs[index]
    groups: dict[tuple[tuple[str, ...], tuple[str, ...], bool], list[int]] = {}
    for index in specs:
        entry = planned[index]
        # With a lock, wheel files stay apart from index packages: the lock constrains only
        # the latter (its sageattention pin would refuse the SageAttention 2 wheel).
        apart = entry.kind == "wheel" and target.lock is not None
        key = (tuple(entry.install_options), tuple(entry.extra_index_urls), apart)
        groups.setdefault(key, []).append(index)
    for key, members in groups.items():
        pending += _install_group(
            members, key, planned, specs, python_exe, constraints, target, log, done
        )
    _check_installed(pending, planned, python_exe, torch, target, log, done)
    return [done[index] for index in range(len(planned))]


def _venv_report(python_exe: Path, names: Sequence[str]) -> dict[str, Any]:
    """Ask the venv's Python for the torch trio and each named distribution's metadata."""
    done = subprocess.run(
        [str(python_exe), "-c", _REQUIRES, *sorted(set(names))],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    try:
        report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        report = {"dists": {}, "pins": inspect_venv_torch(python_exe).pins}
    return report


def _already_present(
    specs: dict[int, str],
    planned: Sequence[PlannedOptimization],
    python_exe: Path,
    log: InstallerLogger,
) -> list[int]:
    """Return the index packages the venv already has in a wanted version (no uv call needed).

    This includes packages a torch brought with it (triton on Linux) and ones from the
    system site-packages of a venv made over a machine's own torch.
    """
    from packaging.requirements import InvalidRequirement, Requirement

    wanted: dict[int, Requirement] = {}
    for index, spec in specs.items():
        if planned[index].kind == "wheel":
            continue
        try:
            wanted[index] = Requirement(spec)
        except InvalidRequirement:
            continue
    if not wanted:
        return []
    dists = _venv_report(python_exe, [r.name for r in wanted.values()])["dists"]
    present: list[int] = []
    for index, requirement in wanted.items():
        info = dists.get(requirement.name)
        if info and requirement.specifier.contains(info["version"], prereleases=True):
            log.info(
                f"{planned[index].name}: {requirement.name} {info['version']} is already "
                "in the venv"
            )
            present.append(index)
    return present


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
            done[members[0]] = _outcome(entry, "skipped", f"needs another torch: {exc.message}")
        else:
            log.warn(f"{entry.name} failed (optional, the install goes on): {exc.message}")
            done[members[0]] = _outcome(entry, "failed", exc.message)
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


def _distribution_name(entry: PlannedOptimization) -> str | None:
    from packaging.requirements import InvalidRequirement, Requirement

    if entry.kind == "wheel" and entry.wheel is not None:
        return entry.wheel.filename.split("-", 1)[0]
    if entry.distribution is not None:
        return entry.distribution
    try:
        return Requirement(entry.requirement or "").name
    except InvalidRequirement:
        return None


_REQUIRES = r"""
import importlib.metadata as md, json, sys
report = {"dists": {}, "pins": {}}
for name in ("torch", "torchvision", "torchaudio"):
    try:
        report["pins"][name] = md.version(name)
    except md.PackageNotFoundError:
        pass
for name in sys.argv[1:]:
    try:
        dist = md.distribution(name)
        report["dists"][name] = {"version": dist.version, "requires": dist.requires or []}
    except md.PackageNotFoundError:
        report["dists"][name] = None
print(json.dumps(report))
"""


def torch_problem(
    name: str, version: str, requires: Sequence[str], pins: dict[str, str]
) -> str | None:
    """Say which torch requirement of an installed package the held torch breaks, if any.

    Args:
        name: The distribution.
        version: Its installed version.
        requires: Its `Requires-Dist` entries.
        pins: The torch trio in the venv (name to version).

    Returns:
        A sentence naming the requirement and the torch present, or None.
    """
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    for text in requires:
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            continue
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        have = pins.get(canonicalize_name(requirement.name))
        if have is not None and not spec_contains(str(requirement.specifier) or ">=0", have):
            return (
                f"{name} {version} requires {requirement}, the venv has {requirement.name} {have}"
            )
    return None


def _check_installed(
    pending: list[int],
    planned: Sequence[PlannedOptimization],
    python_exe: Path,
    torch: VenvTorch,
    target: StepTarget,
    log: InstallerLogger,
    done: dict[int, OptimizationOutcome],
) -> None:
    """One look at what was installed: versions, torch requirements, torch unchanged.

    A package installed without dependency resolution (`--no-deps`) but built for
    another torch is taken out again rather than left to fail at import.

    Raises:
        StepFailedError: torch changed despite the constraints.
        TorchConflictError: A required package needs another torch.
    """
    names = {index: _distribution_name(planned[index]) for index in pending}
    report = _venv_report(python_exe, [n for n in names.values() if n])
    if report["pins"] != torch.pins:
        raise StepFailedError(
            f"step 10 changed torch ({torch.pins} → {report['pins']}) despite the constraints.",
            "Reinstall torch with `comfy-install install DIR --force torch`.",
        )
    broken: list[str] = []
    for index in pending:
        entry, name = planned[index], names[index]
        info = report["dists"].get(name) if name else None
        version: str | None = info["version"] if info else None
        problem = (
            torch_problem(name, str(version), info["requires"], torch.pins)
            if info and name
            else None
        )
        if problem is None or name is None:
            log.success(f"{entry.name} installed" + (f" ({version})" if version else ""))
            done[index] = _outcome(entry, "installed", entry.reason, version)
            continue
        if entry.required:
            raise TorchConflictError(f"install {entry.name}: {problem}")
        log.warn(f"{entry.name}: {problem}; it is removed again (torch is held)")
        done[index] = _outcome(entry, "skipped", f"needs another torch: {problem}")
        broken.append(name)
    if broken:
        target.uv.run(
            ["pip", "uninstall", "--python", python_exe, *broken], f"uninstall {', '.join(broken)}"
        )


def _download_wheels(
    wheels: Sequence[PlannedOptimization], target: StepTarget, log: InstallerLogger
) -> tuple[dict[str, Path], dict[str, str]]:
    """Download (or find in the cache) and verify the wheels; return (files, failures).

    Raises:
        IntegrityError: A wheel does not match its checksum (whatever else happened).
    """
    from installer.core.downloads import DownloadRequest
    from installer.edges.download.api import download_files_settled

    requests = [
        DownloadRequest(
            url=e.wheel.url,
            dest_dir=download_cache_dir(),
            filename=e.wheel.filename,
            sha256=e.wheel.sha256,
            size=e.wheel.size,
        )
        for e in wheels
        if e.wheel
    ]
    files: dict[str, Path] = {}
    failures: dict[str, str] = {}
    if not requests:
        return files, failures
    outcomes = download_files_settled(
        requests, log=log, jobs=target.download_jobs, allow_unverified=target.allow_unverified
    )
    for outcome in outcomes:
        if isinstance(outcome, IntegrityError):
            raise outcome
    for request, outcome in zip(requests, outcomes, strict=True):
        if isinstance(outcome, InstallerError):
            failures[request.filename or ""] = outcome.message
        else:
            files[request.filename or ""] = outcome.path
    return files, failures
