"""The attention benchmark that runs inside an install's venv (stdlib and torch only).

`comfy-install benchmark` and `comfy-install tune` do not import this module to
measure anything: they write its source and that of
[`attention_backends`][installer.attention.measure.attention_backends] as a small package
into a temporary folder, next to a JSON config, and run it with the venv's own
Python (`python -m`), so the numbers come from the torch, xformers,
SageAttention and comfy-kitchen that ComfyUI itself will use. The two modules
therefore import nothing from `installer` (only each other, relatively), and
import torch and the attention packages only when they run (torch by name, so
the installer, which has no torch, can import them for the shape tables and
type-check them).

For every shape (by default the attention calls of SD1.5, SDXL, Flux and a
long video model; `tune` sends its own sweep), every dtype (fp16, bf16) and
every backend that imports, it makes one set of random inputs, computes SDPA's
output as the reference, and then for each backend: the max absolute
difference from that reference, the peak GPU memory of one call and the time
of N calls after a warmup (CUDA events; `time.perf_counter` on the CPU). A
backend that raises (an unsupported head dim or dtype) or runs out of memory
is recorded as such for that cell and the others go on. With a total time
budget, the shapes are measured in the order given until it is spent; the
rest are listed as skipped, with the reason. The result is one JSON document,
written to ``--output`` (or printed on stdout); progress lines go to stderr.
With a ``comfyui`` setting each backend is called through that ComfyUI's own
attention function instead of the raw kernel
([`attention_comfyui`][installer.attention.measure.attention_comfyui]).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import importlib
import json
import math
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .attention_backends import BACKENDS, Backend, describe_error, load_backends, package_versions
from .attention_comfyui import comfyui_backends, import_attention

SCHEMA_VERSION = 1
DTYPES = ("fp16", "bf16")
MIN_ITERATIONS = 3
"""Fewest timed calls a cell gets, even when one call exceeds the time budget."""


@dataclass(frozen=True)
class Shape:
    """One attention call as a model makes it: ``batch × heads × seq × head_dim``."""

    id: str
    model: str
    label: str
    batch: int
    seq: int
    heads: int
    head_dim: int


GPU_SHAPES = (
    Shape("sd15-512", "SD1.5", "UNet self-attention at 512², CFG batch", 2, 4096, 8, 40),
    Shape("sdxl-1024", "SDXL", "UNet self-attention at 1024², CFG batch", 2, 4096, 10, 64),
    Shape("sdxl-1024-low", "SDXL", "inner UNet self-attention at 1024²", 2, 1024, 20, 64),
    Shape("flux-1024", "Flux", "joint attention at 1024², 512 text tokens", 1, 4608, 24, 128),
    Shape("video-long", "Wan 2.1 14B", "video attention, 832×480, 81 frames", 1, 32760, 40, 128),
)  # fmt: skip
"""The shapes measured on a GPU (ComfyUI's image and video models)."""

CPU_SHAPES = (
    Shape("tiny-unet", "tiny", "CPU test shape (head_dim 40)", 1, 256, 2, 40),
    Shape("tiny-dit", "tiny", "CPU test shape (head_dim 64)", 1, 320, 2, 64),
)
"""Tiny shapes for `--allow-cpu` test runs: they only prove the path works."""


def _is_oom(torch: Any, exc: BaseException) -> bool:
    oom_type = getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


class Timer:
    """Times calls: CUDA events on a GPU, `time.perf_counter` on the CPU.

    On a GPU the timed calls are queued behind a GPU sleep
    (``torch.cuda._sleep``, where torch has it) that lasts until the CPU has
    launched them all, so they run back to back and each event pair measures
    the kernels, not gaps in which the CPU was still launching: small
    attention calls are otherwise launch-bound, and their times would follow
    the CPU from run to run. (In ComfyUI the many kernels of a model step
    hide the launches the same way.) An event after the sleep tells whether
    it lasted long enough; if not, the calls are timed again behind a longer
    one.
    """

    CALIBRATION_CYCLES = 1_000_000
    MAX_HOLD_S = 1.0
    ATTEMPTS = 4

    def __init__(self, torch: Any, cuda: bool) -> None:
        """Create a timer for ``torch`` on the GPU (``cuda``) or the CPU."""
        self.torch = torch
        self.cuda = cuda

    def sync(self) -> None:
        """Wait for the GPU to finish queued work (nothing on the CPU)."""
        if self.cuda:
            self.torch.cuda.synchronize()

    def warm(self, function: Callable[[], Any], count: int) -> tuple[float, float]:
        """Make ``count`` calls; return the seconds per call on the wall clock and to launch.

        Args:
            function: One call.
            count: How many calls to make.
        """
        self.sync()
        start = time.perf_counter()
        for _ in range(count):
            function()
        launched = time.perf_counter()
        self.sync()
        done = time.perf_counter()
        return (done - start) / max(count, 1), (launched - start) / max(count, 1)

    def _hold_gpu(self, seconds: float) -> Any | None:
        """Queue a GPU sleep of about ``seconds``; return an event recorded after it."""
        sleep = getattr(self.torch.cuda, "_sleep", None)
        if sleep is None:
            return None
        # Calibrated each time: the sleep counts clock cycles, and the clock
        # of an idle GPU is several times lower than under load.
        event = self.torch.cuda.Event
        begin, end = event(enable_timing=True), event(enable_timing=True)
        begin.record()
        sleep(self.CALIBRATION_CYCLES)
        end.record()
        self.sync()
        cycles_per_ms = self.CALIBRATION_CYCLES / max(begin.elapsed_time(end), 1e-3)
        sleep(int(min(seconds, self.MAX_HOLD_S) * 1000.0 * cycles_per_ms))
        released = event()
        released.record()
        return released

    def times_ms(
        self, function: Callable[[], Any], count: int, launch_s: float = 0.0
    ) -> list[float]:
        """Return the milliseconds of each of ``count`` calls.

        Args:
            function: One call.
            count: How many calls to time.
            launch_s: Seconds the CPU needs to launch one call (from
                [`warm`][installer.attention.measure.attention_module.Timer.warm]), to size the
                GPU sleep the calls are queued behind.
        """
        if not self.cuda:
            samples = []
            for _ in range(count):
                start = time.perf_counter()
                function()
                samples.append((time.perf_counter() - start) * 1000.0)
            return samples
        event = self.torch.cuda.Event
        hold = 2.0 * launch_s * count + 0.005
        for _ in range(self.ATTEMPTS):
            pairs = [(event(enable_timing=True), event(enable_timing=True)) for _ in range(count)]
            self.sync()
            released = self._hold_gpu(hold)
            for start_event, end_event in pairs:
                start_event.record()
                function()
                end_event.record()
            covered = released is None or not released.query()
            self.sync()
            if covered or hold >= self.MAX_HOLD_S:
                break
            hold *= 4
        return [float(start_event.elapsed_time(end_event)) for start_event, end_event in pairs]


def measure_cell(
    torch: Any,
    backend: Backend,
    inputs: tuple[Any, Any, Any],
    reference: Any | None,
    timer: Timer,
    settings: dict[str, Any],
) -> dict[str, Any]:
    """Measure one backend on one set of inputs.

    Args:
        torch: The imported torch module.
        backend: The implementation to call.
        inputs: ``(q, k, v)`` laid out as (B, H, N, D).
        reference: SDPA's output on the same inputs, or None when SDPA failed.
        timer: Times the calls.
        settings: ``warmup``, ``iterations`` and ``budget_s`` (seconds of
            timed calls, at most, per cell).

    Returns:
        ``status`` (`ok`, `error` or `oom`), ``times_ms``, ``max_abs_error``
        and ``reference_max_abs`` (the scale of the right answer),
        ``nonfinite``, ``peak_memory_bytes``, ``baseline_memory_bytes`` and
        ``error`` (the exception, for `error` and `oom`).
    """
    row: dict[str, Any] = {
        "status": "ok",
        "times_ms": [],
        "warmup": 0,
        "max_abs_error": None,
        "reference_max_abs": None,
        "nonfinite": False,
        "peak_memory_bytes": None,
        "baseline_memory_bytes": None,
        "error": None,
    }
    args: tuple[Any, ...] = ()
    try:
        args = backend.prepare(*inputs)
        output = backend.call(args)
        timer.sync()
        result = backend.to_bhnd(output).float()
        row["nonfinite"] = not bool(torch.isfinite(result).all().item())
        if reference is not None and not row["nonfinite"]:
            row["max_abs_error"] = float((result - reference).abs().max().item())
            row["reference_max_abs"] = float(reference.abs().max().item())
        del output, result
        once = functools.partial(backend.call, args)
        warmup = max(int(settings["warmup"]), 0)
        estimate, launch = timer.warm(once, max(warmup, 1))
        row["warmup"] = max(warmup, 1) + 1
        if timer.cuda:
            timer.sync()
            torch.cuda.reset_peak_memory_stats()
            row["baseline_memory_bytes"] = int(torch.cuda.memory_allocated())
            once()
            timer.sync()
            row["peak_memory_bytes"] = int(torch.cuda.max_memory_allocated())
        iterations = max(int(settings["iterations"]), 1)
        if estimate > 0:
            affordable = int(float(settings["budget_s"]) / estimate)
            iterations = max(min(iterations, affordable), min(MIN_ITERATIONS, iterations))
        row["times_ms"] = timer.times_ms(once, iterations, launch)
    except Exception as exc:  # a backend may fail in any way; the next one still runs
        row["status"] = "oom" if _is_oom(torch, exc) else "error"
        row["error"] = describe_error(exc)
    finally:
        args = ()
        _release(torch, timer.cuda)
    return row


def _release(torch: Any, cuda: bool) -> None:
    gc.collect()
    if cuda:
        with contextlib.suppress(Exception):
            torch.cuda.empty_cache()


def _progress(message: str) -> None:
    sys.stderr.write(f"progress: {message}\n")
    sys.stderr.flush()


def _blank_row(name: str, shape: Shape, dtype: str) -> dict[str, Any]:
    return {"backend": name, "shape": shape.id, "dtype": dtype}


STARTED = time.perf_counter()
"""When this module was imported: the total budget runs from here, imports included (a tune
that timed only its calls ran ~15% over its budget on an H100: 70 s for 60)."""
MATH_BYTES = 2**31
"""The largest attention matrix (fp32 bytes) for which the reference is SDPA's math back end."""


def math_reference(torch: Any, inputs: tuple[Any, Any, Any], layout: tuple[int, ...]) -> Any:
    """Return attention computed by SDPA's math back end in fp32, in the reference's layout.

    Args:
        torch: The imported torch module.
        inputs: ``(q, k, v)`` laid out as (B, H, N, D).
        layout: The shape of SDPA's output as compared: (B, H, N, D) or (B, N, H·D).
    """
    attention = __import__("torch.nn.attention", fromlist=["sdpa_kernel"])
    SDPBackend, sdpa_kernel = attention.SDPBackend, attention.sdpa_kernel

    q, k, v = (t.float() for t in inputs)
    with sdpa_kernel([SDPBackend.MATH]):
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    if tuple(out.shape) != layout:
        out = out.transpose(1, 2).reshape(layout)
    return out


def run_shape(
    torch: Any,
    shape: Shape,
    dtype: str,
    backends: dict[str, Backend],
    timer: Timer,
    settings: dict[str, Any],
) -> list[dict[str, Any]]:
    """Measure every backend at one shape and dtype; return one row per backend.

    Args:
        torch: The imported torch module.
        shape: The attention call whose random inputs are made.
        dtype: ``fp16`` or ``bf16``.
        backends: The usable backends by name; SDPA's output, when it runs, is the reference.
        timer: Times the calls (on the GPU when its ``cuda`` is set).
        settings: ``seed`` for the inputs, and the ``warmup``, ``iterations`` and
            ``budget_s`` that
            [`measure_cell`][installer.attention.measure.attention_module.measure_cell] reads.
    """
    device = "cuda" if timer.cuda else "cpu"
    torch_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
    size = (shape.batch, shape.heads, shape.seq, shape.head_dim)
    rows: list[dict[str, Any]] = []
    reference: Any | None = None
    try:
        generator = torch.Generator(device=device).manual_seed(int(settings["seed"]))
        q, k, v = (
            torch.randn(size, generator=generator, device=device, dtype=torch_dtype)
            for _ in range(3)
        )
    except Exception as exc:  # the inputs alone may not fit
        status = "oom" if _is_oom(torch, exc) else "error"
        _release(torch, timer.cuda)
        return [
            {**_blank_row(name, shape, dtype), "status": status, "error": describe_error(exc)}
            for name in backends
        ]
    inputs = (q, k, v)
    del q, k, v
    with contextlib.suppress(Exception):
        sdpa = backends.get("sdpa")
        reference = None if sdpa is None else sdpa.to_bhnd(sdpa.call(sdpa.prepare(*inputs))).float()
        timer.sync()
    if reference is not None and shape.batch * shape.heads * shape.seq**2 * 4 <= MATH_BYTES:
        with contextlib.suppress(Exception):
            reference = math_reference(torch, inputs, tuple(reference.shape))
            timer.sync()
    if reference is None:
        _release(torch, timer.cuda)
    for name, backend in backends.items():
        if shape.seq < backend.min_tokens:
            continue
        row = {**_blank_row(name, shape, dtype), **measure_cell(
            torch, backend, inputs, reference, timer, settings
        )}  # fmt: skip
        rows.append(row)
        times = row["times_ms"]
        if row["status"] == "ok" and times:
            median = sorted(times)[len(times) // 2]
            error = row["max_abs_error"]
            shown = "n/a" if error is None else f"{error:.2g}"
            _progress(f"{shape.id} {dtype} {name}: {median:.3f} ms, max error {shown}")
        else:
            _progress(f"{shape.id} {dtype} {name}: {row['status']} ({row['error']})")
    del inputs, reference
    _release(torch, timer.cuda)
    return rows


def device_report(torch: Any, cuda: bool) -> dict[str, Any]:
    """Describe the device measured on: GPU name, compute capability, memory; or the CPU.

    Args:
        torch: The imported torch module.
        cuda: True to describe the current CUDA device, False for the CPU.
    """
    if not cuda:
        return {"kind": "cpu", "name": platform.processor() or platform.machine(), "cc": None}
    index = torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    return {
        "kind": "cuda",
        "index": int(index),
        "name": str(props.name),
        "cc": f"{props.major}.{props.minor}",
        "total_memory_bytes": int(props.total_memory),
        "multiprocessors": int(props.multi_processor_count),
    }


def run(config: dict[str, Any]) -> dict[str, Any]:
    """Run the benchmark described by ``config`` and return the result document.

    Args:
        config: ``shapes`` (dicts with the fields of
            [`Shape`][installer.attention.measure.attention_module.Shape]; the GPU or CPU
            defaults when absent), ``dtypes``, ``backends``, ``warmup``,
            ``iterations``, ``budget_s`` (per cell), ``total_budget_s`` (for
            all the cells; None for no limit), ``seed``, ``allow_cpu``
            (measure on the CPU when no GPU is usable) and ``comfyui``
            (``path``, ``functions``, ``loaded``: measure through that ComfyUI's
            attention functions, see
            [`attention_comfyui`][installer.attention.measure.attention_comfyui]; the raw
            kernels when absent or when it does not import).

    Returns:
        The JSON-serialisable result: ``measured`` (False, with ``reason``,
        when there is no torch or no GPU), the device, torch and package
        versions, the backends, one row per backend, shape and dtype, the
        shapes ``skipped`` when the total budget ran out, and the ``method``
        (``comfyui`` or ``kernels``, with ``method_reason`` when ComfyUI was
        asked for but did not import).
    """
    document: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "measured": False,
        "reason": None,
        "python": platform.python_version(),
        "platform": sys.platform,
        "packages": package_versions(),
        "torch": None,
        "device": None,
        "backends": [],
        "settings": {},
        "shapes": [],
        "results": [],
        "skipped": [],
        "method": "kernels",
        "method_reason": None,
    }
    try:
        torch = importlib.import_module("torch")
    except Exception as exc:  # a broken torch install raises more than ImportError
        document["reason"] = f"torch cannot be imported in this venv ({describe_error(exc)})"
        return document
    cuda = bool(torch.cuda.is_available())
    document["torch"] = {
        "version": str(torch.__version__),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "cuda_available": cuda,
    }
    if not cuda and not config.get("allow_cpu"):
        document["reason"] = (
            f"torch {torch.__version__} in this venv sees no CUDA GPU "
            f"(CUDA build: {torch.version.cuda or 'none, a CPU-only torch'})"
        )
        return document
    default_shapes = GPU_SHAPES if cuda else CPU_SHAPES
    shapes = (
        [Shape(**item) for item in config["shapes"]] if config.get("shapes") else default_shapes
    )
    settings: dict[str, Any] = {
        "warmup": int(config.get("warmup", 5)),
        "iterations": int(config.get("iterations", 20)),
        "budget_s": float(config.get("budget_s", 2.0)),
        "seed": int(config.get("seed", 0)),
        "timer": "cuda-events" if cuda else "perf_counter",
        "dtypes": list(config.get("dtypes") or DTYPES),
        "total_budget_s": config.get("total_budget_s"),
    }
    names = [name for name in BACKENDS if name in (config.get("backends") or BACKENDS)]
    if "sdpa" not in names:
        names.insert(0, "sdpa")
    module, document["method_reason"] = None, None
    comfyui = config.get("comfyui") or {}
    if comfyui:
        module, document["method_reason"] = import_attention(str(comfyui["path"]), not cuda)
    if module is not None:
        document["method"] = "comfyui"
        backends, document["backends"] = comfyui_backends(
            module, names, comfyui.get("functions") or {}, comfyui.get("loaded") or {}
        )
    else:
        backends, document["backends"] = load_backends(torch, names)
    document.update(
        measured=True,
        device=device_report(torch, cuda),
        settings=settings,
        shapes=[asdict(shape) for shape in shapes],
    )
    timer = Timer(torch, cuda)
    torch.manual_seed(settings["seed"])
    document["results"], document["skipped"] = run_all(torch, shapes, backends, timer, settings)
    return document


def run_all(
    torch: Any,
    shapes: Sequence[Shape],
    backends: dict[str, Backend],
    timer: Timer,
    settings: dict[str, Any],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Measure each shape at each dtype, in order, until the total budget is spent.

    Before each shape the time spent so far, plus the GPU time of the previous
    shape's calls scaled by the work (B·H·N²·D), plus the least time a recent shape
    spent outside its calls, is checked against ``total_budget_s``; a shape that
    does not fit is skipped with the reason.
    The calls' own times are scaled, not the wall time, so a first call that
    compiles kernels (Triton) does not make every later shape look dear.

    Args:
        torch: The imported torch module.
        shapes: The shapes, cheapest first for a budget to cut the dearest.
        backends: The usable backends by name.
        timer: Times the calls.
        settings: What [`run_shape`][installer.attention.measure.attention_module.run_shape]
            reads, plus ``dtypes`` and ``total_budget_s`` (None: no limit).

    Returns:
        ``(rows, skipped)``: one row per backend, shape and dtype measured, and
        ``{"shape", "dtype", "reason"}`` for each one that was not.
    """
    units = [(shape, dtype) for shape in shapes for dtype in settings["dtypes"]]
    budget = settings.get("total_budget_s")
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    start = STARTED  # torch's and ComfyUI's imports count against the budget too
    last: tuple[float, int] | None = None
    overheads: list[float] = []
    for index, (shape, dtype) in enumerate(units, 1):
        work = shape.batch * shape.heads * shape.seq**2 * shape.head_dim
        spent = time.perf_counter() - start
        expected = last[0] * work / last[1] if last is not None else 0.0
        # What a shape costs beyond its calls (inputs, reference, collection): the least
        # of the last three, so a first shape that compiled kernels does not inflate it.
        expected += min(overheads[-3:]) if overheads else 0.0
        if budget is not None and spent + expected > float(budget):
            reason = f"the time budget of {float(budget):g} s was spent"
            skipped.append({"shape": shape.id, "dtype": dtype, "reason": reason})
            _progress(f"{shape.id} {dtype}: skipped, {reason} ({index}/{len(units)})")
            continue
        began = time.perf_counter()
        measured = run_shape(torch, shape, dtype, backends, timer, settings)
        rows.extend(measured)
        wall = time.perf_counter() - began
        calls = min(_calls_seconds(measured), wall)
        last = (calls, max(work, 1))
        overheads.append(wall - calls)
        _progress(f"{shape.id} {dtype}: measured ({index}/{len(units)})")
    return rows, skipped


def _calls_seconds(rows: Sequence[dict[str, Any]]) -> float:
    """Seconds the calls of some rows take: the median call times every call made."""
    total = 0.0
    for row in rows:
        times = sorted(row.get("times_ms") or [])
        if times:
            total += times[len(times) // 2] * (len(times) + int(row.get("warmup") or 0) + 2)
    return total / 1000.0


def _finite(value: Any) -> Any:
    """Replace NaN and infinities (which JSON cannot hold) by None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python attention_module.py [--config FILE] [--output FILE]``.

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).

    Returns:
        0; a failure to measure is reported inside the document.
    """
    parser = argparse.ArgumentParser(description="Time attention backends on this machine.")
    parser.add_argument("--config", type=Path, help="JSON settings (see run()).")
    parser.add_argument("--output", type=Path, help="Write the JSON here instead of stdout.")
    options = parser.parse_args(argv)
    config = json.loads(options.config.read_text(encoding="utf-8")) if options.config else {}
    text = json.dumps(_finite(run(config)), indent=2, allow_nan=False)
    if options.output:
        options.output.write_text(text + "\n", encoding="utf-8")
    else:
        sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
