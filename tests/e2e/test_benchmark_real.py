"""`comfy-install benchmark` on the real install: real torch, real ComfyUI, on the CPU.

Uses the session's real install of ComfyUI v0.3.77 with the registry's CPU
torch (`real_install`). The benchmark runs the shipped module in that venv
with torch's own SDPA on the tiny CPU shapes (`--allow-cpu`, the hidden test
option), saves the run, compares it with a doctored earlier run, and times a
real ComfyUI start-up and a small workflow that needs no model. Without
`--allow-cpu` it must say there is no GPU and exit 0. Marked `real`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from installer.benchmark import load_run, save_run, saved_runs, timing_stats, with_speedups
from installer.cli_benchmark import benchmark

pytestmark = pytest.mark.real

WORKFLOW = {
    "1": {
        "class_type": "EmptyImage",
        "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0},
    },
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "bench"}},
}


def invoke(*args: str | os.PathLike[str]) -> Any:
    app = typer.Typer()
    app.command()(benchmark)
    return CliRunner().invoke(app, [str(a) for a in args])


def measured(install: Path, *extra: str) -> dict[str, Any]:
    result = invoke(
        install,
        "--allow-cpu",
        "--json",
        "--iterations",
        "5",
        "--warmup",
        "1",
        "--budget",
        "0.5",
        *extra,
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["data"]


def test_without_a_gpu_nothing_is_measured(real_install: Path) -> None:
    result = invoke(real_install, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)["data"]
    assert data["measured"] is False
    assert "sees no CUDA GPU" in data["reason"]
    assert "No GPU to benchmark" in result.stderr


def test_cpu_run_measures_sdpa_and_saves_it(real_install: Path) -> None:
    data = measured(real_install)
    run = data["run"]
    assert run["device"]["kind"] == "cpu"
    assert run["settings"]["timer"] == "perf_counter"
    assert run["torch"]["version"].startswith("2.9.1")
    sdpa = [m for m in run["measurements"] if m["backend"] == "sdpa"]
    assert {(m["shape"], m["dtype"]) for m in sdpa} == {
        (shape, dtype) for shape in ("tiny-unet", "tiny-dit") for dtype in ("fp16", "bf16")
    }
    for row in sdpa:
        assert row["status"] == "ok", row
        assert row["stats"]["median_ms"] > 0
        assert all(t > 0 for t in row["times_ms"])
        assert row["max_abs_error"] == 0
    saved = Path(data["saved_to"])
    assert saved.is_file() and saved.parent == real_install / ".comfy-install" / "benchmarks"
    assert load_run(saved).measurements[0].backend == "sdpa"
    assert data["headline"].startswith("CPU test run only")


def test_compare_flags_a_slower_run_and_fails_on_it(real_install: Path) -> None:
    newest = load_run(saved_runs(real_install)[-1]) if saved_runs(real_install) else None
    if newest is None:
        newest = load_run(Path(measured(real_install)["saved_to"]))
    # 1000x, not 10x: CPU timings on a busy machine swing by more than 10x.
    faster = with_speedups(
        [
            m.model_copy(
                update={
                    "times_ms": [t / 1000 for t in m.times_ms],
                    "stats": timing_stats([t / 1000 for t in m.times_ms]),
                }
            )
            if m.times_ms
            else m
            for m in newest.measurements
        ]
    )
    doctored = newest.model_copy(
        update={"measurements": faster, "created_at": "2026-01-01T00:00:00+00:00"}
    )
    baseline = save_run(real_install, doctored)

    data = measured(real_install, "--baseline", str(baseline))
    comparison = data["comparison"]
    assert comparison["regressions"] == 4
    assert {c["verdict"] for c in comparison["changes"]} == {"slower"}

    result = invoke(
        real_install,
        "--allow-cpu",
        "--iterations",
        "5",
        "--warmup",
        "1",
        "--budget",
        "0.5",
        "--baseline",
        str(baseline),
        "--fail-on-regression",
    )
    assert result.exit_code == 5, result.output
    assert "4 regression(s) since the previous run" in " ".join(result.stderr.split())


def test_comfyui_startup_and_a_workflow_are_timed(real_install: Path, tmp_path: Path) -> None:
    workflow = tmp_path / "empty-image.json"
    workflow.write_text(json.dumps(WORKFLOW))
    data = measured(
        real_install,
        "--workflow",
        str(workflow),
        "--no-save",
        "--shapes",
        "tiny-unet",
        "--dtypes",
        "bf16",
    )
    [timing] = data["run"]["comfyui"]
    assert timing["variant"] == "sdpa"
    assert timing["flags"] == ["--cpu", "--use-pytorch-cross-attention"]
    assert timing["error"] is None, timing
    assert timing["startup_s"] > 0
    assert timing["workflow_s"] > 0 and timing["workflow_warm_s"] > 0
    assert data["run"]["workflow"] == str(workflow)
    assert not (real_install / ".comfy-install" / "comfyui.pid").exists()
