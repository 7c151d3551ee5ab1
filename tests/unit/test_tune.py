"""`comfy-install tune` against a recorded venv: the sweep, the calibration file, no GPU."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from installer.attention.measure.tune import sweep_shapes
from installer.attention.rules.records import parse_calibration
from installer.attention.shim import router as router
from installer.cli.tune import tune
from installer.core.facts import GpuInfo, GpuReport
from support.attention import SAGE, XFORMERS_ERROR, sdpa_ms

H200 = GpuReport("nvml", "test", (GpuInfo(0, "NVIDIA H200", "9.0"),), "580.159.04", "13.0")

FAKE_PYTHON = """#!{python}
import json, shutil, sys
args = sys.argv[1:]
assert args[:2] == ["-m", "comfy_install_bench.attention_module"], args
config, output = args[args.index("--config") + 1], args[args.index("--output") + 1]
shutil.copy(config, {seen!r})
print("progress: n1024-d64 fp16 sdpa: 0.035 ms, max error 0", file=sys.stderr)
print("progress: n1024-d64 fp16: measured (1/2)", file=sys.stderr)
if {exit_code}:
    sys.exit({exit_code})
shutil.copy({document!r}, output)
"""


PACKAGES = {"torch": "2.11.0+cu130", "xformers": "0.0.35", "sageattention": "2.2.0",
            "sageattn3": None, "comfy-kitchen": "0.2.31", "triton": "3.6.0"}  # fmt: skip
TORCH = {"version": "2.11.0+cu130", "cuda": "13.0", "cudnn": 91900, "cuda_available": True}
SETTINGS = {"warmup": 2, "iterations": 10, "budget_s": 0.25, "seed": 0,
            "timer": "cuda-events", "dtypes": ["fp16", "bf16"]}  # fmt: skip


def sweep_document(skip_last: bool = True) -> dict[str, Any]:
    """The module's document for the sweep, with the H200's SageAttention 2 speedups."""
    shapes = sweep_shapes()
    results: list[dict[str, Any]] = []
    skipped = []
    for shape in shapes:
        for dtype in ("fp16", "bf16"):
            if skip_last and shape is shapes[-1] and dtype == "bf16":
                skipped.append({"shape": shape.id, "dtype": dtype,
                                "reason": "the time budget of 60 s was spent"})  # fmt: skip
                continue
            # 12288 (below Wan's 14040): SageAttention 2 just slower, so the crossovers stay.
            ratio = (
                0.95
                if shape.seq == 12288
                else SAGE[(shape.head_dim, dtype)][
                    (1024, 2048, 4096, 8192, 16384, 32768, 75600).index(shape.seq)
                ]
            )
            base = sdpa_ms(shape.seq, shape.head_dim)
            cell = {"shape": shape.id, "dtype": dtype, "warmup": 3, "nonfinite": False}
            results += [
                {**cell, "backend": "sdpa", "status": "ok", "times_ms": [base] * 5,
                 "max_abs_error": 0.0, "reference_max_abs": 1.0},
                {**cell, "backend": "xformers", "status": "error", "times_ms": [],
                 "error": XFORMERS_ERROR},
                {**cell, "backend": "sageattention", "status": "ok",
                 "times_ms": [base / ratio] * 5, "max_abs_error": 0.02,
                 "reference_max_abs": 1.0},
            ]  # fmt: skip
    return {
        "schema_version": 1,
        "measured": True,
        "reason": None,
        "python": "3.12.3",
        "platform": "linux",
        "packages": {
            "torch": "2.11.0+cu130",
            "xformers": "0.0.35",
            "sageattention": "2.2.0",
            "sageattn3": None,
            "comfy-kitchen": "0.2.31",
            "triton": "3.6.0",
        },
        "torch": {
            "version": "2.11.0+cu130",
            "cuda": "13.0",
            "cudnn": 91900,
            "cuda_available": True,
        },
        "device": {"kind": "cuda", "index": 0, "name": "NVIDIA H200", "cc": "9.0"},
        "backends": [
            {"name": "sdpa", "available": True, "version": "2.11.0+cu130", "reason": None},
            {"name": "xformers", "available": True, "version": "0.0.35", "reason": None},
            {"name": "sageattention", "available": True, "version": "2.2.0", "reason": None},
            {"name": "sageattn3", "available": False, "version": None, "reason": "not installed"},
            {
                "name": "comfy_kitchen_int8",
                "available": False,
                "version": "0.2.31",
                "reason": "RuntimeError: comfy_kitchen.int8_attention_is_available() is False",
            },
        ],
        "settings": {
            "warmup": 2,
            "iterations": 10,
            "budget_s": 0.25,
            "seed": 0,
            "timer": "cuda-events",
            "dtypes": ["fp16", "bf16"],
        },
        "shapes": [shape.__dict__ for shape in shapes],
        "results": results,
        "skipped": skipped,
    }


@pytest.fixture
def make_install(tmp_path: Path) -> Callable[..., Path]:
    def make(document: dict[str, Any] | None = None, exit_code: int = 0) -> Path:
        install = tmp_path / "inst"
        python = install / "venv" / "bin" / "python"
        python.parent.mkdir(parents=True)
        recorded = tmp_path / "document.json"
        recorded.write_text(json.dumps(document or sweep_document()))
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
    app.command()(tune)
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def h200(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("installer.edges.gpu.detect_gpus", lambda: H200)


def test_the_sweep_runs_cheapest_first() -> None:
    shapes = sweep_shapes()
    work = [s.batch * s.heads * s.seq**2 * s.head_dim for s in shapes]
    assert work == sorted(work)
    assert {s.head_dim for s in shapes} == {40, 64, 128}
    assert max(s.seq for s in shapes if s.head_dim == 40) == 16384
    assert max(s.seq for s in shapes) == 75600 and min(s.seq for s in shapes) == 1024
    assert shapes[-1].id == "n75600-d128"


def test_tune_writes_the_calibration(make_install: Callable[..., Path], h200: None) -> None:
    install = make_install()
    result = invoke(install, "--json", "--budget", "45")
    assert result.exit_code == 0, result.output
    envelope = json.loads(result.stdout)
    assert envelope["command"] == ["tune", str(install)] and envelope["status"] == "ok"
    path = install / ".comfy-install" / "calibration.json"
    assert envelope["data"]["path"] == str(path)
    calibration = parse_calibration(path.read_text())
    assert calibration.model_dump(mode="json") == envelope["data"]["calibration"]
    on = calibration.measured_on
    assert (on.gpu_name, on.gpu_cc, on.driver, on.torch) == (
        "NVIDIA H200", "9.0", "580.159.04", "2.11.0+cu130",
    )  # fmt: skip
    assert on.versions["sageattention"] == "2.2.0" and on.budget_s == 45
    assert calibration.table(128, "fp16").crossovers == [16384]  # type: ignore[union-attr]
    assert calibration.table(64, "fp16").crossovers == [32768]  # type: ignore[union-attr]
    # The budget cut the dearest shape in bf16: 32K is the longest measured there.
    assert calibration.skipped == ["n75600-d128 bf16: the time budget of 60 s was spent"]
    assert calibration.table(128, "bf16").crossovers == [16384]  # type: ignore[union-attr]
    records = {b.name: (b.status, b.reason) for b in calibration.backends}
    assert records["sageattention"] == ("working", None)
    assert records["xformers"][0] == "broken" and "CUDA support" in str(records["xformers"][1])
    assert records["comfy_kitchen_int8"][0] == "broken"
    assert records["sageattn3"] == ("absent", "not installed")
    xformers = [p for p in calibration.points if p.backend == "xformers"]
    assert xformers and all(p.status == "error" for p in xformers)
    seen = json.loads((install / "config-seen.json").read_text())
    assert seen["total_budget_s"] == 45 and seen["backends"] == []
    assert [s["id"] for s in seen["shapes"]] == [s.id for s in sweep_shapes()]
    # Measured through the functions the launch router calls (its own mapping), when
    # DIR/ComfyUI imports; this document was measured on the raw kernels (no "method").
    assert seen["comfyui"] == {
        "path": str(install.absolute() / "ComfyUI"),
        "functions": router.TARGETS,
        "loaded": router.LOADED,
    }
    assert calibration.method == "kernels"


def test_a_sweep_through_comfyui_records_the_method(
    make_install: Callable[..., Path], h200: None
) -> None:
    document = {**sweep_document(), "method": "comfyui"}
    install = make_install(document)
    result = invoke(install)
    assert result.exit_code == 0, result.output
    err = " ".join(result.stderr.split())
    assert "(budget 60 s), through ComfyUI's attention functions" in err
    assert "attention_pytorch's ms per call" in err
    path = install / ".comfy-install" / "calibration.json"
    assert parse_calibration(path.read_text()).method == "comfyui"


def test_tune_shows_the_table_to_people(make_install: Callable[..., Path], h200: None) -> None:
    result = invoke(make_install())
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    err = " ".join(result.stderr.split())
    assert "Measured on NVIDIA H200 (cc 9.0), driver 580.159.04, torch 2.11.0+cu130" in err
    assert "raw kernels" in err and "SDPA's ms per call" in err
    assert "→ the one chosen" in err and "SageAttention 2.2.0 (working)" in err
    assert (
        "D=128 fp16: SDPA below 16K tokens; SageAttention 2.2.0 from 16K tokens "
        "(1.46× at 75.6K tokens)" in err
    )
    assert "D=40 fp16: SDPA at every length" in err
    assert "broken: xformers 0.0.35" in err and "never routed to" in err
    assert "skipped: n75600-d128 bf16" in err
    assert "calibration written to" in err


def test_no_gpu_exits_3_and_writes_nothing(
    make_install: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "installer.edges.gpu.detect_gpus", lambda: GpuReport("none", "NVML: no driver")
    )
    install = make_install()
    result = invoke(install, "--json")
    assert result.exit_code == 3, result.output
    envelope = json.loads(result.stdout)
    assert envelope["errors"][0]["code"] == "environment"
    assert "No NVIDIA GPU to tune for (NVML: no driver)" in " ".join(result.stderr.split())
    assert not (install / ".comfy-install" / "calibration.json").exists()
    assert not (install / "config-seen.json").exists()


def test_a_torch_without_cuda_exits_3_and_writes_nothing(
    make_install: Callable[..., Path], h200: None
) -> None:
    reason = "torch 2.9.1+cpu in this venv sees no CUDA GPU (CUDA build: none, a CPU-only torch)"
    install = make_install({"measured": False, "reason": reason, "results": []})
    result = invoke(install)
    assert result.exit_code == 3, result.output
    assert f"Nothing to tune: {reason}" in " ".join(result.stderr.split())
    assert not (install / ".comfy-install" / "calibration.json").exists()


def test_usage_errors_and_a_crash(
    make_install: Callable[..., Path], tmp_path: Path, h200: None
) -> None:
    result = invoke(tmp_path / "nothing")
    assert result.exit_code == 2 and "holds no venv to tune" in result.stderr
    install = make_install(exit_code=4)
    assert invoke(install, "--budget", "0").exit_code == 2
    crashed = invoke(install)
    assert crashed.exit_code == 1
    assert "The attention benchmark failed in the venv (exit code 4)" in crashed.stderr
    assert not (install / ".comfy-install" / "calibration.json").exists()


# --- install runs tune at the end; status and doctor report the calibration --------------


def test_tune_after_install(
    make_install: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, h200: None
) -> None:
    from installer.attention.measure.tune import tune_after_install
    from installer.core.log import InstallerLogger

    log = InstallerLogger(verbosity=-1)
    install = make_install()
    assert tune_after_install(install, "none", (), log)["status"] == "skipped"
    assert tune_after_install(install, "8.9", (), log)["reason"].startswith("--gpu 8.9")
    assert tune_after_install(install, "auto", ("torch",), log)["status"] == "skipped"
    done = tune_after_install(install, "auto", (), log)
    assert done["status"] == "done"
    assert done["path"] == str(install / ".comfy-install" / "calibration.json")
    # A re-run of the install: a calibration that still describes this machine is kept (how
    # freshness is judged is check_calibration's, tested with status and doctor below).
    from installer.attention.rules.routing import CalibrationState

    monkeypatch.setattr(
        "installer.attention.files.check_calibration",
        lambda _dir, _gpu: CalibrationState("fresh", "measured 2026-11-30 on this GPU"),
    )
    again = tune_after_install(install, "auto", (), log)
    assert again == {
        "status": "skipped",
        "reason": "the calibration is current: measured 2026-11-30 on this GPU",
    }
    monkeypatch.setattr(
        "installer.attention.files.check_calibration",
        lambda _dir, _gpu: CalibrationState("stale", "torch changed"),
    )
    assert tune_after_install(install, "auto", (), log)["status"] == "done"
    monkeypatch.setattr(
        "installer.edges.gpu.detect_gpus", lambda: GpuReport("none", "NVML: no driver")
    )
    assert tune_after_install(install, "auto", (), log) == {
        "status": "skipped",
        "reason": "no NVIDIA GPU (NVML: no driver)",
    }


def test_a_failed_tune_after_install_is_a_warning(
    make_install: Callable[..., Path], h200: None
) -> None:
    import io

    from installer.attention.measure.tune import tune_after_install
    from installer.core.log import InstallerLogger

    stream = io.StringIO()
    result = tune_after_install(
        make_install(exit_code=3), "auto", (), InstallerLogger(stream=stream, color=False)
    )
    assert result["status"] == "failed" and "exit code 3" in result["reason"]
    assert "attention was not measured" in stream.getvalue()


def test_status_and_doctor_report_the_calibration(
    make_install: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, h200: None
) -> None:
    from installer.attention.rules.routing import AttentionProbe
    from installer.commands.doctor import calibration_checks
    from installer.commands.status import _calibration

    install = make_install()
    missing = _calibration(install)
    assert missing["status"] == "missing" and missing["hint"] == f"comfy-install tune {install}"
    assert [c.status for c in calibration_checks(install, H200)] == ["info"]
    assert calibration_checks(install, GpuReport("none", "no GPU")) == []
    assert invoke(install).exit_code == 0
    versions = sweep_document()["packages"]
    monkeypatch.setattr(
        "installer.attention.files.probe_attention", lambda python: AttentionProbe(versions)
    )
    assert _calibration(install)["status"] == "fresh"
    [check] = calibration_checks(install, H200)
    assert check.status == "ok" and check.detail.startswith("fresh: measured ")
    monkeypatch.setattr(
        "installer.attention.files.probe_attention",
        lambda python: AttentionProbe({**versions, "sageattention": "2.2.1"}),
    )
    [check] = calibration_checks(install, H200)
    assert check.status == "warn" and "sageattention 2.2.0 then, 2.2.1 now" in check.detail
    assert check.hint == f"comfy-install tune {install}"
