"""`comfy-install benchmark`: what the attention optimizations buy on this GPU.

The measuring happens in the install's own venv:
[`run_benchmark`][installer.benchmark.run_benchmark] runs the shipped
[`bench_attention`][installer.bench_attention] module with the venv's Python
(as a script file, since the venv does not have this package) and reads back
its raw timings. Everything else happens here, in the installer's process:
the statistics of each cell (median, min, max, IQR),
the speedup over torch SDPA, the verdict on correctness (a max error above the
backend's tolerance is `wrong`, however fast), the optional timing of a real
ComfyUI start-up and of a user's workflow through ComfyUI's HTTP API, saving
the run to `DIR/.comfy-install/benchmarks/<timestamp>.json`, comparing it with
the previous run (a cell more than 10% slower, or one that stopped working, is
a regression), the rich report, and the one-line headline the doctor shows.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import importlib.resources
import json
import math
import os
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from installer import __version__
from installer.bench_attention import BACKENDS, CPU_SHAPES, DTYPES, GPU_SHAPES
from installer.core.errors import InstallerError, RegressionError, StepFailedError, UsageError
from installer.edges.state import atomic_write_text, state_dir

if TYPE_CHECKING:
    from rich.console import Console

    from installer.core.facts import GpuReport
    from installer.core.log import InstallerLogger

REGRESSION_THRESHOLD = 0.10
"""A cell whose median time grew by more than this fraction is a regression."""

BACKEND_LABELS = {
    "sdpa": "torch SDPA",
    "xformers": "xformers",
    "sageattention": "SageAttention",
    "sageattn3": "SageAttention 3",
}

SHORT_NAMES = {
    "sdpa": "SDPA",
    "xformers": "xformers",
    "sageattention": "Sage",
    "sageattn3": "Sage3",
}
"""Backend names in the report's table (the header line gives full names and versions)."""

TOLERANCES: dict[tuple[str, str], float] = {
    ("sdpa", "fp16"): 1e-3,
    ("sdpa", "bf16"): 1e-3,
    ("xformers", "fp16"): 1e-2,
    ("xformers", "bf16"): 1e-2,
    ("sageattention", "fp16"): 0.05,
    ("sageattention", "bf16"): 0.1,
    ("sageattn3", "fp16"): 0.05,
    ("sageattn3", "bf16"): 0.1,
}
"""Largest max-abs difference from SDPA (same inputs) that is still a right answer.

SDPA is compared with itself (a rerun must agree); xformers computes the same
exact attention; the SageAttention kernels quantize Q and K (int8, or FP4 for
SageAttention 3), so they are allowed more.
"""
DEFAULT_TOLERANCE = 0.1
RELATIVE_TOLERANCE = 0.25
"""An error above this fraction of the reference output's largest value is `wrong` too.

The absolute tolerances alone would pass a kernel that returns zeros where the
right answer is small (long sequences average many values); SageAttention's
error is about 3% of that scale on random inputs, a broken kernel's about 100%.
"""

DEFAULT_WARMUP = 5
DEFAULT_ITERATIONS = 20
DEFAULT_BUDGET_S = 2.0
STARTUP_TIMEOUT_S = 600.0
WORKFLOW_TIMEOUT_S = 3600.0
SAGE_FLAG = "--use-sage-attention"
SDPA_FLAG = "--use-pytorch-cross-attention"
SEED_INPUTS = ("seed", "noise_seed")
"""Workflow inputs changed for the warm run, so ComfyUI does not serve it from its cache."""

Status = Literal["ok", "wrong", "error", "oom"]
Verdict = Literal["slower", "faster", "unchanged", "broken", "fixed", "new", "removed"]
REGRESSION_VERDICTS: tuple[Verdict, ...] = ("slower", "broken")


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class TimingStats(_Model):
    """Summary of the timed calls of one cell, in milliseconds."""

    samples: int
    median_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    q1_ms: float
    q3_ms: float

    @property
    def iqr_ms(self) -> float:
        """The interquartile range: how spread the middle half of the calls is."""
        return self.q3_ms - self.q1_ms


class Measurement(_Model):
    """One backend at one shape and dtype."""

    backend: str
    shape: str
    dtype: str
    status: Status
    stats: TimingStats | None = None
    times_ms: list[float] = Field(default_factory=list)
    warmup: int = 0
    speedup: float | None = None
    """SDPA's median time divided by this one (2.0: twice as fast as SDPA)."""
    max_abs_error: float | None = None
    reference_max_abs: float | None = None
    """The largest absolute value of SDPA's output: the scale ``max_abs_error`` is read on."""
    nonfinite: bool = False
    tolerance: float | None = None
    peak_memory_bytes: int | None = None
    baseline_memory_bytes: int | None = None
    error: str | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        """``(backend, shape, dtype)``: what a comparison matches runs on."""
        return (self.backend, self.shape, self.dtype)

    @property
    def extra_memory_bytes(self) -> int | None:
        """GPU memory one call needed beyond its inputs (output and workspace)."""
        if self.peak_memory_bytes is None or self.baseline_memory_bytes is None:
            return None
        return self.peak_memory_bytes - self.baseline_memory_bytes


class ShapeInfo(_Model):
    """An attention shape: which model, ``batch × heads × seq × head_dim``."""

    id: str
    model: str
    label: str
    batch: int
    seq: int
    heads: int
    head_dim: int

    @property
    def dims(self) -> str:
        """The shape as ``B×H×N×D``."""
        return f"{self.batch}×{self.heads}×{self.seq}×{self.head_dim}"


class BackendInfo(_Model):
    """An attention backend in the venv: importable or why not, and its version."""

    name: str
    available: bool
    version: str | None = None
    reason: str | None = None

    @property
    def label(self) -> str:
        """Human name with version, e.g. ``SageAttention 1.0.6``."""
        base = BACKEND_LABELS.get(self.name, self.name)
        return f"{base} {self.version}" if self.version and self.name != "sdpa" else base


class DeviceInfo(_Model):
    """The device measured on."""

    kind: Literal["cuda", "cpu"]
    name: str
    cc: str | None = None
    index: int | None = None
    total_memory_bytes: int | None = None
    multiprocessors: int | None = None
    driver_version: str | None = None
    cuda_driver_version: str | None = None


class TorchInfo(_Model):
    """The venv's torch."""

    version: str
    cuda: str | None = None
    cudnn: int | None = None
    cuda_available: bool = False


class Settings(_Model):
    """How the cells were timed."""

    warmup: int
    iterations: int
    budget_s: float
    seed: int = 0
    timer: str = "cuda-events"
    dtypes: list[str] = Field(default_factory=list)


class ComfyTiming(_Model):
    """A real ComfyUI start-up (and workflow) with one set of attention flags."""

    variant: str
    flags: list[str] = Field(default_factory=list)
    startup_s: float | None = None
    workflow_s: float | None = None
    """The first run of the workflow after start-up (loads the models)."""
    workflow_warm_s: float | None = None
    """A second run with the seeds changed (models already loaded)."""
    error: str | None = None


class BenchmarkRun(_Model):
    """One benchmark run, as saved in `DIR/.comfy-install/benchmarks/`."""

    schema_version: int = 1
    created_at: str
    tool_version: str = __version__
    install_dir: str
    python: str | None = None
    platform: str | None = None
    device: DeviceInfo
    torch: TorchInfo
    packages: dict[str, str | None] = Field(default_factory=dict)
    backends: list[BackendInfo] = Field(default_factory=list)
    settings: Settings
    shapes: list[ShapeInfo] = Field(default_factory=list)
    measurements: list[Measurement] = Field(default_factory=list)
    comfyui: list[ComfyTiming] = Field(default_factory=list)
    workflow: str | None = None

    def backend(self, name: str) -> BackendInfo:
        """Return the info of backend ``name`` (an unavailable stand-in if unknown).

        Args:
            name: A backend name, e.g. ``sageattention``.
        """
        for info in self.backends:
            if info.name == name:
                return info
        return BackendInfo(name=name, available=False)

    def shape(self, shape_id: str) -> ShapeInfo | None:
        """Return the shape with id ``shape_id``, if it was measured.

        Args:
            shape_id: A shape id, e.g. ``sdxl-1024``.
        """
        return next((shape for shape in self.shapes if shape.id == shape_id), None)


class Change(_Model):
    """How one backend × shape × dtype changed between two runs."""

    backend: str
    shape: str
    dtype: str
    verdict: Verdict
    previous_ms: float | None = None
    current_ms: float | None = None
    previous_status: str | None = None
    current_status: str | None = None

    @property
    def ratio(self) -> float | None:
        """Current median over previous median (1.25: 25% slower)."""
        if self.previous_ms and self.current_ms is not None:
            return self.current_ms / self.previous_ms
        return None

    @property
    def is_regression(self) -> bool:
        """True for a cell that got slower or stopped working."""
        return self.verdict in REGRESSION_VERDICTS


class Comparison(_Model):
    """The changes from a previous run to this one."""

    previous_created_at: str
    previous_path: str | None = None
    threshold: float = REGRESSION_THRESHOLD
    changes: list[Change] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    @property
    def regressions(self) -> list[Change]:
        """The changes that count as regressions."""
        return [change for change in self.changes if change.is_regression]

    def counts(self) -> dict[str, int]:
        """How many cells got each verdict."""
        found: dict[str, int] = {}
        for change in self.changes:
            found[change.verdict] = found.get(change.verdict, 0) + 1
        return found


def timing_stats(samples: Sequence[float]) -> TimingStats:
    """Summarise timings: median, mean, min, max and the quartiles.

    Args:
        samples: Milliseconds of each timed call (at least one).

    Returns:
        The summary; with one sample, every statistic is that sample.

    Raises:
        ValueError: ``samples`` is empty.
    """
    if not samples:
        raise ValueError("no timings to summarise")
    values = sorted(float(value) for value in samples)
    if len(values) == 1:
        q1 = q3 = values[0]
    else:
        q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return TimingStats(
        samples=len(values),
        median_ms=statistics.median(values),
        mean_ms=statistics.fmean(values),
        min_ms=values[0],
        max_ms=values[-1],
        q1_ms=q1,
        q3_ms=q3,
    )


def tolerance_for(backend: str, dtype: str) -> float:
    """Return the largest max-abs error from SDPA that ``backend`` may show at ``dtype``.

    Args:
        backend: A backend name, e.g. ``xformers``.
        dtype: ``fp16`` or ``bf16``.
    """
    return TOLERANCES.get((backend, dtype), DEFAULT_TOLERANCE)


def measurement_from_row(row: dict[str, Any]) -> Measurement:
    """Turn one raw row of the venv module into a judged measurement (no speedup yet).

    A row that ran is `wrong` when its output held NaN/inf, or its max error
    exceeds [`tolerance_for`][installer.benchmark.tolerance_for] its backend
    and dtype, or a quarter (`RELATIVE_TOLERANCE`) of the reference's largest
    value.

    Args:
        row: One entry of the ``results`` of the module's document.
    """
    backend, dtype = str(row["backend"]), str(row["dtype"])
    times = [float(value) for value in row.get("times_ms") or []]
    status: Status = row.get("status", "error")
    error = row.get("error")
    tolerance = tolerance_for(backend, dtype)
    max_error = row.get("max_abs_error")
    scale = row.get("reference_max_abs")
    if status == "ok" and not times:
        status, error = "error", error or "no timings were recorded"
    if status == "ok" and row.get("nonfinite"):
        status, error = "wrong", "the output holds NaN or infinite values"
    elif status == "ok" and max_error is not None and max_error > tolerance:
        status = "wrong"
        error = f"max abs error {max_error:.3g} vs SDPA exceeds the tolerance {tolerance:g}"
    elif (
        status == "ok"
        and max_error is not None
        and scale
        and max_error > RELATIVE_TOLERANCE * scale
    ):
        status = "wrong"
        error = (
            f"max abs error {max_error:.3g} vs SDPA is over {RELATIVE_TOLERANCE:.0%} of the "
            f"output's scale ({scale:.3g})"
        )
    return Measurement(
        backend=backend,
        shape=str(row["shape"]),
        dtype=dtype,
        status=status,
        stats=timing_stats(times) if times else None,
        times_ms=times,
        warmup=int(row.get("warmup") or 0),
        max_abs_error=max_error,
        reference_max_abs=scale,
        nonfinite=bool(row.get("nonfinite")),
        tolerance=tolerance,
        peak_memory_bytes=row.get("peak_memory_bytes"),
        baseline_memory_bytes=row.get("baseline_memory_bytes"),
        error=error,
    )


def with_speedups(measurements: Sequence[Measurement]) -> list[Measurement]:
    """Return the measurements with ``speedup`` over SDPA at the same shape and dtype.

    Args:
        measurements: The judged measurements of one run (SDPA's `ok` ones are the baseline).
    """
    baseline = {
        (m.shape, m.dtype): m.stats.median_ms
        for m in measurements
        if m.backend == "sdpa" and m.status == "ok" and m.stats is not None
    }
    result = []
    for m in measurements:
        base = baseline.get((m.shape, m.dtype))
        speedup = None
        if base is not None and m.stats is not None and m.stats.median_ms > 0:
            speedup = base / m.stats.median_ms
        result.append(m.model_copy(update={"speedup": speedup}))
    return result


def build_run(
    raw: dict[str, Any],
    install_dir: Path,
    gpu: GpuReport | None = None,
    created_at: str | None = None,
) -> BenchmarkRun:
    """Build the run record from the venv module's document.

    Args:
        raw: The JSON document [`bench_attention`][installer.bench_attention]
            printed, with ``measured`` true.
        install_dir: The install measured.
        gpu: What NVML says about the GPUs (adds the driver version), if known.
        created_at: The run's time (default: now).

    Returns:
        The run with statistics, speedups and verdicts.

    Raises:
        StepFailedError: The document does not have the expected shape.
    """
    try:
        device = DeviceInfo.model_validate(raw["device"])
        if gpu is not None and device.kind == "cuda":
            match = next((card for card in gpu.gpus if card.name == device.name), None)
            if match is not None or len(gpu.gpus) == 1:
                device = device.model_copy(
                    update={
                        "driver_version": gpu.driver_version,
                        "cuda_driver_version": gpu.cuda_driver_version,
                    }
                )
        measurements = with_speedups([measurement_from_row(row) for row in raw["results"]])
        return BenchmarkRun(
            created_at=created_at or _now(),
            install_dir=str(install_dir),
            python=raw.get("python"),
            platform=raw.get("platform"),
            device=device,
            torch=TorchInfo.model_validate(raw["torch"]),
            packages=raw.get("packages") or {},
            backends=[BackendInfo.model_validate(item) for item in raw.get("backends") or []],
            settings=Settings.model_validate(raw["settings"]),
            shapes=[ShapeInfo.model_validate(item) for item in raw.get("shapes") or []],
            measurements=measurements,
        )
    except (KeyError, TypeError, ValueError, ValidationError) as exc:
        raise StepFailedError(
            f"The benchmark in the venv returned a document this version cannot read ({exc}).",
            "Run with --verbose and report the output.",
        ) from exc


def _now() -> str:
    # Microseconds: the run's file name comes from it, and two runs may start in one second.
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")


# Storage ---------------------------------------------------------------------------------


def benchmarks_dir(install_dir: Path) -> Path:
    """Return `DIR/.comfy-install/benchmarks`.

    Args:
        install_dir: The install directory (`DIR`).
    """
    return state_dir(install_dir) / "benchmarks"


def run_file_name(created_at: str) -> str:
    """Return the file name of a run made at ``created_at`` (sorts by time, no colons).

    Args:
        created_at: The run's time in ISO 8601 format, as in `BenchmarkRun.created_at`.
    """
    stamp = dt.datetime.fromisoformat(created_at).astimezone(dt.timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H-%M-%S.%fZ") + ".json"


def save_run(install_dir: Path, run: BenchmarkRun) -> Path:
    """Save ``run`` atomically under `DIR/.comfy-install/benchmarks/` and return its path.

    Args:
        install_dir: The install directory (`DIR`).
        run: The run to save (its ``created_at`` names the file).

    Raises:
        EnvironmentUnsupportedError: The folder is not writable or the disk is full.
    """
    path = benchmarks_dir(install_dir) / run_file_name(run.created_at)
    atomic_write_text(path, run.model_dump_json(indent=2) + "\n")
    return path


def load_run(path: Path) -> BenchmarkRun:
    """Read a saved run.

    Args:
        path: The run's JSON file.

    Raises:
        UsageError: The file is missing, not JSON or not a benchmark run.
    """
    try:
        return BenchmarkRun.model_validate_json(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(
            f"{path} cannot be read ({exc.strerror or exc}).", "Give an existing run file."
        ) from exc
    except ValidationError as exc:
        raise UsageError(
            f"{path} is not a benchmark run saved by comfy-install "
            f"({exc.error_count()} problem(s)).",
            "Give a file from DIR/.comfy-install/benchmarks/.",
        ) from exc


def saved_runs(install_dir: Path) -> list[Path]:
    """Return the saved run files of an install, oldest first.

    Args:
        install_dir: The install directory (`DIR`).
    """
    folder = benchmarks_dir(install_dir)
    try:
        return sorted(path for path in folder.glob("*.json") if path.is_file())
    except OSError:
        return []


def latest_run(install_dir: Path, before: str | None = None) -> tuple[Path, BenchmarkRun] | None:
    """Return the newest readable saved run (made before ``before``, when given).

    Args:
        install_dir: The install directory (`DIR`).
        before: A run's ``created_at``: only runs saved earlier count (None: any run).
    """
    for path in reversed(saved_runs(install_dir)):
        if before is not None and path.name >= run_file_name(before):
            continue
        try:
            return path, load_run(path)
        except UsageError:
            continue
    return None


# Comparison ------------------------------------------------------------------------------


def compare_runs(
    current: BenchmarkRun,
    previous: BenchmarkRun,
    threshold: float = REGRESSION_THRESHOLD,
    previous_path: Path | None = None,
) -> Comparison:
    """Compare two runs cell by cell (backend × shape × dtype).

    Args:
        current: This run.
        previous: The run to compare with.
        threshold: Fraction of slowdown of the median that counts as a
            regression (0.10: more than 10% slower).
        previous_path: Where ``previous`` was read from (for the report).

    Returns:
        One change per cell that is in either run: `slower` (a regression),
        `faster`, `unchanged`, `broken` (worked before, not now: a
        regression), `fixed`, `new` or `removed`, with notes when the runs
        are not comparable (another GPU, another torch).
    """
    before = {m.key: m for m in previous.measurements}
    after = {m.key: m for m in current.measurements}
    changes: list[Change] = []
    for key in [*after, *(key for key in before if key not in after)]:
        old, new = before.get(key), after.get(key)
        change = Change(
            backend=key[0],
            shape=key[1],
            dtype=key[2],
            verdict=_verdict(old, new, threshold),
            previous_ms=old.stats.median_ms if old and old.stats else None,
            current_ms=new.stats.median_ms if new and new.stats else None,
            previous_status=old.status if old else None,
            current_status=new.status if new else None,
        )
        changes.append(change)
    return Comparison(
        previous_created_at=previous.created_at,
        previous_path=str(previous_path) if previous_path else None,
        threshold=threshold,
        changes=changes,
        notes=_comparability_notes(current, previous),
    )


def _verdict(old: Measurement | None, new: Measurement | None, threshold: float) -> Verdict:
    if old is None:
        return "new"
    if new is None:
        return "removed"
    was_ok, is_ok = old.status == "ok", new.status == "ok"
    if was_ok and not is_ok:
        return "broken"
    if is_ok and not was_ok:
        return "fixed"
    if not (is_ok and old.stats and new.stats and old.stats.median_ms > 0):
        return "unchanged"
    ratio = new.stats.median_ms / old.stats.median_ms
    if ratio > 1 + threshold:
        return "slower"
    if ratio < 1 - threshold:
        return "faster"
    return "unchanged"


def _comparability_notes(current: BenchmarkRun, previous: BenchmarkRun) -> list[str]:
    notes = []
    if (current.device.kind, current.device.name) != (previous.device.kind, previous.device.name):
        notes.append(
            f"the previous run was on {previous.device.name} ({previous.device.kind}), this one "
            f"on {current.device.name} ({current.device.kind}): the times are not comparable"
        )
    if current.torch.version != previous.torch.version:
        notes.append(f"torch changed: {previous.torch.version} → {current.torch.version}")
    for name in sorted(set(current.packages) | set(previous.packages)):
        old, new = previous.packages.get(name), current.packages.get(name)
        if name != "torch" and old != new:
            notes.append(f"{name} changed: {old or 'absent'} → {new or 'absent'}")
    if current.device.driver_version != previous.device.driver_version:
        old_driver = previous.device.driver_version or "unknown"
        notes.append(f"driver changed: {old_driver} → {current.device.driver_version or 'unknown'}")
    return notes


# Headline --------------------------------------------------------------------------------


def headline(run: BenchmarkRun) -> str | None:
    """Return one line that says what the optimizations buy, for the doctor.

    The best backend other than SDPA, by geometric-mean speedup at the SDXL
    shapes (fp16 preferred; all shapes when SDXL was not measured), e.g.
    ``SageAttention 1.0.6: 2.1x SDPA at SDXL shapes (fp16, NVIDIA H100 80GB
    HBM3, 2026-11-23)``; SDPA's own time when nothing else ran; a warning
    is appended when a backend gave wrong results. None for an empty run.

    Args:
        run: The run to sum up.
    """
    ok = [m for m in run.measurements if m.status == "ok"]
    if not run.measurements:
        return None
    date = run.created_at[:10]
    if run.device.kind != "cuda":
        return f"CPU test run only ({date}): nothing measured on a GPU"
    sdxl = [m for m in ok if m.shape.startswith("sdxl")]
    pool, where = (sdxl, "SDXL shapes") if sdxl else (ok, "all shapes")
    dtypes = sorted({m.dtype for m in pool}, key=lambda d: (d != "fp16", d))
    dtype = dtypes[0] if dtypes else "fp16"
    pool = [m for m in pool if m.dtype == dtype]
    context = f"({dtype}, {run.device.name}, {date})"
    best: tuple[float, str] | None = None
    for name in {m.backend for m in pool if m.backend != "sdpa"}:
        speedups = [m.speedup for m in pool if m.backend == name and m.speedup]
        if speedups:
            mean = math.exp(statistics.fmean(math.log(value) for value in speedups))
            if best is None or mean > best[0]:
                best = (mean, name)
    if best is not None:
        factor = f"{best[0]:.1f}x" if best[0] >= 1 else f"{best[0]:.2f}x"
        slower = ", slower than SDPA" if best[0] < 1 else ""
        text = f"{run.backend(best[1]).label}: {factor} SDPA at {where}{slower} {context}"
    else:
        sdpa = [m.stats.median_ms for m in pool if m.backend == "sdpa" and m.stats]
        if not sdpa:
            text = f"no attention backend worked {context}"
        else:
            text = (
                f"torch SDPA only: {statistics.median(sdpa):.3g} ms per call at {where} {context}"
            )
    wrong = sorted({m.backend for m in run.measurements if m.status == "wrong"})
    if wrong:
        labels = ", ".join(run.backend(name).label for name in wrong)
        text += f"; WRONG results from {labels}"
    return text


def latest_headline(install_dir: Path) -> str | None:
    """Return the headline of the newest saved benchmark of ``install_dir``, if any.

    Args:
        install_dir: The install directory (`DIR`).

    Returns:
        For example ``SageAttention 1.0.6: 2.1x SDPA at SDXL shapes (fp16,
        NVIDIA H100 80GB HBM3, 2026-11-23)``; None when no readable run was
        saved. Never raises.
    """
    found = latest_run(install_dir)
    return headline(found[1]) if found is not None else None


# Running the module in the venv ----------------------------------------------------------


def attention_module_source() -> str:
    """Return the source of the shipped `bench_attention` module."""
    return importlib.resources.files("installer").joinpath("bench_attention.py").read_text("utf-8")


def run_attention_module(
    python: Path, config: dict[str, Any], log: InstallerLogger, timeout: float
) -> dict[str, Any]:
    """Run the attention benchmark with the venv's Python and return its document.

    Args:
        python: The venv's interpreter.
        config: Settings for [`bench_attention.run`][installer.bench_attention.run].
        log: Progress lines become status lines; the rest goes to the log.
        timeout: Seconds before the run is stopped.

    Returns:
        The module's JSON document.

    Raises:
        StepFailedError: The module crashed, timed out or wrote no document.
    """
    with tempfile.TemporaryDirectory(prefix="comfy-install-bench-") as tmp:
        folder = Path(tmp)
        script = folder / "bench_attention.py"
        script.write_text(attention_module_source(), encoding="utf-8")
        config_path = folder / "config.json"
        config_path.write_text(json.dumps(config), encoding="utf-8")
        output = folder / "result.json"
        args = [str(python), str(script), "--config", str(config_path), "--output", str(output)]
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1")
        returncode, tail, timed_out = _stream(args, env, log, timeout, cwd=folder)
        if timed_out:
            raise StepFailedError(
                f"The attention benchmark did not finish within {timeout:.0f} s.",
                "Use fewer --iterations, a smaller --budget or fewer --shapes.",
            )
        if returncode != 0 or not output.is_file():
            shown = "\n  ".join(tail[-12:])
            raise StepFailedError(
                f"The attention benchmark failed in the venv (exit code {returncode})"
                + (f":\n  {shown}" if shown else "."),
                "Check that the venv's torch works: `DIR/venv/bin/python -c 'import torch'`.",
            )
        try:
            document: dict[str, Any] = json.loads(output.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise StepFailedError(
                f"The attention benchmark wrote unreadable JSON ({exc}).",
                "Run with --verbose and report the output.",
            ) from exc
    return document


def _stream(
    args: list[str], env: dict[str, str], log: InstallerLogger, timeout: float, cwd: Path
) -> tuple[int, list[str], bool]:
    """Run ``args``; turn ``progress:`` lines into status lines; return (code, tail, timed out)."""
    from installer.launch.process import stop_process

    log.debug("$ " + " ".join(args))
    try:
        process = subprocess.Popen(
            args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except OSError as exc:
        raise StepFailedError(
            f"The venv's Python ({args[0]}) could not be started: {exc.strerror or exc}.",
            "Repair the install: `comfy-install install DIR --force venv`.",
        ) from exc
    tail: list[str] = []
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        stop_process(process.pid, process=process)

    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.start()
    try:
        assert process.stdout is not None
        for raw in process.stdout:
            text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if text.startswith("progress: "):
                log.info("  " + text.removeprefix("progress: "))
            else:
                log.output(text)
                tail = [*tail[-39:], text]
        returncode = process.wait()
    except BaseException:
        stop_process(process.pid, process=process)
        raise
    finally:
        timer.cancel()
    return returncode, tail, expired.is_set()


# ComfyUI start-up and workflow -----------------------------------------------------------


def load_workflow(path: Path) -> dict[str, Any]:
    """Read an API-format workflow (``{node id: {"class_type", "inputs"}}``).

    Args:
        path: The workflow's JSON file (ComfyUI's 'Export (API)').

    Raises:
        UsageError: The file is missing, not JSON, or in the UI format.
    """
    hint = "In ComfyUI, save the workflow with 'Export (API)' and pass that file."
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{path} cannot be read ({exc.strerror or exc}).", hint) from exc
    except ValueError as exc:
        raise UsageError(f"{path} is not valid JSON ({exc}).", hint) from exc
    if isinstance(data, dict) and "nodes" in data and "links" in data:
        raise UsageError(f"{path} is a workflow in the UI format, not the API format.", hint)
    if not (
        isinstance(data, dict)
        and data
        and all(isinstance(node, dict) and "class_type" in node for node in data.values())
    ):
        raise UsageError(f"{path} is not an API-format ComfyUI workflow.", hint)
    return data


def bump_seeds(workflow: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of ``workflow`` with every integer seed input increased by one.

    Args:
        workflow: An API-format workflow (left unchanged).
    """
    changed = copy.deepcopy(workflow)
    for node in changed.values():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        if not isinstance(inputs, dict):
            continue
        for name in SEED_INPUTS:
            value = inputs.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                inputs[name] = value + 1
    return changed


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _http_json(url: str, payload: Any = None, timeout: float = 10.0) -> Any:
    """GET (or POST ``payload`` as) JSON to the local ComfyUI; return the decoded answer."""
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(  # noqa: S310 - only http://127.0.0.1 URLs built here
        url, data=data, headers={"Content-Type": "application/json"}
    )
    # No proxy handler: a proxy from the environment must not see the local ComfyUI.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


def run_workflow(url: str, workflow: dict[str, Any], timeout: float) -> float:
    """Queue ``workflow`` on the ComfyUI at ``url`` and wait until it has run.

    Args:
        url: ComfyUI's base URL, e.g. ``http://127.0.0.1:8188``.
        workflow: An API-format workflow.
        timeout: Seconds to wait at most.

    Returns:
        Seconds from `POST /prompt` until `GET /history/<id>` lists the prompt.

    Raises:
        StepFailedError: ComfyUI refused the workflow, a node failed, ComfyUI
            stopped answering, or ``timeout`` passed.
    """
    start = time.monotonic()
    try:
        queued = _http_json(f"{url}/prompt", {"prompt": workflow, "client_id": uuid.uuid4().hex})
        prompt_id = str(queued["prompt_id"])
        while time.monotonic() - start < timeout:
            history = _http_json(f"{url}/history/{prompt_id}")
            entry = history.get(prompt_id) if isinstance(history, dict) else None
            if entry:
                status = entry.get("status") or {}
                if status.get("status_str") == "error":
                    raise StepFailedError(
                        f"The workflow failed in ComfyUI: {_execution_error(status)}",
                        "Run it in ComfyUI's web page to see the failing node.",
                    )
                return time.monotonic() - start
            time.sleep(0.1)
    except urllib.error.HTTPError as exc:
        raise StepFailedError(
            f"ComfyUI refused the workflow: {_prompt_error(exc)}",
            "Open the workflow in ComfyUI and fix the nodes it names.",
        ) from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StepFailedError(
            f"ComfyUI stopped answering while running the workflow ({exc}).",
            "Read ComfyUI's log in DIR/.comfy-install/logs/.",
        ) from exc
    raise StepFailedError(f"The workflow did not finish within {timeout:.0f} s.")


def _prompt_error(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read() or b"{}")
    except ValueError:
        return f"HTTP {exc.code}"
    error = body.get("error") or {}
    message = error.get("message") if isinstance(error, dict) else str(error)
    nodes = ", ".join(sorted(body.get("node_errors") or {}))
    return f"{message or f'HTTP {exc.code}'}" + (f" (nodes {nodes})" if nodes else "")


def _execution_error(status: dict[str, Any]) -> str:
    for kind, detail in status.get("messages") or []:
        if kind == "execution_error" and isinstance(detail, dict):
            return f"{detail.get('node_type')}: {detail.get('exception_message', '').strip()}"
    return "see ComfyUI's log"


def time_comfyui(
    install_dir: Path,
    variants: Sequence[tuple[str, list[str]]],
    workflow: dict[str, Any] | None,
    log: InstallerLogger,
    startup_timeout: float = STARTUP_TIMEOUT_S,
    workflow_timeout: float = WORKFLOW_TIMEOUT_S,
) -> list[ComfyTiming]:
    """Launch ComfyUI once per variant of flags; time start-up and the workflow.

    ComfyUI is started the way `comfy-install launch --background` starts it
    (same tunings), on a free port, with its outputs in a temporary folder,
    and stopped after each variant.

    Args:
        install_dir: The install (`DIR/ComfyUI/main.py` must exist).
        variants: ``(name, ComfyUI arguments)`` pairs, e.g. ``("sageattention",
            ["--use-sage-attention"])``.
        workflow: An API-format workflow to run twice (the second time with
            changed seeds, so the models are loaded but nothing is cached), or
            None for start-up only.
        log: Status lines.
        startup_timeout: Seconds to wait for `/object_info`.
        workflow_timeout: Seconds to wait for each workflow run.

    Returns:
        One timing per variant; a variant that fails records its error and
        the next one still runs.

    Raises:
        InterruptedByUserError: Ctrl-C (ComfyUI is stopped first).
    """
    from installer.core.errors import InterruptedByUserError
    from installer.launch.process import stop_comfyui
    from installer.launch.run import launch
    from installer.plan.launch import LaunchRequest
    from installer.plan.launch_settings import WARMUP_ENV

    # The launcher must wait for /object_info, whatever the user's own setting.
    environ = {key: value for key, value in os.environ.items() if key != WARMUP_ENV}
    own_log = log.log_path
    timings = []
    with tempfile.TemporaryDirectory(prefix="comfy-install-bench-comfyui-") as tmp:
        for name, flags in variants:
            output = Path(tmp) / name
            request = LaunchRequest(
                install_dir=install_dir,
                port=free_port(),
                timeout=startup_timeout,
                background=True,
                extra_args=(*flags, "--output-directory", str(output)),
            )
            log.info(f"Timing ComfyUI ({name}: {' '.join(flags)})")
            startup = first = warm = None
            error = None
            started = False
            try:
                outcome = launch(request, log, environ=environ)
                started = True
                if own_log is not None:
                    log.attach_file(own_log)
                startup = outcome.seconds_to_ready
                if workflow is not None:
                    first = run_workflow(outcome.url, workflow, workflow_timeout)
                    log.info(f"  workflow: {first:.2f} s (first run)")
                    warm = run_workflow(outcome.url, bump_seeds(workflow), workflow_timeout)
                    log.info(f"  workflow: {warm:.2f} s (again, seeds changed)")
            except InterruptedByUserError:
                raise
            except InstallerError as exc:
                error = exc.message
                log.warn(f"ComfyUI ({name}): {exc.message}")
            finally:
                if started:
                    stop_comfyui(install_dir, log)
                if own_log is not None and log.log_path != own_log:
                    log.attach_file(own_log)
            timings.append(
                ComfyTiming(
                    variant=name,
                    flags=flags,
                    startup_s=startup,
                    workflow_s=first,
                    workflow_warm_s=warm,
                    error=error,
                )
            )
    return timings


# Orchestration ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchmarkOptions:
    """What `comfy-install benchmark` was asked to do."""

    install_dir: Path
    warmup: int = DEFAULT_WARMUP
    iterations: int = DEFAULT_ITERATIONS
    budget_s: float = DEFAULT_BUDGET_S
    shapes: tuple[str, ...] = ()
    backends: tuple[str, ...] = ()
    dtypes: tuple[str, ...] = ()
    comfyui: bool = False
    workflow: Path | None = None
    compare: bool = False
    baseline: Path | None = None
    save: bool = True
    allow_cpu: bool = False
    threshold: float = REGRESSION_THRESHOLD


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


def _split(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(part.strip() for value in values for part in value.split(",") if part.strip())


def validate_options(options: BenchmarkOptions) -> BenchmarkOptions:
    """Check the options, split comma lists; return them normalised.

    Args:
        options: The options as given on the command line.

    Raises:
        UsageError: A count is out of range or a name is unknown.
    """
    hint = "See `comfy-install benchmark --help`."
    if options.iterations < 1 or options.warmup < 0 or options.budget_s <= 0:
        raise UsageError("--iterations must be ≥ 1, --warmup ≥ 0 and --budget > 0.", hint)
    if not 0 < options.threshold < 10:
        raise UsageError("--threshold must be a fraction such as 0.10 (10%).", hint)
    shapes, backends, dtypes = (
        _split(options.shapes),
        _split(options.backends),
        _split(options.dtypes),
    )
    known_shapes = [shape.id for shape in (*GPU_SHAPES, *CPU_SHAPES)]
    for names, known, what in (
        (shapes, known_shapes, "shape"),
        (backends, list(BACKENDS), "backend"),
        (dtypes, list(DTYPES), "dtype"),
    ):
        unknown = [name for name in names if name not in known]
        if unknown:
            raise UsageError(
                f"Unknown {what} {', '.join(unknown)}.", f"Choose from: {', '.join(known)}."
            )
    return dataclasses.replace(
        options,
        shapes=shapes,
        backends=backends,
        dtypes=dtypes,
        comfyui=options.comfyui or options.workflow is not None,
        compare=options.compare or options.baseline is not None,
    )


def module_config(options: BenchmarkOptions) -> dict[str, Any]:
    """Return the settings the venv module runs with.

    Args:
        options: Validated options (shape names already checked).
    """
    by_id = {shape.id: shape for shape in (*GPU_SHAPES, *CPU_SHAPES)}
    return {
        "shapes": [dataclasses.asdict(by_id[name]) for name in options.shapes],
        "backends": list(options.backends),
        "dtypes": list(options.dtypes),
        "warmup": options.warmup,
        "iterations": options.iterations,
        "budget_s": options.budget_s,
        "seed": 0,
        "allow_cpu": options.allow_cpu,
    }


def module_timeout(options: BenchmarkOptions) -> float:
    """Seconds the venv module may run: start-up plus a generous allowance per cell.

    Args:
        options: Validated options: the shapes, dtypes and backends (all when empty) and budget.
    """
    shapes = len(options.shapes) or len(GPU_SHAPES)
    cells = shapes * (len(options.dtypes) or len(DTYPES)) * (len(options.backends) or len(BACKENDS))
    return 300.0 + cells * (2 * options.budget_s + 30.0)


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


# Report ----------------------------------------------------------------------------------

_STATUS_STYLE = {"ok": "green", "wrong": "bold red", "error": "yellow", "oom": "yellow"}
_VERDICT_STYLE = {
    "slower": "bold red",
    "broken": "bold red",
    "faster": "green",
    "fixed": "green",
    "new": "cyan",
    "removed": "yellow",
    "unchanged": "dim",
}


def _ms(value: float | None) -> str:
    """Milliseconds to three significant digits (0.0123, 1.23, 123)."""
    if value is None:
        return ""
    for limit, decimals in ((100, 0), (10, 1), (1, 2), (0.01, 3)):
        if value >= limit:
            return f"{value:.{decimals}f}"
    return f"{value:.4f}"


def _when(created_at: str) -> str:
    try:
        stamp = dt.datetime.fromisoformat(created_at).astimezone(dt.timezone.utc)
    except ValueError:
        return created_at
    return stamp.strftime("%Y-%m-%d %H:%M UTC")


def _mib(value: int | None) -> str:
    return "" if value is None else f"{value / 2**20:,.0f}"


def render_report(outcome: BenchmarkOutcome, console: Console) -> None:
    """Print a benchmark outcome: the attention table, ComfyUI timings, changes, headline.

    Args:
        outcome: What [`run_benchmark`][installer.benchmark.run_benchmark] returned.
        console: The rich console to print on.
    """
    from rich.markup import escape

    run = outcome.run
    if run is None:
        console.print(f"[yellow]Nothing measured:[/] {escape(outcome.reason or '')}")
        return
    _render_header(run, console)
    _render_measurements(run, console)
    if run.comfyui:
        _render_comfyui(run, console)
    if outcome.comparison is not None:
        render_comparison(outcome.comparison, console)
    elif outcome.compare_note:
        console.print(f"[yellow]compare:[/] {escape(outcome.compare_note)}")
    line = headline(run)
    if line:
        console.print(f"[bold]Headline:[/] {escape(line)}")
    if outcome.saved_to:
        console.print(f"Saved to {escape(str(outcome.saved_to))}")


def _render_header(run: BenchmarkRun, console: Console) -> None:
    from rich.markup import escape

    device = run.device
    if device.kind == "cuda":
        memory = (
            f", {device.total_memory_bytes / 2**30:.0f} GiB" if device.total_memory_bytes else ""
        )
        driver = f", driver {device.driver_version}" if device.driver_version else ""
        where = f"{device.name} (cc {device.cc}{memory}{driver})"
    else:
        cpu = device.name or "unknown"
        where = f"the CPU ({cpu}), a test run: CPU timings say nothing about a GPU"
    console.print(f"[bold]Attention benchmark on {escape(where)}[/]")
    cuda = f" (CUDA {run.torch.cuda})" if run.torch.cuda else " (CPU build)"
    backends = ", ".join(
        info.label
        if info.available
        else f"{BACKEND_LABELS.get(info.name, info.name)}: {info.reason or 'unavailable'}"
        for info in run.backends
    )
    console.print(escape(f"torch {run.torch.version}{cuda}; backends: {backends}"))
    settings = run.settings
    console.print(
        escape(
            f"median of up to {settings.iterations} calls after {settings.warmup} warmup "
            f"({settings.timer}, at most {settings.budget_s:g} s per cell)"
        )
    )


def _render_measurements(run: BenchmarkRun, console: Console) -> None:
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    # Compact (no vertical rules, errors as notes below) so it fits 80 columns.
    table = Table(
        title="Attention: median ms per call, speedup over SDPA, max error vs SDPA",
        box=box.SIMPLE,
        pad_edge=False,
        collapse_padding=True,
    )
    for name, justify in (
        ("shape", "left"), ("dtype", "left"), ("backend", "left"), ("ms", "right"),
        ("IQR", "right"), ("×SDPA", "right"), ("+MiB", "right"), ("error", "right"),
        ("", "left"),
    ):  # fmt: skip
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    problems: dict[tuple[str, str], list[str]] = {}
    previous_shape = None
    for m in run.measurements:
        if previous_shape is not None and m.shape != previous_shape:
            table.add_section()
        stats = m.stats
        if m.status != "ok":
            what = f"{m.status.upper() if m.status == 'wrong' else m.status}: {m.error or ''}"
            problems.setdefault((m.backend, what), []).append(f"{m.shape} {m.dtype}")
        status = {"ok": "", "wrong": "WRONG"}.get(m.status, m.status)
        table.add_row(
            escape(m.shape) if m.shape != previous_shape else "",
            m.dtype,
            escape(SHORT_NAMES.get(m.backend, m.backend)),
            _ms(stats.median_ms) if stats else "",
            _ms(stats.iqr_ms) if stats else "",
            f"{m.speedup:.2f}" if m.speedup is not None else "",
            _mib(m.extra_memory_bytes),
            "" if m.max_abs_error is None else f"{m.max_abs_error:.2g}",
            f"[{_STATUS_STYLE[m.status]}]{status}[/]",
        )
        previous_shape = m.shape
    console.print(table)
    for (backend, what), cells in problems.items():
        style = _STATUS_STYLE["wrong" if what.startswith("WRONG") else "error"]
        every = len(cells) == sum(m.backend == backend for m in run.measurements)
        where = "at every shape and dtype" if every and len(cells) > 1 else ", ".join(cells)
        console.print(
            f"[{style}]{escape(run.backend(backend).label)}[/] {escape(what.rstrip(': '))} "
            f"({escape(where)})"
        )
    legend = Table(title="Shapes (batch × heads × sequence × head dim)", box=box.SIMPLE)
    for column in ("shape", "model", "B×H×N×D", "what"):
        legend.add_column(column)
    for shape in run.shapes:
        legend.add_row(escape(shape.id), escape(shape.model), shape.dims, escape(shape.label))
    console.print(legend)


def _render_comfyui(run: BenchmarkRun, console: Console) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="ComfyUI" + (f" with {run.workflow}" if run.workflow else ""))
    table.add_column("attention")
    table.add_column("start-up s", justify="right")
    table.add_column("workflow s", justify="right")
    table.add_column("again s", justify="right")
    table.add_column("note")

    def seconds(value: float | None) -> str:
        return "" if value is None else f"{value:.2f}"

    for timing in run.comfyui:
        table.add_row(
            escape(timing.variant + (f" ({' '.join(timing.flags)})" if timing.flags else "")),
            seconds(timing.startup_s),
            seconds(timing.workflow_s),
            seconds(timing.workflow_warm_s),
            escape(timing.error or ""),
        )
    console.print(table)


def render_comparison(comparison: Comparison, console: Console) -> None:
    """Print the changes since the previous run (unchanged cells are only counted).

    Args:
        comparison: The comparison of this run with the previous one.
        console: The rich console to print on.
    """
    from rich.markup import escape
    from rich.table import Table

    source = comparison.previous_path or comparison.previous_created_at
    shown = [change for change in comparison.changes if change.verdict != "unchanged"]
    table = Table(
        title=f"Changes since the run of {_when(comparison.previous_created_at)} "
        f"(threshold {comparison.threshold:.0%})"
    )
    for name, justify in (
        ("backend", "left"), ("shape", "left"), ("dtype", "left"), ("before ms", "right"),
        ("now ms", "right"), ("change", "right"), ("verdict", "left"),
    ):  # fmt: skip
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for change in shown:
        ratio = change.ratio
        delta = f"{(ratio - 1) * 100:+.0f}%" if ratio is not None else ""
        if change.verdict in ("broken", "fixed"):
            delta = f"{change.previous_status} → {change.current_status}"
        style = _VERDICT_STYLE[change.verdict]
        table.add_row(
            escape(BACKEND_LABELS.get(change.backend, change.backend)),
            escape(change.shape),
            change.dtype,
            _ms(change.previous_ms),
            _ms(change.current_ms),
            escape(delta),
            f"[{style}]{change.verdict}[/]",
        )
    if shown:
        console.print(table)
    counts = comparison.counts()
    summary = ", ".join(f"{count} {verdict}" for verdict, count in sorted(counts.items()))
    regressions = len(comparison.regressions)
    style = "bold red" if regressions else "green"
    console.print(
        f"[{style}]{regressions} regression(s)[/] against {escape(source)} ({escape(summary)})"
    )
    for note in comparison.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
