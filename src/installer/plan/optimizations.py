"""Step 10's plan: which accelerator package (xformers, triton, SageAttention) installs, and why.

`dependencies.json` declares the step: `optimizations.packages` lists packages
resolved from an index (each with `requires` terms, a per-platform
distribution name, `torch_constraints` mapping torch versions to the release
built for them, `install_options` and `retry_options`), and
`pip_packages.sageattention_wheels` lists prebuilt SageAttention wheels with
the compute capabilities, torch, CUDA build, Python and platform they fit; their
sha256 comes from `tools_manifest.json`.

SageAttention is chosen per module (`sageattention` for SageAttention 2,
`sageattn3` for 3), by route, in this order: a prebuilt wheel whose sha256 is in
the manifest → a build of the pinned source (`sageattention_sources`) when this
machine can build it ([`installer.plan.sage_sources`][installer.plan.sage_sources]) →
`sageattention_fallback` (SageAttention 1 from PyPI) → nothing. Every route not
taken carries its reason. When a build is planned, the fallback stands by: the
step installs it only if that build fails.

[`plan_optimizations`][installer.plan.optimizations.plan_optimizations] is pure: it
decides from data (the GPUs, the torch build, the Python) and gives every entry a
reason. The plan (and `--dry-run`) show it; the step
([`installer.optimizations`][installer.optimizations]) runs it again against the
torch the venv really has.
"""

from __future__ import annotations

from typing import Literal

from packaging.version import Version
from pydantic import BaseModel, Field

from installer.core.config import (
    Dependencies,
    OptimizationPackage,
    RetryOptions,
    SageAttentionFallback,
    SageAttentionSource,
    SageAttentionWheel,
    ToolsManifest,
)
from installer.core.facts import BuildHost, GpuReport
from installer.plan.compat import (
    Choice,
    DriverLimit,
    as_ccs,
    cuda_of,
    driver_limit,
    first_outside,
    requires_met,
    resolve_torch_constraint,
    sass_for,
    select_sageattention_wheels,
)
from installer.plan.sage_sources import PlannedSource, plan_source


class PlannedWheel(BaseModel):
    """A wheel file to download, verify and install."""

    filename: str
    url: str
    sha256: str | None = Field(description="From tools_manifest.json; None only if unverified.")
    size: int | None = None


class PlannedOptimization(BaseModel):
    """One package of step 10 as the plan decided it."""

    name: str
    kind: Literal["package", "wheel", "source", "fallback"]
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
    source: PlannedSource | None = Field(
        default=None, description="The pinned source build (kind 'source')."
    )
    fallback_for: str | None = Field(
        default=None,
        description="The source build this entry replaces if that build fails (it stands by).",
    )


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
    build_host: BuildHost | None = None,
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
        build_host: The compilers, git, cores and memory of the machine, for source builds;
            None plans none.
        allow_unverified: Accept wheels without a checksum in the manifest.

    Returns:
        One entry per configured package and wheel, in install order.
    """
    planned: list[PlannedOptimization] = []
    gate = requires_met(["nvidia"], platform, gpu, torch_cuda)
    limit = driver_limit(torch_cuda, gpu.cuda_driver, deps.torch.variants, platform)
    compiler_skips: list[str] = []
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
        entry = _plan_package(
            package,
            base,
            distribution,
            gate.value and gate.reason,
            platform,
            gpu,
            torch_version,
            torch_cuda,
            torch_index_url,
            limit,
        )
        planned.append(entry)
        if gate.value and package.jit_compiler:
            blocked = _compiler_blocked(package, platform, gpu, torch_cuda, limit)
            if blocked is not None:
                compiler_skips.append(blocked)
    sage_gate = None if gate.value else gate.reason
    if sage_gate is None and compiler_skips:
        sage_gate = "SageAttention runs Triton kernels, which cannot work here: " + "; ".join(
            compiler_skips
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
            gate_reason=sage_gate,
            build_host=build_host,
            allow_unverified=allow_unverified,
        )
    )
    return planned


TRITON_SOURCES = (
    "'device kernel image is invalid': pytorch/pytorch #119054, triton-lang/triton #3001"
)


def _compiler_blocked(
    package: OptimizationPackage,
    platform: str,
    gpu: GpuReport,
    torch_cuda: str | None,
    limit: DriverLimit | None,
) -> str | None:
    """Why a run-time kernel compiler (Triton) cannot work here: the GPU or the driver."""
    met = requires_met(package.requires, platform, gpu, torch_cuda, package.requires_notes)
    if not met.value:
        return f"{package.name} {met.reason}"
    if limit is not None:
        return (
            f"{package.name} compiles its kernels at run time with its own ptxas, newer than "
            f"this driver (CUDA {limit.driver_cuda}), and such kernels fail to load "
            f"({TRITON_SOURCES}); {limit.update} lifts this"
        )
    return None


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
    limit: DriverLimit | None,
) -> PlannedOptimization:
    if not gate_ok:
        met = requires_met(["nvidia"], platform, gpu, torch_cuda)
        return base.model_copy(update={"reason": met.reason})
    if distribution is None:
        return base.model_copy(update={"reason": f"not published for {platform}"})
    met = requires_met(package.requires, platform, gpu, torch_cuda, package.requires_notes)
    if not met.value:
        return base.model_copy(update={"reason": met.reason})
    spec = resolve_torch_constraint(package, distribution, torch_version)
    if spec.value is None:
        return base.model_copy(update={"reason": spec.reason})
    from_torch_index = package.index == "torch" and torch_index_url is not None
    build = _build_problem(package, distribution, torch_cuda, from_torch_index, gpu, limit)
    if build.value is None:
        return base.model_copy(update={"reason": build.reason})
    if package.jit_compiler and limit is not None:
        blocked = _compiler_blocked(package, platform, gpu, torch_cuda, limit)
        return base.model_copy(update={"reason": str(blocked)})
    extra = [torch_index_url] if from_torch_index and torch_index_url else []
    reason = spec.reason + (f"; {build.reason}" if build.reason else "")
    return base.model_copy(
        update={
            "action": "install",
            "reason": reason,
            "requirement": spec.value,
            "install_options": list(package.install_options),
            "extra_index_urls": extra,
        }
    )


def _build_problem(
    package: OptimizationPackage,
    distribution: str,
    torch_cuda: str | None,
    from_torch_index: bool,
    gpu: GpuReport,
    limit: DriverLimit | None,
) -> Choice[str | None]:
    """Check the package's default-index build against torch's CUDA major and the driver.

    Returns:
        A note to add (value ``""``), or None with the reason to skip it.
    """
    pypi = package.pypi_build
    torch_cuda_version = cuda_of(torch_cuda)
    if pypi is None or torch_cuda_version is None:
        return Choice("", "")
    built = Version(pypi.cuda)
    note = ""
    if built.major != torch_cuda_version.major:
        if not from_torch_index:
            return Choice(
                None,
                f"the default index's {distribution} is a CUDA {built} build (it needs CUDA "
                f"{built.major}'s runtime), torch is {torch_cuda} (CUDA "
                f"{torch_cuda_version.major}): it would not load beside it, and no configured "
                f"index has a CUDA {torch_cuda_version.major} build",
            )
        note = (
            f"from torch's {torch_cuda} index (the default index's {distribution} is a CUDA "
            f"{built} build, which would not load beside a CUDA {torch_cuda_version.major} torch)"
        )
    if limit is None or not pypi.sass:
        return Choice(note, note)
    missing = [cc for cc in as_ccs(gpu.ccs) if sass_for(pypi.sass, cc) is None]
    if missing:
        return Choice(
            None,
            f"its CUDA {built} build has no compiled kernels for compute capability "
            f"{missing[0]} (it has {', '.join(pypi.sass)}), and the PTX it would use needs a "
            f"driver that supports CUDA {built}, newer than this one (CUDA {limit.driver_cuda}): "
            f"{limit.update} lifts this",
        )
    archs = sorted({str(sass_for(pypi.sass, cc)) for cc in as_ccs(gpu.ccs)})
    compat = (
        f"its compiled sm_{', sm_'.join(a.replace('.', '') for a in archs)} kernels run on "
        f"this driver through minor-version compatibility"
    )
    text = f"{note}; {compat}" if note else compat
    return Choice(text, text)


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


def _source_entry(source: SageAttentionSource) -> PlannedOptimization:
    return PlannedOptimization(
        name=f"{source.name} (source)",
        kind="source",
        action="skip",
        reason="",
        distribution=source.distribution,
        requirement=f"{source.distribution} @ git+{source.url}@{source.commit}",
        import_name=source.import_name,
        builds_from_source=True,
    )


def _fallback_entry(fallback: SageAttentionFallback) -> PlannedOptimization:
    return PlannedOptimization(
        name=f"{fallback.spec} (fallback)",
        kind="fallback",
        action="skip",
        reason="",
        requirement=fallback.spec,
        import_name=fallback.import_name,
        builds_from_source=fallback.build == "source",
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
    build_host: BuildHost | None,
    allow_unverified: bool,
) -> list[PlannedOptimization]:
    section = deps.pip_packages
    fallback = section.sageattention_fallback
    if gate_reason is not None:
        skipped = [
            _wheel_entry(w, manifest).model_copy(update={"reason": gate_reason})
            for w in section.sageattention_wheels
        ]
        skipped += [
            _source_entry(s).model_copy(update={"reason": gate_reason})
            for s in section.sageattention_sources
        ]
        if fallback is not None:
            skipped.append(_fallback_entry(fallback).model_copy(update={"reason": gate_reason}))
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
    wheel_for: dict[str, str] = {}
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
        wheel_for.setdefault(choice.value.import_name, choice.value.name)
    planned.extend(
        _wheel_entry(choice.value, manifest).model_copy(update={"reason": choice.reason})
        for choice in rejected
    )
    built_for: dict[str, str] = {}
    for source in section.sageattention_sources:
        entry = _source_entry(source)
        if source.import_name in wheel_for:
            planned.append(
                entry.model_copy(
                    update={"reason": f"a prebuilt wheel fits ({wheel_for[source.import_name]})"}
                )
            )
            continue
        build = plan_source(
            source,
            platform=platform,
            gpu=gpu,
            torch_version=torch_version,
            torch_cuda=torch_cuda,
            python_version=python_version,
            host=build_host,
        )
        if build.value is None:
            planned.append(
                entry.model_copy(
                    update={"reason": f"no prebuilt wheel fits; not built here: {build.reason}"}
                )
            )
            continue
        planned.append(
            entry.model_copy(
                update={
                    "action": "install",
                    "source": build.value,
                    "reason": f"no prebuilt wheel fits; {build.reason}",
                }
            )
        )
        built_for[source.import_name] = entry.name
    if fallback is not None:
        planned.append(_plan_fallback(fallback, gpu, wheel_for, built_for, build_host))
    return planned


def _plan_fallback(
    fallback: SageAttentionFallback,
    gpu: GpuReport,
    wheel_for: dict[str, str],
    built_for: dict[str, str],
    build_host: BuildHost | None,
) -> PlannedOptimization:
    entry = _fallback_entry(fallback)
    outside = first_outside(fallback.cc, gpu.ccs) if fallback.cc is not None else None
    if fallback.import_name in wheel_for:
        return entry.model_copy(update={"reason": "a prebuilt SageAttention wheel fits"})
    if outside is not None:
        return entry.model_copy(
            update={"reason": f"supports compute capability {fallback.cc}, GPU is {outside}"}
        )
    tools = (
        (build_host.compiler.ok, build_host.nvcc.ok) if build_host is not None else (False, False)
    )
    if fallback.build == "source" and not all(tools):
        missing = [
            name
            for name, ok in zip(("a C++ compiler", "the CUDA toolkit (nvcc)"), tools, strict=True)
            if not ok
        ]
        return entry.model_copy(
            update={
                "reason": f"no prebuilt wheel fits and building it needs {' and '.join(missing)}"
            }
        )
    if fallback.import_name in built_for:
        name = built_for[fallback.import_name]
        return entry.model_copy(
            update={
                "fallback_for": name,
                "reason": f"stands by: installed only if the {name} build fails",
            }
        )
    how = (
        "will COMPILE from source (--no-build-isolation)"
        if fallback.build == "source"
        else "a prebuilt wheel from the index"
    )
    options = ["--no-build-isolation"] if fallback.build == "source" else []
    text = f"{fallback.description} ({how})" if fallback.description else how
    return entry.model_copy(
        update={
            "action": "install",
            "install_options": options,
            "reason": f"no prebuilt SageAttention 2/3 wheel fits and none is built here; {text}",
        }
    )
