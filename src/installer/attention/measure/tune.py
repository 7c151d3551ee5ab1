"""`comfy-install tune`: measure attention on this GPU and store the calibration `launch` routes by.

[`run_tune`][installer.attention.measure.tune.run_tune] runs the same measuring code as
`benchmark` ([`run_attention_module`][installer.attention.measure.runner.run_attention_module],
judged by [`build_run`][installer.attention.measure.results.build_run] with the same
tolerances) over its own sweep ([`sweep_shapes`][installer.attention.measure.tune.sweep_shapes]):
sequence lengths from 1K to 75.6K tokens, head dims 64 and 128 (the SDXL/SD3
and Flux/video families) and 40 (SD1.5, up to 16K), in fp16 and bf16, cheapest
first, within a time budget (60 s by default). Every installed backend that
works is compared with SDPA on the same inputs; one that fails or is wrong is
recorded as such and never routed to. Each backend is called through the
install's own ComfyUI function the launch router will call for it (ComfyUI's
layout, ComfyUI's SDPA path as the reference), or, when DIR/ComfyUI does not
import, through its raw kernel (the calibration's ``method`` says which). The result becomes a
[`Calibration`][installer.attention.rules.records.Calibration] (route tables by
[`build_tables`][installer.attention.rules.tables.build_tables]) written atomically to
`DIR/.comfy-install/calibration.json`. Without a GPU nothing is measured and
nothing is written: exit code 3.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from installer import __version__
from installer.attention.files import write_calibration
from installer.attention.measure.attention_module import Shape
from installer.attention.measure.results import BenchmarkRun, Measurement, build_run
from installer.attention.measure.runner import run_attention_module
from installer.attention.rules.records import (
    WATCHED_DISTRIBUTIONS,
    BackendRecord,
    BackendStatus,
    Calibration,
    CalibrationPoint,
    MeasuredOn,
)
from installer.attention.rules.tables import MARGIN, build_tables
from installer.attention.shim.router import LOADED, TARGETS
from installer.core.errors import EnvironmentUnsupportedError, InstallerError, UsageError

if TYPE_CHECKING:
    from installer.core.facts import GpuReport
    from installer.core.log import InstallerLogger

DEFAULT_BUDGET_S = 60.0
TOKENS = (1024, 2048, 4096, 8192, 12288, 16384, 32768, 75600)
"""The sweep's sequence lengths: SD1.5/SDXL/Flux images up to 4.6K, video from 12K up.

12288 sits below Wan 2.1's 832×480×33 (14040 tokens), where SageAttention 2 and
cuDNN's SDPA are close: a band is only routed between two measured lengths that
the backend won at both."""
HEADS = ((64, 2, 10, None), (128, 1, 24, None), (40, 2, 8, 16384))
"""``(head_dim, batch, heads, longest length)`` of the sweep: SDXL's, Flux's and SD1.5's."""
WARMUP = 2
ITERATIONS = 10
CELL_BUDGET_S = 0.25
"""Seconds of timed calls per backend and shape, at most (at least 3 calls)."""


@dataclass(frozen=True)
class TuneOptions:
    """What `comfy-install tune` was asked to do."""

    install_dir: Path
    budget_s: float = DEFAULT_BUDGET_S
    margin: float = MARGIN


@dataclass(frozen=True)
class TuneOutcome:
    """The result of `comfy-install tune`: the calibration and where it was written."""

    calibration: Calibration
    path: Path
    took_s: float

    def as_data(self) -> dict[str, Any]:
        """Return the `data` of `tune --json`."""
        return {
            "path": str(self.path),
            "took_s": round(self.took_s, 2),
            "calibration": self.calibration.model_dump(mode="json"),
        }


def sweep_shapes() -> list[Shape]:
    """Return the shapes `tune` measures, cheapest first (a spent budget cuts the dearest).

    Returns:
        One shape per head dim and sequence length, ids like ``n4096-d64``.
    """
    shapes = [
        Shape(
            f"n{tokens}-d{dim}",
            "tune",
            f"{batch}×{heads} heads of {dim}",
            batch,
            tokens,
            heads,
            dim,
        )
        for dim, batch, heads, longest in HEADS
        for tokens in TOKENS
        if longest is None or tokens <= longest
    ]
    return sorted(shapes, key=lambda s: (s.batch * s.heads * s.seq**2 * s.head_dim, s.id))


def module_config(options: TuneOptions) -> dict[str, Any]:
    """Return the settings the venv module runs the sweep with.

    Each backend is measured through the ComfyUI function the launch router
    calls for it (the router's own mapping, so the two cannot drift), when
    DIR/ComfyUI imports in the venv; through its raw kernel otherwise.

    Args:
        options: The tune options (the install, the budget).
    """
    return {
        "comfyui": {
            "path": str(_current(options.install_dir.absolute()) / "ComfyUI"),
            "functions": dict(TARGETS),
            "loaded": dict(LOADED),
        },
        "shapes": [asdict(shape) for shape in sweep_shapes()],
        "backends": [],
        "dtypes": ["fp16", "bf16"],
        "warmup": WARMUP,
        "iterations": ITERATIONS,
        "budget_s": CELL_BUDGET_S,
        "total_budget_s": options.budget_s,
        "seed": 0,
        "allow_cpu": False,
    }


def _points(run: BenchmarkRun) -> list[CalibrationPoint]:
    points = []
    for m in run.measurements:
        shape = run.shape(m.shape)
        if shape is None:
            continue
        points.append(
            CalibrationPoint(
                backend=m.backend,
                tokens=shape.seq,
                head_dim=shape.head_dim,
                dtype=m.dtype,
                batch=shape.batch,
                heads=shape.heads,
                status=m.status,
                median_ms=m.stats.median_ms if m.stats else None,
                speedup=round(m.speedup, 4) if m.speedup is not None else None,
                max_abs_error=m.max_abs_error,
                error=m.error,
            )
        )
    return points


def _backend_records(run: BenchmarkRun) -> list[BackendRecord]:
    records = []
    for info in run.backends:
        cells: Sequence[Measurement] = [m for m in run.measurements if m.backend == info.name]
        status: BackendStatus = "working"
        reason = info.reason
        if not info.available:
            status = "broken" if info.version is not None else "absent"
        elif not any(m.status == "ok" for m in cells):
            failed = next((m for m in cells if m.error), None)
            status = "broken"
            reason = f"{failed.status}: {failed.error}" if failed else "no call succeeded"
        records.append(
            BackendRecord(name=info.name, status=status, version=info.version, reason=reason)
        )
    return records


def calibration_from_run(
    run: BenchmarkRun,
    raw: dict[str, Any],
    options: TuneOptions,
    took_s: float,
    driver: str | None = None,
    measured_at: str | None = None,
) -> Calibration:
    """Make the calibration of a judged sweep.

    Args:
        run: The sweep, judged like a benchmark run (statuses, speedups over SDPA).
        raw: The venv module's document (its ``skipped`` shapes).
        options: The tune options (budget, margin).
        took_s: Seconds the whole measurement took.
        driver: The driver NVML reports, where the run's device could not be matched to it.
        measured_at: When (default: now).

    Returns:
        The calibration, route tables included.
    """
    points = _points(run)
    skipped = [
        f"{item.get('shape')} {item.get('dtype')}: {item.get('reason')}"
        for item in raw.get("skipped") or []
    ]
    measured_on = MeasuredOn(
        gpu_name=run.device.name,
        gpu_cc=run.device.cc,
        driver=run.device.driver_version or driver,
        torch=run.torch.version,
        torch_cuda=run.torch.cuda,
        versions={name: run.packages.get(name) for name in WATCHED_DISTRIBUTIONS},
        measured_at=measured_at or dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        budget_s=options.budget_s,
        took_s=round(took_s, 2),
    )
    return Calibration(
        tool_version=__version__,
        method="comfyui" if raw.get("method") == "comfyui" else "kernels",
        method_reason=raw.get("method_reason"),
        measured_on=measured_on,
        margin=options.margin,
        backends=_backend_records(run),
        tables=build_tables(points, options.margin),
        points=points,
        skipped=skipped,
    )


def run_tune(
    options: TuneOptions,
    log: InstallerLogger,
    gpu: GpuReport | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> TuneOutcome:
    """Measure attention on this GPU and write the install's calibration.

    Args:
        options: The install and the time budget.
        log: Progress and warnings.
        gpu: The detected GPUs (NVML); detected here when None.
        on_progress: Called with each progress line of the measurement (a bar).

    Returns:
        The calibration and where it was written.

    Raises:
        UsageError: DIR has no venv, or the budget is not positive.
        EnvironmentUnsupportedError: No NVIDIA GPU, or the venv's torch sees
            none (nothing is written).
        StepFailedError: The module in the venv crashed or timed out.
    """
    from installer.edges.environment import current_platform
    from installer.edges.probe import layout

    if options.budget_s <= 0:
        raise UsageError("--budget must be more than 0 seconds.", "For example --budget 60.")
    python = layout(_current(options.install_dir), current_platform())["venv_python"]
    if not python.is_file():
        raise UsageError(
            f"{python} does not exist, so {options.install_dir} holds no venv to tune.",
            f"Install first (`comfy-install install {options.install_dir}`), or give the "
            "install directory as DIR.",
        )
    if gpu is None:
        from installer.edges.gpu import detect_gpus

        gpu = detect_gpus()
    hint = "Run `comfy-install tune` on the machine with the NVIDIA GPU ComfyUI will use."
    if not gpu.has_nvidia:
        raise EnvironmentUnsupportedError(
            f"No NVIDIA GPU to tune for ({gpu.reason}); nothing was measured or written.", hint
        )
    log.info(f"Measuring attention with {python} (budget {options.budget_s:g} s)")
    start = time.monotonic()
    raw = run_attention_module(
        python, module_config(options), log, options.budget_s + 300.0, on_progress
    )
    took = time.monotonic() - start
    if not raw.get("measured") or (raw.get("device") or {}).get("kind") != "cuda":
        reason = raw.get("reason") or "the venv's torch measured on no GPU"
        raise EnvironmentUnsupportedError(
            f"Nothing to tune: {reason}; nothing was written.",
            "Install a CUDA build of torch (`comfy-install install DIR`), then tune again.",
        )
    run = build_run(raw, options.install_dir, gpu)
    calibration = calibration_from_run(run, raw, options, took, gpu.driver_version)
    path = write_calibration(options.install_dir, calibration)
    return TuneOutcome(calibration=calibration, path=path, took_s=took)


def tune_after_install(
    install_dir: Path, gpu_option: str, only: Sequence[str], log: InstallerLogger
) -> dict[str, Any]:
    """Run `tune` at the end of an install on this machine's GPU; never fail the install.

    Args:
        install_dir: DIR, just installed.
        gpu_option: The install's `--gpu` (only `auto` measures: the others plan for
            another GPU, or none).
        only: The install's `--only` steps (a partial install is not measured).
        log: Where to say what happened.

    Returns:
        The `tune` entry of `install --json`: ``status`` (``done``, ``skipped`` or
        ``failed``), and the calibration's path or the reason.
    """
    from installer.plan.records import install_tune_skip

    skip = install_tune_skip(gpu_option, only)
    if skip is not None:
        return {"status": "skipped", "reason": skip}
    from installer.attention.rules.tables import describe_table
    from installer.edges.gpu import detect_gpus

    gpu = detect_gpus()
    if not gpu.has_nvidia:
        return {"status": "skipped", "reason": f"no NVIDIA GPU ({gpu.reason})"}
    from installer.attention.files import check_calibration

    # A re-run of a finished install stays nearly free: a calibration that still describes
    # this GPU, driver, torch and back ends is kept (`comfy-install tune DIR` measures again).
    current = check_calibration(install_dir, gpu)
    if current.status == "fresh":
        return {"status": "skipped", "reason": f"the calibration is current: {current.detail}"}
    log.info("Measuring attention on this GPU (comfy-install tune; --no-tune skips)")
    try:
        outcome = run_tune(TuneOptions(install_dir=install_dir), log, gpu)
    except InstallerError as error:
        log.warn(
            f"attention was not measured: {error.message} Launch uses ComfyUI's default "
            f"attention until `comfy-install tune {install_dir}` succeeds."
        )
        return {"status": "failed", "reason": error.message}
    for table in outcome.calibration.tables:
        log.info(f"attention D={table.head_dim} {table.dtype}: "
                 f"{describe_table(table, outcome.calibration)}")  # fmt: skip
    return {"status": "done", "path": str(outcome.path), "took_s": round(outcome.took_s, 2)}


def _current(install_dir: Path) -> Path:
    """The current generation's root: its venv and ComfyUI are the ones `launch` starts."""
    from installer.edges.environment import current_platform
    from installer.edges.generations import current_root

    return current_root(install_dir, current_platform())
