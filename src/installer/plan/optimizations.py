"""Step 10's plan: which accelerator package (xformers, triton, SageAttention) installs, and why.

`dependencies.json` declares the step: `optimizations.packages` lists packages
resolved from an index (each with `requires` terms, a per-platform
distribution name, `torch_constraints` mapping torch versions to the release
built for them, `install_options` and `retry_options`), and
`pip_packages.sageattention_wheels` lists prebuilt SageAttention wheels with
the compute capabilities, torch, CUDA build, Python and platform they fit; their
sha256 comes from `tools_manifest.json`.

SageAttention is chosen per module (`sageattention` for SageAttention 2,
`sageattn3` for 3) by its routes, strategies planned best first
([`installer.plan.sage_routes`][installer.plan.sage_routes]): a prebuilt wheel whose
sha256 is in the manifest → a build of the pinned source (`sageattention_sources`) when
this machine can build it ([`installer.plan.sage_sources`][installer.plan.sage_sources]) →
`sageattention_fallback` (SageAttention 1 from PyPI) → nothing. Every route not
taken carries its reason. When a build is planned, the fallback stands by: the
step installs it only if that build fails. The records
([`PlannedOptimization`][installer.plan.optimization_records.PlannedOptimization],
`PlannedWheel`) are re-exported here.

[`plan_optimizations`][installer.plan.optimizations.plan_optimizations] is pure: it
decides from data (the GPUs, the torch build, the Python) and gives every entry a
reason. The plan (and `--dry-run`) show it; the step
([`installer.optimizations`][installer.optimizations]) runs it again against the
torch the venv really has.
"""

from __future__ import annotations

from packaging.version import Version

from installer.core.config import Dependencies, OptimizationPackage, ToolsManifest
from installer.core.facts import BuildHost, GpuReport
from installer.plan.compat import (
    Choice,
    DriverLimit,
    as_ccs,
    cuda_of,
    driver_limit,
    requires_met,
    resolve_torch_constraint,
    sass_for,
)
from installer.plan.optimization_records import PlannedOptimization, PlannedWheel
from installer.plan.sage_routes import SageContext, plan_sageattention

__all__ = ["PlannedOptimization", "PlannedWheel", "plan_optimizations"]


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
    routes = SageContext(
        deps=deps,
        manifest=manifest,
        platform=platform,
        gpu=gpu,
        torch_version=torch_version,
        torch_cuda=torch_cuda,
        python_version=python_version,
        build_host=build_host,
        allow_unverified=allow_unverified,
    )
    planned.extend(plan_sageattention(routes, gate_reason=sage_gate))
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
