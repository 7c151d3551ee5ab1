"""The product working for real: the real ComfyUI v0.33.0 and the registry's torch trio.

Installs the fixture bundle of ComfyUI v0.33.0 with `--gpu none --torch-index
default` (torch 2.11.0, torchvision 0.26.0, torchaudio 2.11.0 from the package
registry; on Linux the registry's torch is the CUDA 13.0 build), then starts it with
`comfy-install launch` on the CPU and waits for `GET /object_info` to answer 200.
Marked `real`: it needs the package registry; with a cold uv cache the CUDA torch
and its CUDA libraries are about 3 GB (`pytest -m "not real"` leaves it out).

The same install also carries `comfy-install benchmark` on the CPU (the hidden
`--allow-cpu`): the shipped module with torch's SDPA on tiny shapes, a saved run,
a comparison with a doctored earlier run, and a real ComfyUI start-up and small
workflow. Without `--allow-cpu` it must say there is no GPU and exit 0. All of it
lives in one file so that pytest-xdist (`--dist loadfile`) runs it on one worker,
one test after another, on one install.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from installer.attention.measure.results import timing_stats, with_speedups
from installer.benchmark.store import load_run, save_run, saved_runs
from installer.cli.benchmark import benchmark
from support.cli import read_state, run, venv_dists
from support.real import REAL_ENV, free_port, real_install_args, shared_install_lock

pytestmark = pytest.mark.real


def test_real_install_has_the_pinned_trio(real_install: Path) -> None:
    dists = venv_dists(real_install)
    assert dists["torch"].startswith("2.11.0")
    assert dists["torchvision"].startswith("0.26.0")
    assert dists["torchaudio"].startswith("2.11.0")
    assert {"comfyui-frontend-package", "comfy-kitchen", "comfy-aimdo", "requests"} <= set(dists)
    state = read_state(real_install)
    assert state["steps"]["verify"]["status"] == "done"
    assert state["steps"]["comfyui"]["outputs"]["ref"] == "v0.33.0"
    # The release tree has no custom_nodes/, which v0.33.0's main.py lists at start-up.
    assert (real_install / "ComfyUI" / "custom_nodes").is_dir()


def test_verify_says_which_comfy_kitchen_back_ends_load(real_install: Path) -> None:
    verify = read_state(real_install)["steps"]["verify"]["outputs"]
    kitchen = verify["comfy_kitchen"]
    assert kitchen["installed"] is True
    assert kitchen["version"] == "0.2.31"
    # The registry's Linux torch is a CUDA 13.0 build, on a machine without a GPU.
    assert verify["torch_cuda"] == kitchen["torch_cuda"] == "13.0"
    assert kitchen["backends"]["cuda"]["available"] is False
    assert kitchen["backends"]["cuda"]["reason"] == "CUDA not available on this system"
    assert kitchen["backends"]["eager"]["available"] is True
    assert kitchen["summary"].startswith("comfy-kitchen 0.2.31: cuda unavailable (CUDA not")


def test_doctor_on_the_real_install_asks_its_venv(real_install: Path) -> None:
    from support.cli import cli_path

    done = subprocess.run(
        [cli_path(), "doctor", str(real_install), "--json"],
        env=REAL_ENV, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(done.stdout)["data"]
    assert data["comfy_kitchen"]["backends"]["cuda"]["available"] is False
    (check,) = [c for c in data["checks"] if c["name"] == "comfy-kitchen"]
    assert check["status"] == "info"
    assert "cuda unavailable (CUDA not available on this system)" in check["detail"]


def test_real_rerun_changes_nothing(
    real_install: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    before = read_state(real_install)
    # Another worker may be re-running the shared install as its fixture: take turns.
    with shared_install_lock(tmp_path_factory, "real"):
        done = run(real_install_args(real_install), REAL_ENV, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    after = read_state(real_install)
    assert {k: v["seq"] for k, v in after["steps"].items()} == {
        k: v["seq"] for k, v in before["steps"].items()
    }
    assert done.stderr.count("up to date") >= 10


def test_real_comfyui_through_comfy_install_launch(real_install: Path) -> None:
    """As a new user would: no ComfyUI arguments; on this GPU-less machine launch adds --cpu.

    The install is `--gpu none` with the registry's torch (a CUDA build on Linux): without
    `--cpu` ComfyUI stops at start-up with "Found no NVIDIA driver on your system".
    """
    from support.cli import cli_path

    port = free_port()
    printed = subprocess.run(
        [cli_path(), "launch", str(real_install), "--port", str(port), "--print-env", "--json"],
        env=REAL_ENV, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert printed.returncode == 0, printed.stderr[-3000:]
    planned = json.loads(printed.stdout)["data"]
    assert planned["argv"].count("--cpu") == 1, planned
    [device] = [t for t in planned["tunings"] if t["name"] == "device"]
    assert (device["status"], device["argument"]) == ("on", "--cpu")
    started = subprocess.run(
        [cli_path(), "launch", str(real_install), "--listen", "127.0.0.1", "--port", str(port),
         "--background", "--json"],
        env=REAL_ENV, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    try:
        assert started.returncode == 0, started.stderr[-3000:]
        assert "device: on --cpu" in started.stderr
        assert "the install was made for the CPU (--gpu none" in started.stderr
        data = json.loads(started.stdout)["data"]
        assert data["seconds_to_ready"] > 0
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/object_info", timeout=10) as r:
            assert r.status == 200
            assert "KSampler" in json.loads(r.read())
    finally:
        stopped = subprocess.run(
            [cli_path(), "stop", str(real_install)],
            env=REAL_ENV,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert stopped.returncode == 0, stopped.stderr
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/object_info", timeout=2)


# --- comfy-install benchmark on the real install (CPU, hidden --allow-cpu) ------------

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


def test_cpu_run_measures_sdpa_times_comfyui_and_a_workflow_and_saves_it(
    real_install: Path, tmp_path: Path
) -> None:
    """One measured run (torch started in the venv once) with a workflow: SDPA's cells, then a
    real ComfyUI start-up and workflow, saved.

    The workflow rides on this run rather than a second measured run of its own (with
    `--no-save --shapes tiny-unet --dtypes bf16`, options the unit tests cover), which cost
    the suite another torch start in the venv and its SDPA measurement for the same evidence.
    """
    workflow = tmp_path / "empty-image.json"
    workflow.write_text(json.dumps(WORKFLOW))
    data = measured(real_install, "--workflow", str(workflow))
    run = data["run"]
    assert run["device"]["kind"] == "cpu"
    assert run["settings"]["timer"] == "perf_counter"
    assert run["torch"]["version"].startswith("2.11.0")
    sdpa = [m for m in run["measurements"] if m["backend"] == "sdpa"]
    assert {(m["shape"], m["dtype"]) for m in sdpa} == {
        (shape, dtype) for shape in ("tiny-unet", "tiny-dit") for dtype in ("fp16", "bf16")
    }
    for row in sdpa:
        assert row["status"] == "ok", row
        assert row["stats"]["median_ms"] > 0
        assert all(t > 0 for t in row["times_ms"])
        # The reference is SDPA's math back end in fp32 (where it fits): a half-precision
        # SDPA call differs from it by rounding only.
        assert 0 <= row["max_abs_error"] < 2e-2, row
    saved = Path(data["saved_to"])
    assert saved.is_file() and saved.parent == real_install / ".comfy-install" / "benchmarks"
    assert load_run(saved).measurements[0].backend == "sdpa"
    assert data["headline"].startswith("CPU test run only")

    [timing] = run["comfyui"]
    assert timing["variant"] == "sdpa"
    assert timing["flags"] == ["--cpu", "--use-pytorch-cross-attention"]
    assert timing["error"] is None, timing
    assert timing["startup_s"] > 0
    assert timing["workflow_s"] > 0 and timing["workflow_warm_s"] > 0
    assert run["workflow"] == str(workflow)
    assert not (real_install / ".comfy-install" / "comfyui.pid").exists()


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

    # One measured run (each starts torch in the venv): its JSON carries the comparison,
    # and --fail-on-regression turns the regressions into exit code 5 and a message.
    result = invoke(
        real_install,
        "--allow-cpu",
        "--json",
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
    data = json.loads(result.stdout)["data"]
    comparison = data["comparison"]
    # Every call measured in both runs is 1000x slower than the doctored baseline: SDPA and
    # each of torch's pinned SDPA back ends that runs on this CPU, at 2 shapes x 2 dtypes.
    ok_before = {(m.backend, m.shape, m.dtype) for m in newest.measurements if m.status == "ok"}
    measured_now = {
        (m["backend"], m["shape"], m["dtype"])
        for m in data["run"]["measurements"]
        if m["status"] == "ok"
    }
    expected = len(ok_before & measured_now)
    assert expected >= 4 and expected % 4 == 0
    assert comparison["regressions"] == expected
    verdicts = {(c["backend"], c["shape"], c["dtype"]): c["verdict"] for c in comparison["changes"]}
    assert {verdicts[cell] for cell in ok_before & measured_now} == {"slower"}
    # A back end that cannot run here (cuDNN on a CPU) fails alike in both runs.
    assert set(verdicts.values()) <= {"slower", "unchanged"}
    assert f"{expected} regression(s) since the previous run" in " ".join(result.stderr.split())
