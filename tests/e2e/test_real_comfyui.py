"""The product working for real: the real ComfyUI v0.3.77 and the registry's torch trio.

Installs the fixture bundle of ComfyUI v0.3.77 with `--gpu none --torch-index
default` (torch 2.9.1, torchvision 0.24.1, torchaudio 2.9.1 from the package
registry), then starts ComfyUI on the CPU and waits for `GET /object_info` to
answer 200. Marked `real`: it needs the package registry and takes about a
minute with a cold uv cache (`pytest -m "not real"` leaves it out).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cli import BASE_PYTHON, REPO_ROOT, cli_path, read_state, venv_dists

pytestmark = pytest.mark.real

BUNDLE_NAME = "comfyui-v0.3.77.bundle"
BUNDLE_CANDIDATES = [
    REPO_ROOT.parent / "shared" / "fixtures" / BUNDLE_NAME,
    REPO_ROOT / "shared" / "fixtures" / BUNDLE_NAME,
    Path("/work/shared/fixtures") / BUNDLE_NAME,
]


def bundle_path() -> Path:
    """The ComfyUI v0.3.77 bundle: COMFYUI_BUNDLE, else the shared fixtures folder."""
    override = os.environ.get("COMFYUI_BUNDLE")
    for candidate in ([Path(override)] if override else BUNDLE_CANDIDATES):
        if candidate.is_file():
            return candidate
    pytest.skip(f"the real ComfyUI bundle ({BUNDLE_NAME}) is not on this machine; "
                "set COMFYUI_BUNDLE to run the real end-to-end tests")


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_object_info(port: int, process: subprocess.Popen[bytes], timeout: float) -> float:
    """Poll /object_info until it answers 200; return the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        assert process.poll() is None, f"ComfyUI exited with {process.returncode}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/object_info", timeout=5) as r:
                if r.status == 200:
                    json.loads(r.read())
                    return time.monotonic() - start
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"/object_info did not answer within {timeout} s")


def real_install_args(target: Path) -> list[str]:
    """The command line of the real install into ``target``."""
    return [cli_path(), "install", str(target), "--gpu", "none", "--torch-index", "default",
            "--comfyui-url", str(bundle_path()), "--comfyui-ref", "v0.3.77",
            "--python", BASE_PYTHON]


REAL_ENV = dict(os.environ, NO_COLOR="1", UV_PYTHON_DOWNLOADS="never")


@pytest.fixture(scope="session")
def real_install(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One real install of ComfyUI v0.3.77 for the session."""
    target = tmp_path_factory.mktemp("real") / "inst"
    done = subprocess.run(real_install_args(target), env=REAL_ENV, capture_output=True,
                          text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    yield target


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
        cwd=real_install / "ComfyUI", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_object_info(port, process, timeout=240)
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_real_rerun_changes_nothing(real_install: Path) -> None:
    before = read_state(real_install)
    done = subprocess.run(real_install_args(real_install), env=REAL_ENV, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    after = read_state(real_install)
    assert {k: v["seq"] for k, v in after["steps"].items()} == {
        k: v["seq"] for k, v in before["steps"].items()}
    assert done.stderr.count("up to date") >= 10
