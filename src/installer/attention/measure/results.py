"""The benchmark's run record and how raw timings become judged measurements.

The pydantic models of a run as saved in `DIR/.comfy-install/benchmarks/`
([`BenchmarkRun`][installer.attention.measure.results.BenchmarkRun] and its parts), the
statistics of each cell (median, min, max, IQR), the speedup over torch SDPA,
and the verdict on correctness: a max error above the backend's tolerance is
`wrong`, however fast. No I/O.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from installer import __version__
from installer.attention.rules.records import backend_label
from installer.core.errors import StepFailedError

if TYPE_CHECKING:
    from installer.core.facts import GpuReport


TOLERANCES: dict[tuple[str, str], float] = {
    ("sdpa", "fp16"): 1e-2,
    ("sdpa", "bf16"): 1e-2,
    ("cudnn", "fp16"): 1e-2,
    ("cudnn", "bf16"): 1e-2,
    ("flash", "fp16"): 1e-2,
    ("flash", "bf16"): 1e-2,
    ("efficient", "fp16"): 1e-2,
    ("efficient", "bf16"): 1e-2,
    ("xformers", "fp16"): 1e-2,
    ("xformers", "bf16"): 1e-2,
    ("sageattention", "fp16"): 0.05,
    ("sageattention", "bf16"): 0.1,
    ("sage_per_warp", "fp16"): 0.05,
    ("sage_per_warp", "bf16"): 0.1,
    ("sageattn3", "fp16"): 0.05,
    ("sageattn3", "bf16"): 0.1,
    ("comfy_kitchen_int8", "fp16"): 0.05,
    ("comfy_kitchen_int8", "bf16"): 0.1,
}
"""Largest max-abs difference from the reference that is still a right answer.

The reference is SDPA's math back end in fp32 where its attention matrix fits
(`attention_module.MATH_BYTES`), else SDPA's own output. SDPA itself differs
from the math back end by fp16/bf16 rounding (a rerun must agree); torch's SDPA back ends
(cuDNN, flash, memory-efficient) and xformers compute the same exact attention
(fp16/bf16 rounding apart); the SageAttention kernels quantize Q and K (int8, or FP4 for
SageAttention 3), and so does comfy-kitchen's int8 attention, so they are allowed more.
"""
DEFAULT_TOLERANCE = 0.1
RELATIVE_TOLERANCE = 0.25
"""An error above this fraction of the reference output's largest value is `wrong` too.

The absolute tolerances alone would pass a kernel that returns zeros where the
right answer is small (long sequences average many values); SageAttention's
error is about 3% of that scale on random inputs, a broken kernel's about 100%.
"""


Status = Literal["ok", "wrong", "error", "oom"]


class RecordModel(BaseModel):
    """Base of the run record's models: frozen; fields this version does not know are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class TimingStats(RecordModel):
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


class Measurement(RecordModel):
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


class ShapeInfo(RecordModel):
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


class BackendInfo(RecordModel):
    """An attention backend in the venv: importable or why not, and its version."""

    name: str
    available: bool
    version: str | None = None
    reason: str | None = None

    @property
    def label(self) -> str:
        """Human name with version, e.g. ``SageAttention 1.0.6``."""
        return backend_label(self.name, self.version)


class DeviceInfo(RecordModel):
    """The device measured on."""

    kind: Literal["cuda", "cpu"]
    name: str
    cc: str | None = None
    index: int | None = None
    total_memory_bytes: int | None = None
    multiprocessors: int | None = None
    driver_version: str | None = None
    cuda_driver_version: str | None = None


class TorchInfo(RecordModel):
    """The venv's torch."""

    version: str
    cuda: str | None = None
    cudnn: int | None = None
    cuda_available: bool = False


class Settings(RecordModel):
    """How the cells were timed."""

    warmup: int
    iterations: int
    budget_s: float
    seed: int = 0
    timer: str = "cuda-events"
    dtypes: list[str] = Field(default_factory=list)


class ComfyTiming(RecordModel):
    """A real ComfyUI start-up (and workflow) with one set of attention flags."""

    variant: str
    flags: list[str] = Field(default_factory=list)
    startup_s: float | None = None
    workflow_s: float | None = None
    """The first run of the workflow after start-up (loads the models)."""
    workflow_warm_s: float | None = None
    """A second run with the seeds changed (models already loaded)."""
    error: str | None = None


class BenchmarkRun(RecordModel):
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
    exceeds [`tolerance_for`][installer.attention.measure.results.tolerance_for] its backend
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
        raw: The JSON document [`attention_module`][installer.attention.measure.attention_module]
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
