"""The product working for real: the real ComfyUI v0.3.77 and the registry's torch trio.

Installs the fixture bundle of ComfyUI v0.3.77 with `--gpu none --torch-index
default` (torch 2.9.1, torchvision 0.24.1, torchaudio 2.9.1 from the package
registry), then starts ComfyUI on the CPU and waits for `GET /object_info` to
answer 200. Marked `real`: it needs the package registry and takes about a
minute with a cold uv cache (`pytest -m "not real"` leaves it out).
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

import pytest

from support.cli import read_state, venv_dists
from support.real import REAL_ENV, free_port, real_install_args, wait_for_object_info

pytestmark = pytest.mark.real


def test_real_install_has_the_pinned_trio(real_install: Path) -> None:
    dists = venv_dists(real_install)
    assert dists["torch"].startswith("2.9.1")
    assert dists["torchvision"].startswith("0.24.1")
    assert dists["torchaudio"].startswith("2.9.1")
    assert "comfyui-frontend-package" in dists
    state = read_state(real_install)
    assert state["steps"]["verify"]["status"] == "done"
    assert state["steps"]["comfyui"]["outputs"]["ref"] == "v0.3.77"


def test_real_comfyui_answers_object_info(real_install: Path) -> None:
    port = free_port()
    python = real_install / "venv" / "bin" / "python"
    process = subprocess.Popen(
        [str(python), "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port)],
        cwd=real_install / "ComfyUI",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_object_info(port, process, timeout=240)
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_real_rerun_changes_nothing(real_install: Path) -> None:
    before = read_state(real_install)
    done = subprocess.run(
        real_install_args(real_install),
        env=REAL_ENV,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    after = read_state(real_install)
    assert {k: v["seq"] for k, v in after["steps"].items()} == {
        k: v["seq"] for k, v in before["steps"].items()
    }
    assert done.stderr.count("up to date") >= 10


def test_real_comfyui_through_comfy_install_launch(real_install: Path) -> None:
    from support.cli import cli_path

    port = free_port()
    started = subprocess.run(
        [cli_path(), "launch", str(real_install), "--listen", "127.0.0.1", "--port", str(port),
         "--background", "--json", "--", "--cpu"],
        env=REAL_ENV, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    try:
        assert started.returncode == 0, started.stderr[-3000:]
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
