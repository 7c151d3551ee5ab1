"""`tune --workflow` for real (issue 30): the real ComfyUI v0.33.0 on the CPU, three variants.

A DIR of its own over the shared real install (its venv and ComfyUI linked, its state copied:
an install made for the CPU, so every variant gets `--cpu`). The workflow is ComfyUI's own
nodes, cheap on a CPU and seeded: an empty image, `ImageAddNoise` with a seed, `SaveImage`.
`tune --workflow-only --levers nodyn --runs 1`: stock, tuned
and tuned+nodyn each started fresh, levers.json written with their figures, and `launch
--print-env` showing the lever's and the verdict's figures, its decision the one the figures
call for. A workflow refused in stock, a spent budget and failing levers are checked against
a ComfyUI stand-in (tests/integration/test_tune_workflow_standin.py), which saves the suite a
ComfyUI start each. On a CPU the figures are whatever they are: the test checks their
structure and the decisions they lead to, never a speed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from installer.plan.levers import END_TO_END_NOISE, LEVER_MARGIN
from support.cli import cli_path
from support.real import REAL_ENV

pytestmark = pytest.mark.real

NOISE = {
    "1": {"class_type": "EmptyImage",
          "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
    "2": {"class_type": "ImageAddNoise", "inputs": {"image": ["1", 0], "seed": 7, "strength": 0.5}},
    "3": {"class_type": "SaveImage",
          "inputs": {"images": ["2", 0], "filename_prefix": "tunewf-check"}},
}  # fmt: skip


def tune(install: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [cli_path(), "tune", str(install), "--workflow-only", *args],
        env=REAL_ENV, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


def test_tune_checks_stock_tuned_and_a_lever_on_a_real_comfyui(
    real_install: Path, tmp_path: Path
) -> None:
    install = tmp_path / "inst"
    state = install / ".comfy-install"
    state.mkdir(parents=True)
    for part in ("venv", "ComfyUI"):
        (install / part).symlink_to(real_install / part, target_is_directory=True)
    shutil.copy2(real_install / ".comfy-install" / "state.json", state / "state.json")
    levers_file = state / "levers.json"

    workflow = tmp_path / "noise.json"
    workflow.write_text(json.dumps(NOISE))
    done = tune(install, "--workflow", str(workflow), "--levers", "nodyn", "--runs", "1", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    check = json.loads(done.stdout)["data"]["workflow_check"]
    [result] = check["result"]["workflows"]
    variants = {v["variant"]: v for v in result["variants"]}
    # The second phase (the launch as decided) runs only where nodyn went on: on the CPU
    # that is the noise of two runs, so both ways are checked.
    second = ["launch"] if "launch" in variants else []
    assert list(variants) == ["stock", "tuned", "tuned+nodyn", *second]
    for found in variants.values():
        assert found["status"] == "ok", found
        assert [r["seed"] for r in found["runs"]] == [7, 8]  # cold, then seed + 1
        assert found["warm_s"] > 0 and found["cold_s"] > 0
    assert (
        "--cpu" in variants["stock"]["command"]
        and "--disable-dynamic-vram" not in (variants["tuned"]["command"])
    )
    assert "--disable-dynamic-vram" in variants["tuned+nodyn"]["command"]
    # ImageAddNoise is deterministic per seed: the same image as stock's, a new seed moves it.
    for name in ("tuned", "tuned+nodyn", *second):
        distance = variants[name]["distance"]
        assert distance["ok"] is True and distance["relative"] == 0.0, distance
        assert distance["seed_change"] > 0 and distance["seeds"] == 2
    assert check["result"]["device"] == "cpu"

    record = json.loads(levers_file.read_text())["gpus"]["cpu"]
    verdict = record["tuned_vs_stock"]["workflows"]["noise"]
    assert verdict["stock_s"] == round(variants["stock"]["warm_s"], 4)
    assert verdict["tuned_s"] == round(variants["tuned"]["warm_s"], 4)
    assert record["tuned_vs_stock"]["routed"] is False  # no GPU: nothing was routed
    lever = record["levers"]["nodyn"]
    assert lever["args"] == ["--disable-dynamic-vram"]
    figure = lever["workflows"]["noise"]
    assert figure["baseline_s"] == verdict["tuned_s"] and figure["distance_ok"] is True
    speedup = figure["baseline_s"] / figure["s"]
    assert bool(second) == (speedup >= LEVER_MARGIN)
    assert record["tuned_vs_stock"]["launch_levers"] == (["nodyn"] if second else [])
    final_on = speedup >= LEVER_MARGIN
    if second:
        assert "--disable-dynamic-vram" in variants["launch"]["command"]
        assert verdict["launch_s"] == round(variants["launch"]["warm_s"], 4)
        final_on = verdict["stock_s"] / verdict["launch_s"] >= 1 - END_TO_END_NOISE

    shown = subprocess.run(
        [cli_path(), "launch", str(install), "--print-env", "--json"],
        env=REAL_ENV, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr[-3000:]
    plan: dict[str, Any] = json.loads(shown.stdout)["data"]
    tunings = {t["name"]: t for t in plan["tunings"]}
    nodyn = tunings["lever-nodyn"]
    assert nodyn["status"] == ("on" if final_on else "off"), (speedup, nodyn)
    if second and not final_on:
        assert nodyn["reason"].startswith("the launch with nodyn measured slower than stock")
    else:
        assert (
            f"{speedup:.2f}× on noise ({figure['baseline_s']:.3f} → {figure['s']:.3f} s a prompt"
            in (nodyn["reason"])
        )
    assert ("--disable-dynamic-vram" in plan["argv"]) == (nodyn["status"] == "on")
    end_to_end = [d for d in plan["attention"]["details"] if d.startswith("end to end")]
    assert end_to_end == [
        f"end to end (tune --workflow): {verdict['stock_s'] / verdict['tuned_s']:.2f}× stock on "
        f"noise ({verdict['stock_s']:.3f} → {verdict['tuned_s']:.3f} s a prompt, output distance "
        "0 ok)"
    ]
    assert tunings["attention"]["status"] == "off"  # ComfyUI on the CPU: never routed
    # The outputs went to scratch folders, not into the user's ComfyUI/output.
    assert not list((real_install / "ComfyUI" / "output").glob("tunewf-check*"))
    assert not (state / "comfyui.pid").exists()
