"""`comfy-install benchmark` from start to end: measure, time ComfyUI, compare, save.

[`run_benchmark`][installer.benchmark.run.run_benchmark] runs the attention module in
the install's venv, turns its raw timings into a judged run, optionally times a
real ComfyUI start-up and workflow, compares with the previous run and saves the
new one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from installer.attention.measure.results import BenchmarkRun, build_run
from installer.attention.measure.runner import run_attention_module
from installer.benchmark.comfyui import SAGE_FLAG, SDPA_FLAG, load_workflow, time_comfyui
from installer.benchmark.compare import Change, Comparison, compare_runs
from installer.benchmark.headline import headline
from installer.benchmark.options import (
    BenchmarkOptions,
    module_config,
    module_timeout,
    validate_options,
)
from installer.benchmark.store import latest_run, load_run, save_run
from installer.core.errors import RegressionError, UsageError

if TYPE_CHECKING:
    from installer.core.facts import GpuReport
    from installer.core.log import InstallerLogger


@dataclass(frozen=True)
class BenchmarkOutcome:
    """The result of `comfy-install benchmark`."""

    run: BenchmarkRun | None
    reason: str | None = None
    """Why nothing was measured (no torch, no GPU), when ``run`` is None."""
    saved_to: Path | None = None
    comparison: Comparison | None = None
    compare_note: str | None = None
    """Why no comparison was made although one was asked for."""

    @property
    def regressions(self) -> list[Change]:
        """The regressions the comparison found (none without a comparison)."""
        return self.comparison.regressions if self.comparison else []

    def as_data(self) -> dict[str, Any]:
        """Return the `data` of `benchmark --json`."""
        return {
            "measured": self.run is not None,
            "reason": self.reason,
            "headline": headline(self.run) if self.run else None,
            "saved_to": str(self.saved_to) if self.saved_to else None,
            "run": self.run.model_dump(mode="json") if self.run else None,
            "comparison": None
            if self.comparison is None
            else {
                **self.comparison.model_dump(mode="json"),
                "regressions": len(self.comparison.regressions),
                "counts": self.comparison.counts(),
            },
            "compare_note": self.compare_note,
        }


def run_benchmark(
    options: BenchmarkOptions, log: InstallerLogger, gpu: GpuReport | None = None
) -> BenchmarkOutcome:
    """Benchmark the attention backends of an install (and, if asked, ComfyUI itself).

    Args:
        options: What to measure and whether to save and compare.
        log: Progress and warnings.
        gpu: The detected GPUs (NVML), for the driver version; detected here
            when None and a GPU was measured.

    Returns:
        The run (None, with the reason, when the venv has no torch or no
        usable GPU), where it was saved and the comparison.

    Raises:
        UsageError: DIR has no venv, options are out of range, `--comfyui`
            without `DIR/ComfyUI`, a bad workflow or baseline file.
        StepFailedError: The module in the venv crashed or timed out.
        EnvironmentUnsupportedError: The run could not be saved.
    """
    from installer.edges.environment import current_platform
    from installer.edges.probe import layout

    options = validate_options(options)
    install_dir = options.install_dir
    paths = layout(install_dir, current_platform())
    python = paths["venv_python"]
    if not python.is_file():
        raise UsageError(
            f"{python} does not exist, so {install_dir} holds no venv to benchmark.",
            f"Install first (`comfy-install install {install_dir}`), or give the install "
            "directory as DIR.",
        )
    workflow = load_workflow(options.workflow) if options.workflow is not None else None
    if options.comfyui and not (paths["comfyui"] / "main.py").is_file():
        raise UsageError(
            f"{paths['comfyui'] / 'main.py'} does not exist, so ComfyUI cannot be timed.",
            "Leave out --comfyui/--workflow, or install ComfyUI into DIR first.",
        )
    baseline = None
    if options.baseline is not None:
        baseline = (options.baseline, load_run(options.baseline))
    log.info(f"Benchmarking attention with {python}")
    raw = run_attention_module(python, module_config(options), log, module_timeout(options))
    if not raw.get("measured"):
        return BenchmarkOutcome(run=None, reason=str(raw.get("reason") or "nothing was measured"))
    if gpu is None and (raw.get("device") or {}).get("kind") == "cuda":
        from installer.edges.gpu import detect_gpus

        gpu = detect_gpus()
    run = build_run(raw, install_dir, gpu)
    if options.comfyui:
        cpu = ["--cpu"] if run.device.kind == "cpu" else []
        variants = [("sdpa", [*cpu, SDPA_FLAG])]
        if run.backend("sageattention").available and not cpu:
            variants.append(("sageattention", [*cpu, SAGE_FLAG]))
        timings = time_comfyui(install_dir, variants, workflow, log)
        run = run.model_copy(
            update={
                "comfyui": timings,
                "workflow": str(options.workflow) if options.workflow else None,
            }
        )
    comparison, note = None, None
    if options.compare:
        previous = baseline or latest_run(install_dir, before=run.created_at)
        if previous is None:
            note = "no earlier saved run to compare with; this run is the first"
        else:
            comparison = compare_runs(run, previous[1], options.threshold, previous[0])
    saved = save_run(install_dir, run) if options.save else None
    return BenchmarkOutcome(run=run, saved_to=saved, comparison=comparison, compare_note=note)


def regression_error(outcome: BenchmarkOutcome) -> RegressionError:
    """Return the error `--fail-on-regression` ends with, naming the regressed cells.

    Args:
        outcome: A benchmark outcome whose comparison found regressions.
    """
    regressions = outcome.regressions
    named = ", ".join(f"{c.backend}/{c.shape}/{c.dtype}" for c in regressions[:6])
    more = f" and {len(regressions) - 6} more" if len(regressions) > 6 else ""
    return RegressionError(
        f"{len(regressions)} regression(s) since the previous run: {named}{more}."
    )
