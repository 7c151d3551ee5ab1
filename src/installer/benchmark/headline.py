"""The one line that sums up a benchmark run, as `comfy-install doctor` shows it."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from installer.attention.measure.results import BenchmarkRun
from installer.benchmark.store import latest_run


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
