"""`comfy-install benchmark` on a real NVIDIA GPU, in a venv over this machine's torch.

Marked `gpu` (select with ``-m gpu``; CI has no GPU and skips it). The test
needs a Python with a CUDA torch: ``BENCH_TORCH_PYTHON``, else the Python
running the tests, else ``python3`` on PATH. It makes a venv from that Python
with ``--system-site-packages`` (plus a `.pth` naming that Python's own
site-packages, because a venv made from a venv reaches only the base
interpreter's), lays out an install directory holding only that venv, and runs
the benchmark on three shapes with short settings. It asserts SDPA rows that
ran, and rows for SageAttention and xformers when the venv can import them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from installer.benchmark.headline import latest_headline
from installer.cli.benchmark import benchmark

pytestmark = pytest.mark.gpu

SHAPES = "sd15-512,sdxl-1024,flux-1024"
PROBE = (
    "import importlib.util as u, json, site, sys, torch; print(json.dumps({"
    "'cuda': torch.cuda.is_available(), 'site': site.getsitepackages(), "
    "'sage': bool(u.find_spec('sageattention')), 'xformers': bool(u.find_spec('xformers'))}))"
)


def _probe(python: str) -> dict[str, Any] | None:
    try:
        done = subprocess.run(
            [python, "-c", PROBE], capture_output=True, text=True, timeout=300, check=False
        )
    except OSError:
        return None
    return json.loads(done.stdout.splitlines()[-1]) if done.returncode == 0 else None


def torch_python() -> tuple[str, dict[str, Any]]:
    """A Python that imports torch and sees a CUDA GPU, with what it has; else skip."""
    candidates = [os.environ.get("BENCH_TORCH_PYTHON"), sys.executable, shutil.which("python3")]
    for python in filter(None, candidates):
        facts = _probe(python)
        if facts is None:
            continue
        if not facts["cuda"]:
            pytest.skip(f"{python} has torch but sees no CUDA GPU")
        return python, facts
    pytest.skip("no Python with torch found (set BENCH_TORCH_PYTHON)")


@pytest.fixture(scope="module")
def gpu_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """Run the benchmark once on the GPU: ``(install dir, envelope, what the venv has)``."""
    python, facts = torch_python()
    install_dir = tmp_path_factory.mktemp("gpu-bench")
    venv = install_dir / "venv"
    subprocess.run(
        [python, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
        check=True,
        timeout=300,
    )
    purelib = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    Path(purelib, "machine-torch.pth").write_text("\n".join(facts["site"]) + "\n")
    app = typer.Typer()
    app.command()(benchmark)
    result = CliRunner().invoke(
        app,
        [
            str(install_dir),
            "--json",
            "--shapes",
            SHAPES,
            "--iterations",
            "10",
            "--warmup",
            "2",
            "--budget",
            "0.5",
        ],
    )
    assert result.exit_code == 0, result.output
    return install_dir, json.loads(result.stdout), facts


def rows(envelope: dict[str, Any], backend: str) -> list[dict[str, Any]]:
    return [m for m in envelope["data"]["run"]["measurements"] if m["backend"] == backend]


def test_the_gpu_is_measured(gpu_run: tuple[Path, dict[str, Any], dict[str, Any]]) -> None:
    _, envelope, _ = gpu_run
    data = envelope["data"]
    assert envelope["exit_code"] == 0
    assert data["measured"] is True
    assert data["run"]["device"]["kind"] == "cuda"
    assert data["run"]["settings"]["timer"] == "cuda-events"
    assert {s["id"] for s in data["run"]["shapes"]} == set(SHAPES.split(","))


def test_sdpa_rows_ran_and_match_themselves(
    gpu_run: tuple[Path, dict[str, Any], dict[str, Any]],
) -> None:
    _, envelope, _ = gpu_run
    sdpa = rows(envelope, "sdpa")
    assert len(sdpa) == 3 * 2
    for row in sdpa:
        assert row["status"] == "ok", row
        assert row["stats"]["median_ms"] > 0
        assert row["speedup"] == pytest.approx(1.0)
        assert row["max_abs_error"] <= 1e-3
        assert row["peak_memory_bytes"] >= row["baseline_memory_bytes"] > 0


def test_optional_backends_have_a_row_per_cell(
    gpu_run: tuple[Path, dict[str, Any], dict[str, Any]],
) -> None:
    _, envelope, facts = gpu_run
    for backend, present in (("sageattention", facts["sage"]), ("xformers", facts["xformers"])):
        found = rows(envelope, backend)
        if not present:
            assert found == []
            continue
        assert len(found) == 3 * 2
        for row in found:
            # A backend that fails (a wheel built for another torch) says why, per cell.
            assert row["status"] in ("ok", "wrong", "error", "oom"), row
            if row["status"] == "ok":
                assert row["speedup"] > 0
            else:
                assert row["error"], row


def test_sageattention_runs_at_head_dims_64_and_128(
    gpu_run: tuple[Path, dict[str, Any], dict[str, Any]],
) -> None:
    _, envelope, facts = gpu_run
    if not facts["sage"]:
        pytest.skip("sageattention is not installed over this torch")
    for row in rows(envelope, "sageattention"):
        if row["shape"] == "sd15-512":  # head dim 40: SageAttention 1.x refuses it
            continue
        assert row["status"] == "ok", row
        assert row["max_abs_error"] < 0.05


def test_the_run_is_saved_and_gives_a_headline(
    gpu_run: tuple[Path, dict[str, Any], dict[str, Any]],
) -> None:
    install_dir, envelope, facts = gpu_run
    saved = Path(envelope["data"]["saved_to"])
    assert saved.parent == install_dir / ".comfy-install" / "benchmarks"
    assert json.loads(saved.read_text())["device"]["kind"] == "cuda"
    line = latest_headline(install_dir)
    assert line is not None
    assert envelope["data"]["run"]["device"]["name"] in line
    if facts["sage"] and not facts["xformers"]:
        assert line.startswith("SageAttention")
