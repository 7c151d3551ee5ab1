"""The torch build, reconsidered for the CUDA toolkit here: one SageAttention can be built with.

Torch's extension builder refuses an nvcc of another CUDA major version than
torch's own, so the torch build decides whether SageAttention can be built from
its pinned source: with only nvcc 13 installed, a cu128 torch rules the build
out and a cu130 torch makes it possible. When the configured preference
(`torch.variants`, first fitting build) would rule out a build that another
fitting build allows, [`trade_for_toolkit`][installer.plan.toolkit_torch.trade_for_toolkit]
picks that build instead, and says what the swap gains and what it gives up.

It is a hook beside the torch choice, not part of its rules: it only runs with
`--torch-index auto`, only swaps between builds that fit the GPUs and the driver
(checked by [`variant_fits`][installer.plan.compat.variant_fits]), and only when the
SageAttention routes get better for some module and worse for none (a prebuilt
wheel beats a source build beats SageAttention 1 beats nothing). It never swaps a
torch that is already installed: it says how to, instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from packaging.version import Version

from installer.core.config import Dependencies, ToolsManifest
from installer.core.facts import BuildHost, GpuReport, TorchInstalled
from installer.plan.compat import TorchSelection, variant_fits
from installer.plan.optimizations import PlannedOptimization, plan_optimizations
from installer.plan.sage_sources import cuda_major

_RANK = {"wheel": 3, "source": 2, "fallback": 1}
_ROUTE = {3: "a prebuilt wheel", 2: "a build from source", 1: "SageAttention 1", 0: "nothing"}


@dataclass(frozen=True)
class ToolkitTrade:
    """A torch build chosen for the toolkit (or a note why the installed one was kept)."""

    selection: TorchSelection | None
    note: str | None = None


def sage_routes(planned: list[PlannedOptimization]) -> dict[str, int]:
    """Rank the SageAttention route of each module: 3 wheel, 2 source build, 1 fallback, 0 none.

    Args:
        planned: Step 10's entries.

    Returns:
        The best installing route per module (`sageattention`, `sageattn3`).
    """
    ranks: dict[str, int] = {}
    for entry in planned:
        if entry.kind not in _RANK or entry.import_name is None:
            continue
        rank = _RANK[entry.kind] if entry.action == "install" else 0
        ranks[entry.import_name] = max(ranks.get(entry.import_name, 0), rank)
    return ranks


def trade_for_toolkit(
    deps: Dependencies,
    manifest: ToolsManifest,
    *,
    gpu: GpuReport,
    platform: str,
    selection: TorchSelection,
    request: str,
    host: BuildHost,
    python_version: Version | str,
    installed: TorchInstalled | None,
    allow_unverified: bool = False,
) -> ToolkitTrade | None:
    """Return a torch build that lets SageAttention be built with this toolkit, if it is worth it.

    Args:
        deps: The configuration.
        manifest: The wheel checksums.
        gpu: The GPUs and driver.
        platform: The target OS.
        selection: The torch build the configured preference chose.
        request: `--torch-index` (only `auto` is reconsidered).
        host: The compilers, nvcc, cores and memory.
        python_version: The venv's Python.
        installed: The torch already in the venv, if any (never swapped).
        allow_unverified: `--allow-unverified` (wheels without a checksum count).

    Returns:
        None when nothing changes; else the other build with the reason for the swap (what it
        gains and gives up), or, when torch is already installed, only a note on how to swap.
    """
    nvcc = host.nvcc_version
    if request != "auto" or selection.cuda is None or nvcc is None:
        return None
    if cuda_major(selection.cuda) == nvcc.major:
        return None
    candidates = [
        v
        for v in deps.torch.variants
        if platform in v.platforms
        and v.is_cuda
        and cuda_major(v.name) == nvcc.major
        and variant_fits(v, gpu.ccs, gpu.cuda_driver).value
    ]
    if not candidates:
        return None
    other = candidates[0]

    def plan(cuda: str, index_url: str | None) -> list[PlannedOptimization]:
        return plan_optimizations(
            deps,
            manifest,
            platform=platform,
            gpu=gpu,
            torch_version=deps.torch.torch_version,
            torch_cuda=cuda,
            torch_index_url=index_url,
            python_version=python_version,
            build_host=host,
            allow_unverified=allow_unverified,
        )

    before = plan(selection.cuda, selection.index_url)
    after = plan(other.name, other.index_url)
    old, new = sage_routes(before), sage_routes(after)
    modules = sorted(set(old) | set(new))
    if not any(new.get(m, 0) > old.get(m, 0) for m in modules) or any(
        new.get(m, 0) < old.get(m, 0) for m in modules
    ):
        return None
    gains = "; ".join(
        f"{m}: {_ROUTE[new.get(m, 0)]} instead of {_ROUTE[old.get(m, 0)]}"
        for m in modules
        if new.get(m, 0) != old.get(m, 0)
    )
    why = (
        f"the CUDA toolkit here is nvcc {nvcc} (CUDA {nvcc.major}); torch's extension builder "
        f"needs torch's CUDA major to match, so with {other.name} SageAttention can be built "
        f"from its pinned source ({gains})"
    )
    if installed is not None and installed.build == selection.cuda:
        return ToolkitTrade(
            None,
            f"torch {installed.version} ({installed.build}) is installed and kept, but {why}. "
            f"To switch: --torch-index {other.name} --force torch",
        )
    lost = sorted(
        {e.name for e in before if e.action == "install" and e.kind == "package"}
        - {e.name for e in after if e.action == "install" and e.kind == "package"}
    )
    traded = (
        f"it gives up {', '.join(lost)} (not available for {other.name})"
        if lost
        else "no other package changes"
    )
    driver = f"; it needs a driver supporting CUDA {other.min_cuda_driver}"
    return ToolkitTrade(
        TorchSelection(
            other.name,
            other.index_url,
            other.name,
            f"{other.name} rather than {selection.variant} (the first configured build that "
            f"fits): {why}; {traded}{driver}",
            selection.warnings,
        )
    )
