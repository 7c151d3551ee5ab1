"""Pure compatibility rules: which torch build, which package release, which wheel.

Nothing here does I/O. Each rule takes the facts (a GPU report, the config,
the target platform and Python) and returns its answer *with the reason* as a
[`Choice`][installer.plan.compat.Choice], so the plan can show the user why.

* [`select_torch`][installer.plan.compat.select_torch]: the torch build (CUDA
  variant or CPU) and its index for a GPU and driver.
* [`requires_met`][installer.plan.compat.requires_met]: the `requires` terms of an
  optimization package (`nvidia`, `linux`, `cc>=8.0`, ...).
* [`resolve_torch_constraint`][installer.plan.compat.resolve_torch_constraint]: the
  release of a package built for the torch being installed.
* [`select_sageattention_wheels`][installer.plan.compat.select_sageattention_wheels]:
  the prebuilt SageAttention wheels that fit compute capability, torch, CUDA
  build, Python and platform.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from installer.core.config import (
    OptimizationPackage,
    SageAttentionWheel,
    TorchConfig,
    TorchVariant,
)
from installer.core.errors import PlanError
from installer.core.facts import GpuReport

T = TypeVar("T")


@dataclass(frozen=True)
class Choice(Generic[T]):
    """A decision and the human reason for it."""

    value: T
    reason: str


@dataclass(frozen=True)
class TorchSelection:
    """Where torch comes from, and which build it is."""

    variant: str
    index_url: str | None
    cuda: str | None
    reason: str
    warnings: tuple[str, ...] = ()

    @property
    def is_cuda(self) -> bool:
        """True when the selected build uses CUDA."""
        return self.cuda is not None


def public_version(version: Version | str) -> Version:
    """Drop the local label (``2.9.1+cu128`` → ``2.9.1``) for range comparisons.

    Args:
        version: A version, e.g. ``2.9.1+cu128``.
    """
    return Version(Version(str(version)).public)


def spec_contains(spec: str, version: Version | str) -> bool:
    """Return True when ``version`` (local label ignored) satisfies ``spec``.

    Args:
        spec: A PEP 440 specifier set, e.g. ``>=2.8,<2.11``.
        version: The version to test; pre-releases count as inside the range.
    """
    return SpecifierSet(spec).contains(public_version(version), prereleases=True)


CCs = Version | Sequence[Version] | None


def as_ccs(cc: CCs) -> list[Version]:
    """Normalise one compute capability, several, or None into a list.

    Args:
        cc: One compute capability, a sequence of them, or None (no NVIDIA GPU).

    Returns:
        The capabilities in the order given; empty for None.
    """
    if cc is None:
        return []
    if isinstance(cc, Version):
        return [cc]
    return list(cc)


def first_outside(spec: str, cc: CCs) -> Version | None:
    """Return the first compute capability in ``cc`` that ``spec`` does not contain.

    Args:
        spec: The range every capability must be in, e.g. ``>=8.0,<10.0``.
        cc: One compute capability, several, or None (no NVIDIA GPU).

    Returns:
        That capability, or None when all are inside (or there are none).
    """
    return next((value for value in as_ccs(cc) if not spec_contains(spec, value)), None)


def variant_fits(variant: TorchVariant, cc: CCs, cuda_driver: Version | None) -> Choice[bool]:
    """Say whether a CUDA variant runs on a GPU of ``cc`` with a driver supporting ``cuda_driver``.

    Args:
        variant: The torch build to check.
        cc: The compute capability of each GPU (None: unknown, not checked).
        cuda_driver: Newest CUDA the driver supports (None: unknown, assumed new enough).
    """
    outside = first_outside(variant.cc, cc) if variant.cc is not None else None
    if outside is not None:
        return Choice(
            False,
            f"{variant.name} has no kernels for compute capability {outside} "
            f"(it covers {variant.cc})",
        )
    if variant.min_cuda_driver is not None and cuda_driver is not None:
        needed = Version(variant.min_cuda_driver)
        if cuda_driver < needed:
            return Choice(
                False,
                f"{variant.name} needs a driver supporting CUDA {needed}; "
                f"this driver supports {cuda_driver}",
            )
    return Choice(True, f"{variant.name} fits")


def _cuda_from_url(url: str) -> str | None:
    match = re.search(r"/(cu[0-9]+|cpu|rocm[0-9.]+)/?$", url)
    if match is None:
        return None
    name = match.group(1)
    return name if name.startswith("cu") else None


def select_torch(
    gpu: GpuReport,
    torch: TorchConfig,
    platform: str,
    request: str = "auto",
    default_index_builds: dict[str, str] | None = None,
) -> TorchSelection:
    """Return the torch build for this GPU, driver and platform, with the reason.

    Args:
        gpu: The detected (or overridden) GPUs and driver.
        torch: The `torch` section of `dependencies.json`.
        platform: Target OS (`linux` or `windows`).
        request: `--torch-index`: `auto`, `cpu`, a variant name such as
            `cu128`, `default` (uv's default index as configured) or a URL.
        default_index_builds: Which build the default index (PyPI) serves
            per platform, e.g. ``{"linux": "cu128", "windows": "cpu"}``.

    Raises:
        PlanError: No configured variant fits (exit code 2), or the requested
            variant is not in the config.
    """
    variants = [v for v in torch.variants if platform in v.platforms]
    by_name = {v.name: v for v in variants}
    cc, driver = gpu.ccs, gpu.cuda_driver

    if request == "default":
        build = (default_index_builds or {}).get(platform)
        cuda = build if build and build.startswith("cu") and gpu.has_nvidia else None
        what = f"the {build} build" if build else "whatever build it serves"
        return TorchSelection(
            "default",
            None,
            cuda,
            f"--torch-index default: uv's default index (PyPI or your "
            f"UV_INDEX_URL / --index-url); for {platform} it serves {what}",
        )
    if "://" in request or request.startswith(("/", "./", "file:")):
        cuda = _cuda_from_url(request) if gpu.has_nvidia else None
        return TorchSelection("custom", request, cuda, f"--torch-index {request} (given)")
    if request != "auto":
        variant = by_name.get(request)
        if variant is None:
            names = ", ".join(by_name) or "none"
            raise PlanError(
                f"--torch-index {request}: no such torch variant for {platform} in "
                f"torch.variants (configured: {names}).",
                "Use one of the configured names, `auto`, `default` or an index URL.",
            )
        warnings: tuple[str, ...] = ()
        if variant.is_cuda:
            fit = variant_fits(variant, cc, driver)
            if not gpu.has_nvidia:
                warnings = (
                    f"{variant.name} was requested but no NVIDIA GPU is present; "
                    "torch will run on the CPU",
                )
            elif not fit.value:
                warnings = (f"{variant.name} was requested although {fit.reason}",)
        cuda = variant.name if variant.is_cuda and gpu.has_nvidia else None
        return TorchSelection(
            variant.name, variant.index_url, cuda, f"--torch-index {request} (requested)", warnings
        )

    cpu = next((v for v in variants if not v.is_cuda), None)
    if not gpu.has_nvidia:
        if cpu is None:
            raise PlanError(
                f"torch.variants has no CPU build for {platform}, and {gpu.reason}.",
                "Add a variant without min_cuda_driver (the CPU build) to torch.variants.",
            )
        return TorchSelection(cpu.name, cpu.index_url, None, f"CPU build: {gpu.reason}")

    rejected: list[str] = []
    for variant in variants:
        if not variant.is_cuda:
            continue
        fit = variant_fits(variant, cc, driver)
        if fit.value:
            driver_text = (
                f"the driver supports CUDA {driver}"
                if driver
                else "driver CUDA version not given (assumed new enough)"
            )
            covered = f" (covers cc {variant.cc})" if variant.cc else ""
            return TorchSelection(
                variant.name,
                variant.index_url,
                variant.name,
                f"newest configured build for compute capability "
                f"{', '.join(str(c) for c in cc)}{covered}; {driver_text}",
            )
        rejected.append(fit.reason)
    if cpu is None:
        raise PlanError(
            "torch.variants: no torch build fits this GPU: " + "; ".join(rejected) + ".",
            "Update the NVIDIA driver, add a fitting variant to torch.variants, "
            "or pass --torch-index cpu.",
        )
    return TorchSelection(
        cpu.name,
        cpu.index_url,
        None,
        "CPU build: no CUDA build fits (" + "; ".join(rejected) + ")",
        (
            "torch will run on the CPU: "
            + "; ".join(rejected)
            + ". Update the NVIDIA driver to use the GPU.",
        ),
    )


def requires_met(
    terms: Sequence[str], platform: str, gpu: GpuReport, torch_cuda: str | None
) -> Choice[bool]:
    """Check the `requires` terms of an optimization package.

    Args:
        terms: `nvidia`, `cpu`, `linux`, `windows`, or `cc<op>X.Y` terms; all must hold.
        platform: Target OS.
        gpu: The GPU report.
        torch_cuda: The CUDA build of the torch being installed (None: CPU build).
    """
    for term in terms:
        if term == "nvidia":
            if not gpu.has_nvidia:
                return Choice(False, "no NVIDIA GPU")
            if torch_cuda is None:
                return Choice(False, "torch is a CPU build")
        elif term == "cpu":
            if gpu.has_nvidia:
                return Choice(False, "only for machines without an NVIDIA GPU")
        elif term in ("linux", "windows"):
            if platform != term:
                return Choice(False, f"only for {term}")
        elif term.startswith("cc"):
            spec = term[2:].strip()
            outside = first_outside(spec, gpu.ccs)
            if not gpu.ccs or outside is not None:
                return Choice(False, f"needs compute capability {spec} (have {outside or 'none'})")
    return Choice(True, "requirements met" if terms else "no requirements")


def resolve_torch_constraint(
    package: OptimizationPackage, distribution: str, torch_version: Version | str
) -> Choice[str | None]:
    """Return the requirement to install for the torch being installed, or None with why.

    The first `torch_constraints` entry whose `torch` range holds the torch
    version wins. A bare specifier (`<3.6`) applies to ``distribution``; a full
    requirement (`xformers==0.0.33.post2`) is used as written. No entries means
    the package is unconstrained (uv picks a release that accepts the held torch).

    Args:
        package: The optimization package, with its `torch_constraints`.
        distribution: Its distribution name on the target platform (from
            [`package_for`][installer.core.config.OptimizationPackage.package_for]); a bare
            specifier is appended to it.
        torch_version: The torch being installed, e.g. `2.9.1+cu128`.

    Returns:
        The requirement (``distribution`` alone when unconstrained), or None when no entry's range
        holds the torch version; the reason says which entry applied.
    """
    torch_public = public_version(torch_version)
    if not package.torch_constraints:
        return Choice(
            distribution,
            f"no torch constraint; uv picks a {distribution} release "
            f"that accepts torch {torch_public}",
        )
    for entry in package.torch_constraints:
        if spec_contains(entry.torch, torch_public):
            requirement = entry.spec if entry.spec[0] not in "<>=!~" else distribution + entry.spec
            return Choice(
                str(Requirement(requirement)),
                f"built for torch {entry.torch} (torch is {torch_public})",
            )
    ranges = ", ".join(entry.torch for entry in package.torch_constraints)
    return Choice(
        None,
        f"no {distribution} release listed for torch {torch_public} "
        f"(torch_constraints cover {ranges})",
    )


def wheel_fits(
    wheel: SageAttentionWheel,
    cc: CCs,
    torch_version: Version | str,
    torch_cuda: str | None,
    python_version: Version | str,
    platform: str,
) -> Choice[bool]:
    """Say whether one SageAttention wheel fits the machine, and if not, why.

    Args:
        wheel: The configured wheel.
        cc: The compute capability of each GPU (every one must be in the wheel's `cc`); None or
            empty: no NVIDIA GPU.
        torch_version: The torch being installed (its local label is ignored).
        torch_cuda: Torch's CUDA build, e.g. `cu128`; None for a CPU build.
        python_version: The venv's Python, e.g. `3.12`.
        platform: The target OS, `linux` or `windows`.

    Returns:
        True with the facts that match, or False with the first that does not (checked in the order
        platform, GPU, compute capability, CUDA, torch, Python).
    """
    if wheel.platform != platform:
        return Choice(False, f"built for {wheel.platform}")
    ccs = as_ccs(cc)
    if not ccs:
        return Choice(False, "no NVIDIA GPU")
    outside = first_outside(wheel.cc, ccs)
    if outside is not None:
        return Choice(False, f"kernels for compute capability {wheel.cc}, GPU is {outside}")
    if torch_cuda is None:
        return Choice(False, "torch is a CPU build")
    if torch_cuda not in wheel.cuda:
        return Choice(False, f"built for {'/'.join(wheel.cuda)}, torch is {torch_cuda}")
    if not spec_contains(wheel.torch, torch_version):
        return Choice(
            False, f"built for torch {wheel.torch}, torch is {public_version(torch_version)}"
        )
    if not spec_contains(wheel.python, python_version):
        return Choice(False, f"for Python {wheel.python}, venv is {python_version}")
    return Choice(
        True,
        f"cc {', '.join(str(c) for c in ccs)} in {wheel.cc}, torch {public_version(torch_version)} "
        f"{torch_cuda}, Python {python_version}, {platform}",
    )


def select_sageattention_wheels(
    wheels: Sequence[SageAttentionWheel],
    cc: CCs,
    torch_version: Version | str,
    torch_cuda: str | None,
    python_version: Version | str,
    platform: str,
) -> tuple[list[Choice[SageAttentionWheel]], list[Choice[SageAttentionWheel]]]:
    """Split the configured SageAttention wheels into those that fit and those that do not.

    Every fitting wheel is chosen (on Blackwell that is SageAttention 2 and 3);
    each rejected one carries the reason.

    Args:
        wheels: The configured `sageattention_wheels`, in order.
        cc: The compute capability of each GPU; None or empty: no NVIDIA GPU.
        torch_version: The torch being installed (its local label is ignored).
        torch_cuda: Torch's CUDA build, e.g. `cu128`; None for a CPU build.
        python_version: The venv's Python, e.g. `3.12`.
        platform: The target OS, `linux` or `windows`.

    Returns:
        ``(chosen, rejected)``, each a list of choices whose reason explains it.
    """
    chosen: list[Choice[SageAttentionWheel]] = []
    rejected: list[Choice[SageAttentionWheel]] = []
    for wheel in wheels:
        fit = wheel_fits(wheel, cc, torch_version, torch_cuda, python_version, platform)
        (chosen if fit.value else rejected).append(Choice(wheel, fit.reason))
    return chosen, rejected
