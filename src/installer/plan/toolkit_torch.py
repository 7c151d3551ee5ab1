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
SageAttention routes get better for some module and worse for none (the routes'
ranks, [`installer.plan.sage_routes`][installer.plan.sage_routes]: a prebuilt wheel
beats a source build beats SageAttention 1 beats nothing). It never swaps a torch that
is already installed: it says how to, instead. It plans step 10 only for the other
build; the caller's plan of the preferred build is reused, and so is the other plan
when the swap is made.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from installer.core.config import Dependencies
from installer.core.facts import BuildHost, GpuReport, TorchInstalled
from installer.plan.compat import TorchSelection, variant_fits
from installer.plan.optimizations import PlannedOptimization
from installer.plan.sage_routes import NONE, module_routes
from installer.plan.sage_sources import cuda_major

PlanFor = Callable[[str | None, str | None], list[PlannedOptimization]]
"""Step 10's plan for a torch CUDA build (`cu130`) and its index URL."""


@dataclass(frozen=True)
class ToolkitTrade:
    """A torch build chosen for the toolkit (or a note why the installed one was kept)."""

    selection: TorchSelection | None
    note: str | None = None
    planned: list[PlannedOptimization] | None = None
    """Step 10's plan for the chosen build (None with only a note): planned once, reused."""


def trade_for_toolkit(
    deps: Dependencies,
    *,
    gpu: GpuReport,
    platform: str,
    selection: TorchSelection,
    request: str,
    host: BuildHost,
    installed: TorchInstalled | None,
    planned: list[PlannedOptimization],
    plan_for: PlanFor,
) -> ToolkitTrade | None:
    """Return a torch build that lets SageAttention be built with this toolkit, if it is worth it.

    Args:
        deps: The configuration.
        gpu: The GPUs and driver.
        platform: The target OS.
        selection: The torch build the configured preference chose.
        request: `--torch-index` (only `auto` is reconsidered).
        host: The compilers, nvcc, cores and memory.
        installed: The torch already in the venv, if any (never swapped).
        planned: Step 10's plan for ``selection`` (made once by the caller).
        plan_for: Plans step 10 for another build; called only when one is a candidate.

    Returns:
        None when nothing changes; else the other build with the reason for the swap (what it
        gains and gives up) and step 10's plan for it, or, when torch is already installed, only
        a note on how to swap.
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

    before = planned
    after = plan_for(other.name, other.index_url)
    old, new = module_routes(before), module_routes(after)
    modules = sorted(set(old) | set(new))
    rank_old = {m: old.get(m, NONE).rank for m in modules}
    rank_new = {m: new.get(m, NONE).rank for m in modules}
    if not any(rank_new[m] > rank_old[m] for m in modules) or any(
        rank_new[m] < rank_old[m] for m in modules
    ):
        return None
    gains = "; ".join(
        f"{m}: {new.get(m, NONE).label} instead of {old.get(m, NONE).label}"
        for m in modules
        if rank_new[m] != rank_old[m]
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
        ),
        planned=after,
    )
