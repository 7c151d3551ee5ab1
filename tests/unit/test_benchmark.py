"""`comfy-install benchmark`: statistics, verdicts, comparison, report, storage, headline, CLI.

The data is real: `data/benchmark/h100-raw.json` is the document the venv
module printed on an NVIDIA H100 80GB HBM3 (torch 2.11.0+cu130, SageAttention
1.0.6 with Triton 3.6, no xformers) on 2026-11-23, and `h100-run.json` is the
run `benchmark` saved from it on the same machine. Other cases (a faster
kernel, a wrong one, xformers appearing, a regression) are made from those by
changing numbers, so every test reads values a real GPU produced.

The command is run in-process against an install directory whose
`venv/bin/python` is a small script that writes a recorded document where the
real module would write its result: the orchestration, storage and exit
codes run for real, without torch.
"""

from __future__ import annotations

import copy
import io
import json
import os
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from installer.attention.measure import attention_module
from installer.attention.measure.results import (
    BenchmarkRun,
    Measurement,
    build_run,
    measurement_from_row,
    timing_stats,
    tolerance_for,
    with_speedups,
)
from installer.benchmark.comfyui import bump_seeds, load_workflow, run_workflow
from installer.benchmark.compare import REGRESSION_THRESHOLD, compare_runs
from installer.benchmark.headline import headline, latest_headline
from installer.benchmark.options import BenchmarkOptions, module_config, validate_options
from installer.benchmark.render import render_report
from installer.benchmark.run import BenchmarkOutcome
from installer.benchmark.store import (
    benchmarks_dir,
    latest_run,
    load_run,
    run_file_name,
    save_run,
    saved_runs,
)
from installer.cli.benchmark import benchmark
from installer.core.errors import ExitCode, RegressionError, StepFailedError, UsageError
from installer.core.facts import GpuInfo, GpuReport
from support.http_server import POLL_INTERVAL

DATA = Path(__file__).parent / "data" / "benchmark"
RAW: dict[str, Any] = json.loads((DATA / "h100-raw.json").read_text(encoding="utf-8"))
H100_NAME = "NVIDIA H100 80GB HBM3"


@pytest.fixture
def h100_run() -> BenchmarkRun:
    return load_run(DATA / "h100-run.json")


def scaled(
    run: BenchmarkRun,
    factor: float,
    backend: str | None = None,
    shape: str | None = None,
    created_at: str | None = None,
) -> BenchmarkRun:
    """The run with the times of some cells multiplied by ``factor`` (speedups recomputed)."""
    changed = []
    for m in run.measurements:
        if (backend is None or m.backend == backend) and (shape is None or m.shape == shape):
            times = [t * factor for t in m.times_ms]
            m = m.model_copy(
                update={"times_ms": times, "stats": timing_stats(times) if times else None}
            )
        changed.append(m)
    update: dict[str, Any] = {"measurements": with_speedups(changed)}
    if created_at:
        update["created_at"] = created_at
    return run.model_copy(update=update)


def flat(text: str) -> str:
    """Text with rich's line wrapping undone (all whitespace runs made one space)."""
    return " ".join(text.split())


def cell(run: BenchmarkRun, backend: str, shape: str, dtype: str) -> Measurement:
    return next(m for m in run.measurements if m.key == (backend, shape, dtype))


# --- statistics --------------------------------------------------------------------------


def test_stats_of_an_odd_count() -> None:
    stats = timing_stats([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (stats.median_ms, stats.min_ms, stats.max_ms) == (3.0, 1.0, 5.0)
    assert (stats.q1_ms, stats.q3_ms, stats.iqr_ms) == (2.0, 4.0, 2.0)
    assert stats.mean_ms == 3.0
    assert stats.samples == 5


def test_stats_of_an_even_count_use_the_middle_pair() -> None:
    stats = timing_stats([4.0, 1.0, 3.0, 2.0])
    assert stats.median_ms == 2.5
    assert stats.q1_ms == pytest.approx(1.75)
    assert stats.q3_ms == pytest.approx(3.25)


def test_stats_of_one_sample_and_of_none() -> None:
    one = timing_stats([0.25])
    assert (one.median_ms, one.q1_ms, one.q3_ms, one.iqr_ms) == (0.25, 0.25, 0.25, 0.0)
    with pytest.raises(ValueError, match="no timings"):
        timing_stats([])


def test_recorded_stats_match_the_recorded_samples(h100_run: BenchmarkRun) -> None:
    for m in h100_run.measurements:
        if m.stats is not None:
            assert m.stats == timing_stats(m.times_ms)
            assert m.stats.min_ms <= m.stats.q1_ms <= m.stats.median_ms <= m.stats.q3_ms
            assert m.stats.q3_ms <= m.stats.max_ms


# --- verdicts on one cell ----------------------------------------------------------------


def raw_row(
    backend: str = "sageattention", shape: str = "sdxl-1024", dtype: str = "fp16"
) -> dict[str, Any]:
    return copy.deepcopy(
        next(
            r
            for r in RAW["results"]
            if (r["backend"], r["shape"], r["dtype"]) == (backend, shape, dtype)
        )
    )


def test_a_recorded_sageattention_row_is_ok() -> None:
    m = measurement_from_row(raw_row())
    assert m.status == "ok"
    assert m.max_abs_error == pytest.approx(0.0048828125)
    assert m.tolerance == 0.05
    assert m.extra_memory_bytes == 125832192 - 83886080


@pytest.mark.parametrize(("backend", "dtype", "tolerance"), [
    ("sdpa", "fp16", 1e-2), ("cudnn", "bf16", 1e-2),
    ("xformers", "bf16", 1e-2), ("sageattention", "fp16", 0.05),
    ("sageattention", "bf16", 0.1), ("sageattn3", "bf16", 0.1), ("someday", "fp16", 0.1),
])  # fmt: skip
def test_tolerances(backend: str, dtype: str, tolerance: float) -> None:
    assert tolerance_for(backend, dtype) == tolerance


def test_an_error_above_the_tolerance_is_wrong_however_fast() -> None:
    row = raw_row(dtype="fp16") | {"max_abs_error": 0.055}
    m = measurement_from_row(row)
    assert m.status == "wrong"
    assert "exceeds the tolerance 0.05" in (m.error or "")
    assert m.stats is not None  # still timed: fast and wrong is worth seeing
    assert measurement_from_row(raw_row(dtype="bf16") | {"max_abs_error": 0.045}).status == "ok"


def test_an_error_near_the_size_of_the_answer_is_wrong() -> None:
    # A kernel returning zeros: its error is the reference's own largest value.
    row = raw_row(shape="video-long", dtype="bf16")
    row["max_abs_error"] = row["reference_max_abs"]
    m = measurement_from_row(row)
    assert row["max_abs_error"] < tolerance_for("sageattention", "bf16")
    assert m.status == "wrong"
    assert "scale" in (m.error or "")


def test_nan_output_is_wrong() -> None:
    m = measurement_from_row(raw_row() | {"nonfinite": True, "max_abs_error": None})
    assert m.status == "wrong"
    assert "NaN" in (m.error or "")


def test_errors_and_oom_are_kept() -> None:
    failed = measurement_from_row(raw_row(shape="sd15-512"))
    assert failed.status == "error"
    assert failed.error == "AssertionError: headdim should be in [64, 96, 128]."
    assert failed.stats is None
    oom = measurement_from_row(
        {
            "backend": "sdpa",
            "shape": "video-long",
            "dtype": "fp16",
            "status": "oom",
            "error": "OutOfMemoryError: CUDA out of memory",
        }
    )
    assert oom.status == "oom"
    empty = measurement_from_row(raw_row() | {"times_ms": []})
    assert (empty.status, empty.error) == ("error", "no timings were recorded")


def test_speedups_are_over_sdpa_at_the_same_shape_and_dtype() -> None:
    rows = [
        measurement_from_row(raw_row("sdpa")),
        measurement_from_row(raw_row()),
        measurement_from_row(raw_row(shape="sd15-512")),
    ]
    sdpa, sage, failed = with_speedups(rows)
    assert sdpa.speedup == pytest.approx(1.0)
    assert sage.speedup == pytest.approx(sdpa.stats.median_ms / sage.stats.median_ms)  # type: ignore[union-attr]
    assert failed.speedup is None
    alone = with_speedups([measurement_from_row(raw_row())])[0]
    assert alone.speedup is None


# --- building a run from the module's document ------------------------------------------


def test_build_run_from_the_recorded_h100_document() -> None:
    gpu = GpuReport("nvml", "detected", (GpuInfo(0, H100_NAME, "9.0"),), "580.159.04", "13.0")
    run = build_run(RAW, Path("/srv/comfy"), gpu, created_at="2026-11-23T09:37:00.000000+00:00")
    assert run.device.name == H100_NAME
    assert (run.device.cc, run.device.driver_version, run.device.cuda_driver_version) == (
        "9.0",
        "580.159.04",
        "13.0",
    )
    assert run.torch.version == "2.11.0+cu130"
    assert run.packages["sageattention"] == "1.0.6"
    assert run.backend("sageattention").label == "SageAttention 1.0.6"
    assert run.backend("sageattn3").available is False
    assert len(run.measurements) == 5 * 2 * 3
    statuses = {(m.backend, m.shape): m.status for m in run.measurements}
    assert statuses[("sageattention", "sd15-512")] == "error"
    # The xformers wheel on that machine imported, but had no CUDA kernels.
    xformers = [m for m in run.measurements if m.backend == "xformers"]
    assert run.backend("xformers").label == "xformers 0.0.35"
    assert {m.status for m in xformers} == {"error"}
    assert "xFormers wasn't build with CUDA support" in (xformers[0].error or "")
    assert all(
        m.status == "ok"
        for m in run.measurements
        if m.shape != "sd15-512" and m.backend != "xformers"
    )
    assert cell(run, "sdpa", "flux-1024", "bf16").speedup == pytest.approx(1.0)
    assert [s.id for s in run.shapes] == [s.id for s in attention_module.GPU_SHAPES]


def test_a_document_of_another_shape_is_a_clear_error() -> None:
    broken = {k: v for k, v in RAW.items() if k != "device"}
    with pytest.raises(StepFailedError, match="cannot read"):
        build_run(broken, Path("/srv/comfy"))


# --- comparison --------------------------------------------------------------------------


def test_the_same_numbers_change_nothing(h100_run: BenchmarkRun) -> None:
    comparison = compare_runs(h100_run, h100_run)
    assert comparison.regressions == []
    assert set(comparison.counts()) == {"unchanged"}
    assert comparison.notes == []


@pytest.mark.parametrize(("factor", "verdict"), [
    (1.11, "slower"), (1.09, "unchanged"), (0.95, "unchanged"), (0.85, "faster"),
])  # fmt: skip
def test_the_ten_percent_threshold(h100_run: BenchmarkRun, factor: float, verdict: str) -> None:
    later = scaled(h100_run, factor, backend="sageattention", shape="flux-1024")
    comparison = compare_runs(later, h100_run)
    changed = {(c.backend, c.shape): c.verdict for c in comparison.changes}
    assert changed[("sageattention", "flux-1024")] == verdict
    assert changed[("sdpa", "flux-1024")] == "unchanged"
    assert len(comparison.regressions) == (2 if verdict == "slower" else 0)  # fp16 and bf16
    assert REGRESSION_THRESHOLD == 0.10


def test_a_custom_threshold(h100_run: BenchmarkRun) -> None:
    later = scaled(h100_run, 1.15)
    assert compare_runs(later, h100_run, threshold=0.2).regressions == []
    assert len(compare_runs(later, h100_run, threshold=0.1).regressions) == 18  # all that ran


def test_new_and_removed_backends_are_not_regressions(h100_run: BenchmarkRun) -> None:
    without_sage = h100_run.model_copy(
        update={"measurements": [m for m in h100_run.measurements if m.backend != "sageattention"]}
    )
    added = compare_runs(h100_run, without_sage)
    removed = compare_runs(without_sage, h100_run)
    assert added.counts() == {"unchanged": 20, "new": 10}
    assert removed.counts() == {"unchanged": 20, "removed": 10}
    assert added.regressions == removed.regressions == []
    gone = next(c for c in removed.changes if c.verdict == "removed" and c.shape == "sdxl-1024")
    assert gone.current_ms is None and gone.previous_ms is not None


def test_a_cell_that_stops_working_is_a_regression(h100_run: BenchmarkRun) -> None:
    target = cell(h100_run, "sageattention", "sdxl-1024", "fp16")
    wrong = target.model_copy(update={"status": "wrong", "error": "max abs error 0.5"})
    later = h100_run.model_copy(
        update={"measurements": [wrong if m is target else m for m in h100_run.measurements]}
    )
    broken = compare_runs(later, h100_run)
    assert [(c.backend, c.shape, c.dtype, c.verdict) for c in broken.regressions] == [
        ("sageattention", "sdxl-1024", "fp16", "broken")
    ]
    fixed = compare_runs(h100_run, later)
    assert fixed.counts()["fixed"] == 1
    assert fixed.regressions == []


def test_cells_that_failed_both_times_are_unchanged(h100_run: BenchmarkRun) -> None:
    comparison = compare_runs(h100_run, h100_run)
    sd15 = next(
        c
        for c in comparison.changes
        if (c.backend, c.shape, c.dtype) == ("sageattention", "sd15-512", "fp16")
    )
    assert sd15.verdict == "unchanged"
    assert (sd15.previous_status, sd15.current_status) == ("error", "error")


def test_notes_say_when_runs_are_not_comparable(h100_run: BenchmarkRun) -> None:
    other = h100_run.model_copy(
        update={
            "device": h100_run.device.model_copy(
                update={"name": "NVIDIA GeForce RTX 4090", "driver_version": "570.86"}
            ),
            "torch": h100_run.torch.model_copy(update={"version": "2.9.1+cu128"}),
            "packages": {**h100_run.packages, "sageattention": None, "xformers": None},
        }
    )
    notes = compare_runs(h100_run, other).notes
    assert any("NVIDIA GeForce RTX 4090" in n and "not comparable" in n for n in notes)
    assert "torch changed: 2.9.1+cu128 → 2.11.0+cu130" in notes
    assert "sageattention changed: absent → 1.0.6" in notes
    assert "xformers changed: absent → 0.0.35" in notes
    assert "driver changed: 570.86 → 580.159.04" in notes


# --- headline ----------------------------------------------------------------------------


def test_headline_of_the_h100_run(h100_run: BenchmarkRun) -> None:
    assert headline(h100_run) == (
        "SageAttention 1.0.6: 0.56x SDPA at SDXL shapes, slower than SDPA "
        "(fp16, NVIDIA H100 80GB HBM3, 2026-11-23)"
    )


def test_headline_of_a_faster_kernel(h100_run: BenchmarkRun) -> None:
    faster = scaled(h100_run, 0.25, backend="sageattention")
    assert headline(faster) == (
        "SageAttention 1.0.6: 2.2x SDPA at SDXL shapes (fp16, NVIDIA H100 80GB HBM3, 2026-11-23)"
    )


def test_headline_picks_the_best_backend(h100_run: BenchmarkRun) -> None:
    # As if the xformers wheel had CUDA kernels: SDPA's numbers, twice as fast.
    working = [
        m.model_copy(update={"backend": "xformers"}) if m.backend == "sdpa" else m
        for m in h100_run.measurements
        if m.backend != "xformers"
    ]
    both = scaled(
        h100_run.model_copy(
            update={
                "measurements": [
                    *working,
                    *(m for m in h100_run.measurements if m.backend == "sdpa"),
                ]
            }
        ),
        0.5,
        backend="xformers",
    )
    assert (headline(both) or "").startswith("xformers 0.0.35: 2.0x SDPA at SDXL shapes")
    assert (headline(h100_run) or "").startswith("SageAttention")  # a failing one never wins


def test_headline_without_other_backends_and_with_a_wrong_one(h100_run: BenchmarkRun) -> None:
    sdpa_only = h100_run.model_copy(
        update={"measurements": [m for m in h100_run.measurements if m.backend == "sdpa"]}
    )
    assert (headline(sdpa_only) or "").startswith("torch SDPA only: 0.11 ms per call at SDXL")
    target = cell(h100_run, "sageattention", "flux-1024", "bf16")
    wrong = h100_run.model_copy(
        update={
            "measurements": [
                m.model_copy(update={"status": "wrong"}) if m is target else m
                for m in h100_run.measurements
            ]
        }
    )
    assert (headline(wrong) or "").endswith("; WRONG results from SageAttention 1.0.6")


def test_headline_of_a_cpu_run_and_of_an_empty_one(h100_run: BenchmarkRun) -> None:
    cpu = h100_run.model_copy(
        update={"device": h100_run.device.model_copy(update={"kind": "cpu", "name": "x86_64"})}
    )
    assert headline(cpu) == "CPU test run only (2026-11-23): nothing measured on a GPU"
    assert headline(h100_run.model_copy(update={"measurements": []})) is None


def test_latest_headline_reads_the_newest_readable_run(
    tmp_path: Path, h100_run: BenchmarkRun
) -> None:
    assert latest_headline(tmp_path) is None
    save_run(tmp_path, h100_run)
    newer = scaled(
        h100_run, 0.25, backend="sageattention", created_at="2026-11-24T08:00:00.000000+00:00"
    )
    save_run(tmp_path, newer)
    assert (latest_headline(tmp_path) or "").startswith("SageAttention 1.0.6: 2.2x")
    (benchmarks_dir(tmp_path) / "2026-11-25T00-00-00.000000Z.json").write_text("{not json")
    assert (latest_headline(tmp_path) or "").startswith("SageAttention 1.0.6: 2.2x")


# --- storage -----------------------------------------------------------------------------


def test_save_and_load_round_trip(tmp_path: Path, h100_run: BenchmarkRun) -> None:
    path = save_run(tmp_path, h100_run)
    assert path == tmp_path / ".comfy-install" / "benchmarks" / "2026-11-23T09-57-15.999840Z.json"
    assert load_run(path) == h100_run
    assert json.loads(path.read_text())["measurements"][0]["backend"] == "sdpa"


def test_file_names_sort_in_time_order_and_latest_run_can_look_back(
    tmp_path: Path,
    h100_run: BenchmarkRun,
) -> None:
    stamps = [
        "2026-11-23T09:37:57.505160+00:00",
        "2026-11-23T10:00:00.000001+00:00",
        "2026-12-01T00:00:00+01:00",
    ]
    for stamp in reversed(stamps):
        save_run(tmp_path, h100_run.model_copy(update={"created_at": stamp}))
    assert [p.name for p in saved_runs(tmp_path)] == sorted(run_file_name(s) for s in stamps)
    newest = latest_run(tmp_path)
    assert newest is not None and newest[1].created_at == stamps[2]
    before = latest_run(tmp_path, before=stamps[2])
    assert before is not None and before[1].created_at == stamps[1]
    assert latest_run(tmp_path, before=stamps[0]) is None


def test_load_run_refuses_other_files(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot be read"):
        load_run(tmp_path / "missing.json")
    other = tmp_path / "other.json"
    other.write_text('{"hello": 1}')
    with pytest.raises(UsageError, match="not a benchmark run"):
        load_run(other)


# --- report ------------------------------------------------------------------------------


def render(outcome: BenchmarkOutcome, width: int = 100) -> str:
    stream = io.StringIO()
    render_report(outcome, Console(file=stream, width=width, no_color=True, highlight=False))
    return stream.getvalue()


def test_report_of_the_h100_run(h100_run: BenchmarkRun) -> None:
    text = render(BenchmarkOutcome(run=h100_run, saved_to=Path("/x/run.json")), width=80)
    assert (
        "Attention benchmark on NVIDIA H100 80GB HBM3 (cc 9.0, 79 GiB, driver 580.159.04)" in text
    )
    assert "torch 2.11.0+cu130 (CUDA 13.0)" in text
    assert "SageAttention 1.0.6" in text and "xformers 0.0.35" in text
    rows = [line for line in text.splitlines() if " fp16 " in line or " bf16 " in line]
    assert len(rows) == 30 and not any("…" in line for line in rows)  # fits 80 columns
    assert (
        "xformers 0.0.35 error: NotImplementedError: No operator found for "
        "`memory_efficient_attention_forward` with inputs: … xFormers wasn't build with "
        "CUDA support (at every shape and dtype)"
    ) in flat(text)
    sdxl = next(line for line in text.splitlines() if line.lstrip().startswith("sdxl-1024 "))
    assert sdxl.split() == ["sdxl-1024", "fp16", "SDPA", "0.185", "0.0010", "1.00", "10", "0"]
    assert (
        "SageAttention 1.0.6 error: AssertionError: headdim should be in [64, 96, 128]. "
        "(sd15-512 fp16, sd15-512 bf16)"
    ) in flat(text)
    assert "1×40×32760×128" in text
    assert "Headline: SageAttention 1.0.6: 0.56x SDPA at SDXL shapes" in flat(text)
    assert "Saved to /x/run.json" in text


def test_report_flags_wrong_cells(h100_run: BenchmarkRun) -> None:
    target = cell(h100_run, "sageattention", "flux-1024", "bf16")
    wrong = h100_run.model_copy(
        update={
            "measurements": [
                m.model_copy(update={"status": "wrong", "error": "max abs error 0.5 vs SDPA"})
                if m is target
                else m
                for m in h100_run.measurements
            ]
        }
    )
    text = render(BenchmarkOutcome(run=wrong))
    assert "WRONG" in next(line for line in text.splitlines() if "0.790" in line)
    assert "SageAttention 1.0.6 WRONG: max abs error 0.5 vs SDPA (flux-1024 bf16)" in text


def test_report_of_a_comparison(h100_run: BenchmarkRun) -> None:
    later = scaled(
        h100_run,
        1.5,
        backend="sageattention",
        shape="flux-1024",
        created_at="2026-11-24T09:00:00+00:00",
    )
    comparison = compare_runs(later, h100_run, previous_path=Path("/x/old.json"))
    text = render(BenchmarkOutcome(run=later, comparison=comparison))
    assert "Changes since the run of 2026-11-23 09:57 UTC (threshold 10%)" in text
    row = next(line for line in text.splitlines() if "flux-1024" in line and "+50%" in line)
    assert "SageAttention" in row and "slower" in row
    assert "2 regression(s) against /x/old.json (2 slower, 28 unchanged)" in flat(text)


def test_report_when_nothing_was_measured() -> None:
    text = render(BenchmarkOutcome(run=None, reason="torch 2.9.1+cpu sees no CUDA GPU"))
    assert "Nothing measured: torch 2.9.1+cpu sees no CUDA GPU" in text


def test_outcome_data_is_json(h100_run: BenchmarkRun) -> None:
    later = scaled(h100_run, 2.0, backend="sdpa", shape="sdxl-1024")
    outcome = BenchmarkOutcome(
        run=later, saved_to=Path("/x/new.json"), comparison=compare_runs(later, h100_run)
    )
    data = json.loads(json.dumps(outcome.as_data()))
    assert data["measured"] is True
    assert data["headline"].startswith("SageAttention 1.0.6:")
    assert data["run"]["device"]["name"] == H100_NAME
    assert data["comparison"]["regressions"] == 2
    assert data["comparison"]["counts"] == {"slower": 2, "unchanged": 28}
    assert data["saved_to"] == "/x/new.json"


# --- options and the module's config -----------------------------------------------------


def test_options_split_lists_and_imply_flags(tmp_path: Path) -> None:
    options = validate_options(
        BenchmarkOptions(
            install_dir=tmp_path,
            shapes=("sdxl-1024, flux-1024",),
            backends=("sdpa", "xformers"),
            workflow=tmp_path / "w.json",
            baseline=tmp_path / "b.json",
        )
    )
    assert options.shapes == ("sdxl-1024", "flux-1024")
    assert options.backends == ("sdpa", "xformers")
    assert options.comfyui and options.compare
    config = module_config(options)
    assert [s["id"] for s in config["shapes"]] == ["sdxl-1024", "flux-1024"]
    assert config["shapes"][1] == {
        "id": "flux-1024",
        "model": "Flux",
        "label": "joint attention at 1024², 512 text tokens",
        "batch": 1,
        "seq": 4608,
        "heads": 24,
        "head_dim": 128,
    }
    assert module_config(validate_options(BenchmarkOptions(install_dir=tmp_path)))["shapes"] == []


@pytest.mark.parametrize(("change", "message"), [
    ({"shapes": ("sdxl-2048",)}, "Unknown shape sdxl-2048"),
    ({"backends": ("flash-attn",)}, "Unknown backend flash-attn"),
    ({"dtypes": ("fp8",)}, "Unknown dtype fp8"),
    ({"iterations": 0}, "--iterations"),
    ({"budget_s": 0.0}, "--budget"),
    ({"threshold": 0.0}, "--threshold"),
])  # fmt: skip
def test_bad_options(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        validate_options(BenchmarkOptions(install_dir=tmp_path, **change))


def test_the_shapes_are_comfyuis() -> None:
    shapes = {s.id: (s.batch, s.heads, s.seq, s.head_dim) for s in attention_module.GPU_SHAPES}
    assert shapes == {
        "sd15-512": (2, 8, 4096, 40),
        "sdxl-1024": (2, 10, 4096, 64),
        "sdxl-1024-low": (2, 20, 1024, 64),
        "flux-1024": (1, 24, 4608, 128),
        "video-long": (1, 40, 32760, 128),
    }


# --- workflows ---------------------------------------------------------------------------

API_WORKFLOW = {
    "3": {"class_type": "KSampler", "inputs": {"seed": 42, "steps": 20, "model": ["4", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl.safetensors"}},
    "9": {"class_type": "SamplerCustom", "inputs": {"noise_seed": 7, "add_noise": True}},
    "10": {"class_type": "Primitive", "inputs": {"seed": True}},
}


def test_load_workflow(tmp_path: Path) -> None:
    api = tmp_path / "api.json"
    api.write_text(json.dumps(API_WORKFLOW))
    assert load_workflow(api) == API_WORKFLOW
    ui = tmp_path / "ui.json"
    ui.write_text(json.dumps({"nodes": [], "links": [], "version": 0.4}))
    with pytest.raises(UsageError, match="UI format"):
        load_workflow(ui)
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(UsageError, match="not valid JSON"):
        load_workflow(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(UsageError, match="not an API-format"):
        load_workflow(bad)


def test_bump_seeds_changes_integer_seeds_only() -> None:
    bumped = bump_seeds(API_WORKFLOW)
    assert bumped["3"]["inputs"] == {"seed": 43, "steps": 20, "model": ["4", 0]}
    assert bumped["9"]["inputs"]["noise_seed"] == 8
    assert bumped["10"]["inputs"]["seed"] is True
    assert API_WORKFLOW["3"]["inputs"]["seed"] == 42


class FakeComfyUI(BaseHTTPRequestHandler):
    """POST /prompt and GET /history/<id> as ComfyUI answers them."""

    history_polls_before_done = 2
    status: ClassVar[dict[str, Any]] = {"status_str": "success", "completed": True, "messages": []}
    refuse: bool = False
    polls = 0

    def _send(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.refuse:
            self._send(
                400,
                {
                    "error": {"message": "Prompt outputs failed validation"},
                    "node_errors": {"4": {"errors": []}},
                },
            )
        else:
            self._send(200, {"prompt_id": "p-1", "number": 0, "node_errors": {}})

    def do_GET(self) -> None:
        type(self).polls += 1
        done = type(self).polls > self.history_polls_before_done
        self._send(200, {"p-1": {"status": self.status, "outputs": {}}} if done else {})

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def fake_comfyui() -> Iterator[tuple[str, type[FakeComfyUI]]]:
    handler = type("Handler", (FakeComfyUI,), {"polls": 0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    # socketserver's 0.5 s poll made each `shutdown()` below wait up to half a second.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": POLL_INTERVAL}, daemon=True
    )
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def test_run_workflow_waits_for_the_history(fake_comfyui: tuple[str, Any]) -> None:
    url, handler = fake_comfyui
    seconds = run_workflow(url, API_WORKFLOW, timeout=10)
    assert seconds > 0
    assert handler.polls == 3


def test_run_workflow_reports_a_failed_node(fake_comfyui: tuple[str, Any]) -> None:
    url, handler = fake_comfyui
    handler.status = {
        "status_str": "error",
        "completed": False,
        "messages": [
            [
                "execution_error",
                {
                    "node_type": "CheckpointLoaderSimple",
                    "exception_message": "sdxl.safetensors not found\n",
                },
            ]
        ],
    }
    with pytest.raises(
        StepFailedError, match=r"CheckpointLoaderSimple: sdxl\.safetensors not found"
    ):
        run_workflow(url, API_WORKFLOW, timeout=10)


def test_run_workflow_reports_a_refused_prompt(fake_comfyui: tuple[str, Any]) -> None:
    url, handler = fake_comfyui
    handler.refuse = True
    with pytest.raises(StepFailedError, match=r"failed validation \(nodes 4\)"):
        run_workflow(url, API_WORKFLOW, timeout=10)


def test_run_workflow_when_comfyui_is_gone() -> None:
    with pytest.raises(StepFailedError, match="stopped answering"):
        run_workflow("http://127.0.0.1:9", API_WORKFLOW, timeout=5)


# --- the command, against a recorded venv ------------------------------------------------

FAKE_PYTHON = """#!{python}
import json, shutil, sys
args = sys.argv[2:]
config, output = args[args.index("--config") + 1], args[args.index("--output") + 1]
shutil.copy(config, {seen!r})
print("progress: sdxl-1024 fp16 sdpa: 0.183 ms, max error 0", file=sys.stderr)
print("some warning from torch")
if {exit_code}:
    sys.exit({exit_code})
shutil.copy({document!r}, output)
"""


@pytest.fixture
def make_install(tmp_path: Path) -> Callable[..., Path]:
    """An install dir whose venv 'python' writes the given document as the module's result."""

    def make(document: dict[str, Any] = RAW, exit_code: int = 0, name: str = "inst") -> Path:
        install = tmp_path / name
        python = install / "venv" / "bin" / "python"
        python.parent.mkdir(parents=True)
        recorded = tmp_path / f"{name}-document.json"
        recorded.write_text(json.dumps(document))
        python.write_text(
            FAKE_PYTHON.format(
                python=sys.executable,
                document=str(recorded),
                seen=str(install / "config-seen.json"),
                exit_code=exit_code,
            )
        )
        python.chmod(0o755)
        return install

    return make


def invoke(*args: str | os.PathLike[str]) -> Any:
    app = typer.Typer()
    app.command()(benchmark)
    return CliRunner().invoke(app, [str(a) for a in args])


def no_gpu_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    gpu = GpuReport("nvml", "detected", (GpuInfo(0, H100_NAME, "9.0"),), "580.159.04", "13.0")
    monkeypatch.setattr("installer.edges.gpu.detect_gpus", lambda: gpu)


def test_command_measures_saves_and_reports(
    make_install: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    no_gpu_detection(monkeypatch)
    install = make_install()
    result = invoke(install, "--shapes", "sdxl-1024,flux-1024", "--iterations", "7")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "  sdxl-1024 fp16 sdpa: 0.183 ms, max error 0" in result.stderr
    assert "some warning from torch" not in result.stderr  # log only, without -v
    assert "Headline: SageAttention 1.0.6: 0.56x SDPA" in flat(result.stderr)
    seen = json.loads((install / "config-seen.json").read_text())
    assert [s["id"] for s in seen["shapes"]] == ["sdxl-1024", "flux-1024"]
    assert (seen["iterations"], seen["warmup"], seen["allow_cpu"]) == (7, 5, False)
    [saved] = saved_runs(install)
    assert load_run(saved).device.driver_version == "580.159.04"
    logs = list((install / ".comfy-install" / "logs").glob("benchmark-*.log"))
    assert logs and "some warning from torch" in logs[0].read_text()


def test_command_json_envelope(
    make_install: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    no_gpu_detection(monkeypatch)
    install = make_install()
    result = invoke(install, "--json", "--no-save")
    assert result.exit_code == 0, result.output
    envelope = json.loads(result.stdout)
    assert envelope["command"] == ["benchmark", str(install)]
    assert (envelope["status"], envelope["exit_code"], envelope["errors"]) == ("ok", 0, [])
    data = envelope["data"]
    assert data["measured"] is True and data["saved_to"] is None
    assert len(data["run"]["measurements"]) == 30
    assert saved_runs(install) == []


def test_compare_and_fail_on_regression(
    make_install: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_gpu_detection(monkeypatch)
    install = make_install()
    previous = scaled(load_run(DATA / "h100-run.json"), 0.1, created_at="2026-11-01T00:00:00+00:00")
    save_run(install, previous)
    result = invoke(install, "--compare")
    assert result.exit_code == 0, result.output
    assert "18 regression(s) against" in flat(result.stderr)
    result = invoke(install, "--fail-on-regression", "--baseline", saved_runs(install)[0], "--json")
    assert result.exit_code == ExitCode.REGRESSION == 5
    envelope = json.loads(result.stdout)
    assert envelope["status"] == "error" and envelope["exit_code"] == 5
    assert envelope["errors"][0]["code"] == RegressionError.code
    assert envelope["errors"][0]["message"].startswith("18 regression(s) since the previous run")
    assert envelope["data"]["comparison"]["regressions"] == 18


def test_compare_without_an_earlier_run(
    make_install: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    no_gpu_detection(monkeypatch)
    result = invoke(make_install(), "--fail-on-regression")
    assert result.exit_code == 0, result.output
    assert "no earlier saved run to compare with" in flat(result.stderr)


def test_no_gpu_measures_nothing_and_exits_0(make_install: Callable[..., Path]) -> None:
    reason = "torch 2.9.1+cpu in this venv sees no CUDA GPU (CUDA build: none, a CPU-only torch)"
    install = make_install({**RAW, "measured": False, "reason": reason, "results": []})
    result = invoke(install, "--json")
    assert result.exit_code == 0, result.output
    assert f"No GPU to benchmark: {reason}." in flat(result.stderr)
    data = json.loads(result.stdout)["data"]
    assert (data["measured"], data["reason"], data["run"]) == (False, reason, None)
    assert saved_runs(install) == []


def test_a_crash_in_the_venv_is_a_step_failure(make_install: Callable[..., Path]) -> None:
    result = invoke(make_install(exit_code=3))
    assert result.exit_code == 1
    assert "The attention benchmark failed in the venv (exit code 3)" in flat(result.stderr)
    assert "some warning from torch" in result.stderr


def test_usage_errors(tmp_path: Path, make_install: Callable[..., Path]) -> None:
    result = invoke(tmp_path / "nothing")
    assert result.exit_code == 2
    assert "holds no venv to benchmark" in result.stderr
    install = make_install()
    result = invoke(install, "--comfyui")
    assert result.exit_code == 2
    assert "ComfyUI cannot be timed" in result.stderr
    result = invoke(install, "--shapes", "sdxl-4096", "--json")
    assert result.exit_code == 2
    assert json.loads(result.stdout)["errors"][0]["code"] == "usage"
