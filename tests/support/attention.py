"""Test data for attention routing: a calibration shaped like the real H200 measurements.

The speedups of SageAttention 2.2.0 over SDPA are those of
`shared/reference/h200-attention.md` (torch 2.11.0+cu130, driver 580.159.04);
xformers 0.0.35 is broken there (its CUDA 12 library does not load beside a
CUDA 13 torch) and comfy-kitchen's int8 attention is slower everywhere.
"""

from __future__ import annotations

from typing import Any

from installer.attention.rules.records import (
    BackendRecord,
    Calibration,
    CalibrationPoint,
    MeasuredOn,
)
from installer.attention.rules.tables import MARGIN, build_tables

TOKENS = (1024, 2048, 4096, 8192, 16384, 32768, 75600)
SAGE = {
    (128, "fp16"): (0.35, 0.48, 0.72, 0.90, 1.20, 1.28, 1.46),
    (128, "bf16"): (0.35, 0.46, 0.70, 0.94, 1.13, 1.25, 1.42),
    (64, "fp16"): (0.40, 0.54, 0.67, 0.86, 1.01, 1.16, 1.37),
    (64, "bf16"): (0.40, 0.53, 0.67, 0.86, 0.98, 1.14, 1.32),
    (40, "fp16"): (0.30, 0.45, 0.59, 0.80, 0.95),
    (40, "bf16"): (0.30, 0.44, 0.58, 0.79, 0.93),
}
KITCHEN = (0.43, 0.50, 0.57, 0.62, 0.70, 0.84, 0.86)
HEADS = {128: (1, 24), 64: (2, 10), 40: (2, 8)}
H200_VERSIONS: dict[str, str | None] = {
    "torch": "2.11.0+cu130",
    "xformers": "0.0.35",
    "sageattention": "2.2.0",
    "sageattn3": None,
    "comfy-kitchen": "0.2.31",
    "triton": "3.6.0",
}
XFORMERS_ERROR = (
    "NotImplementedError: No operator found for `memory_efficient_attention_forward` … "
    "xFormers wasn't build with CUDA support"
)


def sdpa_ms(tokens: int, head_dim: int) -> float:
    batch, heads = HEADS[head_dim]
    return 0.035 * batch * heads / 20 * (tokens / 1024) ** 2 * head_dim / 64


def h200_points(
    sage: dict[tuple[int, str], tuple[float, ...]] | None = None,
) -> list[CalibrationPoint]:
    """The raw medians: SDPA, SageAttention 2, comfy-kitchen int8, xformers (failing)."""
    points = []
    for (dim, dtype), ratios in (sage or SAGE).items():
        batch, heads = HEADS[dim]
        for tokens, ratio, kitchen in zip(
            TOKENS[: len(ratios)], ratios, KITCHEN[: len(ratios)], strict=True
        ):
            base = sdpa_ms(tokens, dim)
            common: dict[str, Any] = {
                "tokens": tokens, "head_dim": dim, "dtype": dtype, "batch": batch, "heads": heads,
            }  # fmt: skip
            points += [
                CalibrationPoint(backend="sdpa", status="ok", median_ms=base, speedup=1.0,
                                 max_abs_error=0.0, **common),
                CalibrationPoint(backend="sageattention", status="ok", median_ms=base / ratio,
                                 speedup=ratio, max_abs_error=0.02, **common),
                CalibrationPoint(backend="comfy_kitchen_int8", status="ok",
                                 median_ms=base / kitchen, speedup=kitchen, max_abs_error=0.004,
                                 **common),
                CalibrationPoint(backend="xformers", status="error", error=XFORMERS_ERROR,
                                 **common),
            ]  # fmt: skip
    return points


def h200_calibration(
    versions: dict[str, str | None] | None = None,
    gpu: str = "NVIDIA H200",
    cc: str = "9.0",
    driver: str = "580.159.04",
    points: list[CalibrationPoint] | None = None,
    backends: list[BackendRecord] | None = None,
) -> Calibration:
    """A calibration as `tune` would write it on the H200 (or another GPU, for tests)."""
    points = h200_points() if points is None else points
    versions = H200_VERSIONS if versions is None else versions
    return Calibration(
        tool_version="0.0.0-test",
        measured_on=MeasuredOn(
            gpu_name=gpu,
            gpu_cc=cc,
            driver=driver,
            torch=str(versions.get("torch")),
            torch_cuda="13.0",
            versions=dict(versions),
            measured_at="2026-11-30T12:00:00+00:00",
            budget_s=60.0,
            took_s=31.0,
        ),
        margin=MARGIN,
        backends=backends
        if backends is not None
        else [
            BackendRecord(name="sdpa", status="working", version=versions.get("torch")),
            BackendRecord(
                name="xformers",
                status="broken",
                version=versions.get("xformers"),
                reason=f"error: {XFORMERS_ERROR}",
            ),
            BackendRecord(
                name="sageattention", status="working", version=versions.get("sageattention")
            ),
            BackendRecord(name="sageattn3", status="absent"),
            BackendRecord(
                name="comfy_kitchen_int8", status="working", version=versions.get("comfy-kitchen")
            ),
        ],
        tables=build_tables(points),
        points=points,
    )
