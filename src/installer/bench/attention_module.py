"""The attention benchmark that runs inside an install's venv (stdlib and torch only).

`comfy-install benchmark` does not import this module to measure anything: it
reads this file's source, writes it next to a small JSON config in a temporary
folder and runs it with the venv's own Python, so the numbers come from the
torch, xformers and SageAttention that ComfyUI itself will use. The module
therefore imports nothing from `installer`, and imports torch and the
attention packages only when it runs (torch by name, so the installer, which
has no torch, can import it for the shape tables and type-check it).

For every shape (the attention calls of SD1.5, SDXL, Flux and a long video
model), every dtype (fp16, bf16) and every backend that imports (torch SDPA,
xformers, SageAttention, SageAttention 3), it makes one set of random inputs,
computes SDPA's output as the reference, and then for each backend: the max
absolute difference from that reference, the peak GPU memory of one call and
the time of N calls after a warmup (CUDA events; `time.perf_counter` on the
CPU). A backend that raises (an unsupported head dim or dtype) or runs out of
memory is recorded as such for that cell and the others go on. The result is
one JSON document, written to ``--output`` (or printed on stdout); progress
lines go to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import importlib
import importlib.metadata
import json
import math
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
BACKENDS = ("sdpa", "xformers", "sageattention", "sageattn3")
"""Backends in the order they are measured; `sdpa` is the baseline and the reference."""
DTYPES = ("fp16", "bf16")
PACKAGES = ("torch", "xformers", "sageattention", "sageattn3", "triton", "triton-windows")
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


@dataclass(frozen=True)
class Backend:
    """How to call one attention implementation on inputs laid out as (B, H, N, D)."""

    name: str
    prepare: Callable[[Any, Any, Any], tuple[Any, ...]]
    """Copy the reference inputs into the backend's layout (outside the timed calls)."""
    call: Callable[[tuple[Any, ...]], Any]
    """One attention call on prepared inputs."""
    to_bhnd: Callable[[Any], Any]
    """Bring an output back to (B, H, N, D) for comparison."""


def _same(tensor: Any) -> Any:
    return tensor


def _clone3(q: Any, k: Any, v: Any) -> tuple[Any, ...]:
    # SageAttention subtracts k's mean in place; private copies keep the
    # reference inputs (and the next backend's) untouched.
    return (q.clone(), k.clone(), v.clone())


def _sdpa_backend(torch: Any) -> Backend:
    sdpa = torch.nn.functional.scaled_dot_product_attention
    return Backend("sdpa", _clone3, lambda a: sdpa(*a), _same)


def _xformers_backend(torch: Any) -> Backend:
    xops = importlib.import_module("xformers.ops")

    def prepare(q: Any, k: Any, v: Any) -> tuple[Any, ...]:
        return tuple(t.transpose(1, 2).contiguous() for t in (q, k, v))

    return Backend(
        "xformers",
        prepare,
        lambda a: xops.memory_efficient_attention(*a),
        lambda out: out.transpose(1, 2),
    )


def _sageattention_backend(torch: Any) -> Backend:
    sageattn = importlib.import_module("sageattention").sageattn
    return Backend(
        "sageattention",
        _clone3,
        lambda a: sageattn(*a, tensor_layout="HND", is_causal=False),
        _same,
    )


def _sageattn3_backend(torch: Any) -> Backend:
    blackwell = importlib.import_module("sageattn3").sageattn3_blackwell
    return Backend("sageattn3", _clone3, lambda a: blackwell(*a, is_causal=False), _same)


_FACTORIES: dict[str, Callable[[Any], Backend]] = {
    "sdpa": _sdpa_backend,
    "xformers": _xformers_backend,
    "sageattention": _sageattention_backend,
    "sageattn3": _sageattn3_backend,
}
_DISTRIBUTION = {"sdpa": "torch", "xformers": "xformers", "sageattention": "sageattention"}


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str | None]:
    """Return the installed version of each distribution, None when absent.

    Args:
        names: Distribution names to look up (default: `PACKAGES`).
    """
    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def load_backends(
    torch: Any, names: Sequence[str]
) -> tuple[dict[str, Backend], list[dict[str, Any]]]:
    """Import each backend; return the usable ones and a report line for every one.

    Args:
        torch: The imported torch module.
        names: Backend names from [`BACKENDS`][installer.bench.attention_module.BACKENDS].

    Returns:
        ``(usable, report)``: the backends that imported, by name, and for each
        name asked for ``{"name", "available", "version", "reason"}``.
    """
    usable: dict[str, Backend] = {}
    report: list[dict[str, Any]] = []
    versions = package_versions([_DISTRIBUTION.get(name, name) for name in names])
    for name in names:
        version = versions.get(_DISTRIBUTION.get(name, name))
        try:
            usable[name] = _FACTORIES[name](torch)
        except Exception as exc:  # an optional package may fail to import in any way
            reason = "not installed" if isinstance(exc, ImportError) and version is None else None
            report.append(
                {
                    "name": name,
                    "available": False,
                    "version": version,
                    "reason": reason or _describe(exc),
                }
            )
            continue
        report.append({"name": name, "available": True, "version": version, "reason": None})
    return usable, report


def _describe(exc: BaseException) -> str:
    """One line about an exception: its type, the first line and the last line of its message.

    Libraries put the cause last in long messages (xformers: "No operator
    found ... `cutlassF` is not supported because: xFormers wasn't built
    with CUDA support"), so the last line is kept with the first.
    """
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    text = type(exc).__name__
    if lines:
        text += f": {lines[0]}"
    if len(lines) > 1:
        text += f" … {lines[-1]}"
    return text[:300]


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
                [`warm`][installer.bench.attention_module.Timer.warm]), to size the
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
        row["error"] = _describe(exc)
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
            ``budget_s`` that [`measure_cell`][installer.bench.attention_module.measure_cell] reads.
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
            {**_blank_row(name, shape, dtype), "status": status, "error": _describe(exc)}
            for name in backends
        ]
    inputs = (q, k, v)
    del q, k, v
    with contextlib.suppress(Exception):
        reference = backends["sdpa"].call(inputs).float() if "sdpa" in backends else None
        timer.sync()
    if reference is None:
        _release(torch, timer.cuda)
    for name, backend in backends.items():
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
            [`Shape`][installer.bench.attention_module.Shape]; the GPU or CPU
            defaults when absent), ``dtypes``, ``backends``, ``warmup``,
            ``iterations``, ``budget_s``, ``seed`` and ``allow_cpu`` (measure
            on the CPU when no GPU is usable).

    Returns:
        The JSON-serialisable result: ``measured`` (False, with ``reason``,
        when there is no torch or no GPU), the device, torch and package
        versions, the backends and one row per backend, shape and dtype.
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
    }
    try:
        torch = importlib.import_module("torch")
    except Exception as exc:  # a broken torch install raises more than ImportError
        document["reason"] = f"torch cannot be imported in this venv ({_describe(exc)})"
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
    }
    names = [name for name in BACKENDS if name in (config.get("backends") or BACKENDS)]
    if "sdpa" not in names:
        names.insert(0, "sdpa")
    backends, document["backends"] = load_backends(torch, names)
    document.update(
        measured=True,
        device=device_report(torch, cuda),
        settings=settings,
        shapes=[asdict(shape) for shape in shapes],
    )
    timer = Timer(torch, cuda)
    torch.manual_seed(settings["seed"])
    for shape in shapes:
        for dtype in settings["dtypes"]:
            document["results"].extend(run_shape(torch, shape, dtype, backends, timer, settings))
    return document


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
