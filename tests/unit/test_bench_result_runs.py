"""The GPU benchmark's merged results compare only within one run (bench/gpu/result_runs.py).

On 2026-12-07 four device calls on one warm H100 merged into one results file; stock SDXL
took 0.0971 s/step in the first run and 0.108 in the third. Before runs were kept apart,
the third run's stock replaced the first's and the first run's tuned variants were shown
against it (tuned 1.21x instead of 1.08x). The functions here are the real ones the
benchmark and the chart run, on results of that shape.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from support.bench_scripts import load_bench_script


def entry(run: str, step: float) -> dict[str, Any]:
    return {"run": run, "summary": {"warm_step_s": {"median": step, "min": step, "max": step}}}


FIRST, THIRD = "2026-12-07T07:57:16+0000", "2026-12-07T08:12:01+0000"


def results(started: str, variants: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "started": started,
        "machine": {"gpu": "NVIDIA H100 80GB HBM3, 580.159.04, 81559 MiB"},
        "workflows": {"sdxl-1024": variants},
    }


def merged() -> dict[str, Any]:
    runs = load_bench_script("result_runs")
    first = results(FIRST, {
        "stock": entry(FIRST, 0.0971), "tuned": entry(FIRST, 0.0898),
        "tuned+nodyn": entry(FIRST, 0.0594),
    })  # fmt: skip
    third = results(THIRD, {"stock": entry(THIRD, 0.108), "tuned+fp16acc": entry(THIRD, 0.09)})
    out: dict[str, Any] = runs.merge(first, third)
    return out


def test_a_variant_measured_again_keeps_the_earlier_run_and_ratios_stay_in_their_run(
    tmp_path: Path,
) -> None:
    runs, bench = load_bench_script("result_runs"), load_bench_script("run_workflows")
    found = merged()
    assert found["workflows"]["sdxl-1024"]["stock"]["run"] == THIRD
    assert [(e["variant"], e["run"]) for e in found["superseded"]["sdxl-1024"]] == [
        ("stock", FIRST)
    ]
    grouped = {run: sorted(v) for _, run, v in runs.groups(found)}
    assert grouped == {FIRST: ["stock", "tuned", "tuned+nodyn"], THIRD: ["stock", "tuned+fp16acc"]}

    table = bench.markdown({**found, "elapsed_s": 1.0})
    rows = {
        (cells[2], cells[3]): cells[5]
        for line in table.splitlines()
        if line.startswith("| sdxl-1024")
        for cells in [[c.strip() for c in line.split("|")]]
    }
    assert rows[("07:57", "tuned")] == "1.08x"  # 0.0971 / 0.0898, not 0.108 / 0.0898
    assert rows[("07:57", "tuned+nodyn")] == "1.63x"
    assert rows[("08:12", "tuned+fp16acc")] == "1.20x"

    # A lever's figure is against tuned of its own run; a run without tuned gives none.
    levers_file = tmp_path / "levers.json"
    bench.write_levers(levers_file, found)
    levers = json.loads(levers_file.read_text())["gpus"]["NVIDIA H100 80GB HBM3"]["levers"]
    assert set(levers) == {"nodyn"}
    figure = levers["nodyn"]["workflows"]["sdxl-1024"]
    assert (figure["baseline_s_per_step"], figure["s_per_step"], figure["measured"]) == (
        0.0898, 0.0594, FIRST,
    )  # fmt: skip

    # The chart draws one panel per run, each against its own stock.
    chart = load_bench_script("chart")
    panels = dict(chart.rows(found))
    assert set(panels) == {"sdxl-1024, run 07:57", "sdxl-1024, run 08:12"}
    speed = {i["variant"]: i["speedup"] for i in panels["sdxl-1024, run 07:57"]}
    assert round(speed["tuned"], 2) == 1.08
    assert "sdxl-1024, run 07:57" in chart.svg(found)


def test_a_results_file_from_before_runs_were_named_is_one_run() -> None:
    runs = load_bench_script("result_runs")
    old = results(FIRST, {"stock": {"summary": {}}, "tuned": {"summary": {}}})
    new = results(THIRD, {"stock": entry(THIRD, 0.108)})
    found = runs.merge(old, new)
    assert [(e["variant"], e["run"]) for e in found["superseded"]["sdxl-1024"]] == [
        ("stock", FIRST)
    ]
    assert [(run, sorted(v)) for _, run, v in runs.groups(found)] == [
        (FIRST, ["stock", "tuned"]), (THIRD, ["stock"]),
    ]  # fmt: skip
    # The same run merged twice (partial writes) supersedes nothing.
    assert "superseded" not in runs.merge(new, new)


def test_comfyuis_error_message_is_kept_without_the_tensors_it_printed() -> None:
    runs = load_bench_script("result_runs")
    message = {
        "prompt_id": "p", "node_id": "3", "node_type": "KSampler",
        "exception_type": "torch._dynamo.exc.BackendCompilerFailed",
        "exception_message": "backend='inductor' raised:\nRuntimeError: mat1 and mat2 must "
        "have the same dtype, but got Float and BFloat16",
        "traceback": [f"  File line {i}\n" for i in range(40)],
        "current_inputs": {"latent_image": ["tensor([[0., 0., ...]])" * 5000]},
        "current_outputs": ["80", "3"],
    }  # fmt: skip
    short = runs.short_error(message)
    assert set(short) == {
        "node_id", "node_type", "exception_type", "exception_message", "traceback",
    }  # fmt: skip
    assert "mat1 and mat2 must have the same dtype" in short["exception_message"]
    assert short["traceback"] == [f"  File line {i}\n" for i in range(32, 40)]
    assert len(json.dumps(short)) < 2000
    assert runs.short_error("timeout") == "timeout"


def test_finish_merges_into_the_previous_file_and_marks_each_entry_with_its_run(
    tmp_path: Path,
) -> None:
    bench = load_bench_script("run_workflows")
    out = tmp_path / "results-gpu.json"
    previous = merged()
    args = argparse.Namespace(
        previous=previous, out=out, levers_out=None, variants="stock", no_markdown=True,
        results_md=tmp_path / "r.md", docs_md=tmp_path / "d.md",
    )  # fmt: skip
    later = "2026-12-07T08:18:59+0000"
    assert bench.finish(args, results(later, {"stock": entry(later, 0.1)}), 5.0, final=True) == 0
    written = json.loads(out.read_text())
    assert [e["run"] for e in written["superseded"]["sdxl-1024"]] == [FIRST, THIRD]
    assert written["runs"][-1] == {"started": later, "variants": "stock"}


def test_merge_results_adds_a_device_file_once_and_regenerates_table_levers_and_chart(
    tmp_path: Path,
) -> None:
    merge = load_bench_script("merge_results")
    committed = tmp_path / "results-gpu.json"
    committed.write_text(json.dumps({**merged(), "elapsed_s": 100.0}))
    later = "2026-12-07T11:20:00+0000"
    device_first = "2026-12-07T11:05:00+0000"
    device = tmp_path / "device.json"
    device.write_text(json.dumps({
        **results(later, {"stock": entry(later, 0.1), "tuned": entry(later, 0.09),
                          "tuned+nodyn": entry(later, 0.06)}),
        "elapsed_s": 40.0,
        # The warm device machine's own earlier run of stock, replaced there by this one.
        "superseded": {"sdxl-1024": [{"variant": "stock", **entry(device_first, 0.11)}]},
    }))  # fmt: skip
    paths = {name: tmp_path / name for name in ("levers.json", "chart.svg", "r.md", "d.md")}
    for path in (paths["r.md"], paths["d.md"]):
        path.write_text("<!-- gpu-workflows:start -->\n<!-- gpu-workflows:end -->\n")
    argv = [
        str(device), "--into", str(committed), "--levers", str(paths["levers.json"]),
        "--chart", str(paths["chart.svg"]), "--results-md", str(paths["r.md"]),
        "--docs-md", str(paths["d.md"]),
    ]  # fmt: skip
    assert merge.main(argv) == 0
    once = json.loads(committed.read_text())
    assert merge.main(argv) == 0  # the same file again: nothing added twice
    found = json.loads(committed.read_text())
    assert found == once
    assert [run["started"] for run in found["runs"]] == [device_first, later]
    assert found["elapsed_s"] == 140.0
    assert [(e["variant"], e["run"]) for e in found["superseded"]["sdxl-1024"]] == [
        ("stock", FIRST), ("stock", THIRD), ("tuned", FIRST), ("tuned+nodyn", FIRST),
        ("stock", device_first),
    ]  # fmt: skip
    table = {line.split("|")[2].strip() for line in paths["d.md"].read_text().splitlines()
             if line.startswith("| sdxl-1024")}  # fmt: skip
    assert table == {"07:57", "08:12", "11:05", "11:20"}
    # The newest run's lever figure is against its own tuned: 0.09 / 0.06.
    levers = json.loads(paths["levers.json"].read_text())["gpus"]["NVIDIA H100 80GB HBM3"]
    assert levers["levers"]["nodyn"]["workflows"]["sdxl-1024"]["speedup"] == 1.5
    assert "sdxl-1024, run 11:20" in paths["chart.svg"].read_text()
    assert "| sdxl-1024 | " in paths["d.md"].read_text()
    assert paths["r.md"].read_text() == paths["d.md"].read_text()

    other = tmp_path / "h200.json"
    other.write_text(json.dumps({
        **results(later, {"stock": entry(later, 0.1)}),
        "machine": {"gpu": "NVIDIA H200, 580.159.04, 143771 MiB"},
    }))  # fmt: skip
    with pytest.raises(SystemExit, match=r"from NVIDIA H200.*own --into file"):
        merge.main(
            [
                str(other),
                "--into",
                str(committed),
                "--no-markdown",
                "--levers",
                str(paths["levers.json"]),
                "--chart",
                str(paths["chart.svg"]),
            ]
        )
    assert json.loads(committed.read_text()) == once


def test_the_attention_column_of_a_compiled_variant_says_its_calls_were_not_counted(
    tmp_path: Path,
) -> None:
    outputs = load_bench_script("outputs")
    counts = tmp_path / "calls.json"
    counts.write_text(json.dumps({"attached": True, "calls": {}, "shapes": {}}))
    assert outputs.attention_calls(counts)[0] == "routed: no calls"
    label, calls = outputs.attention_calls(counts, compiled=True)
    assert label == "routed at trace time (compiled: calls not counted)"
    assert calls == {"calls": {}, "shapes": {}}
    counts.write_text(json.dumps({"attached": True, "calls": {"cudnn": 3}, "shapes": {}}))
    assert outputs.attention_calls(counts, compiled=True)[0] == "routed: cudnn 3"
