"""The real ComfyUI bundles (v0.33.0, the pin; v0.3.77, the old pin): where they are, how to
install and start them in tests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from support.cli import BASE_PYTHON, REPO_ROOT, cli_path

BUNDLE_NAME = "comfyui-v0.33.0.bundle"
BUNDLE_REF = "v0.33.0"
LEGACY_BUNDLE_NAME = "comfyui-v0.3.77.bundle"
LEGACY_REF = "v0.3.77"


def candidates(name: str) -> list[Path]:
    """Where a fixture bundle may be: beside the checkout, in it, or in /work/shared."""
    return [
        REPO_ROOT.parent / "shared" / "fixtures" / name,
        REPO_ROOT / "shared" / "fixtures" / name,
        Path("/work/shared/fixtures") / name,
    ]


BUNDLE_CANDIDATES = candidates(BUNDLE_NAME)


def find_bundle(name: str = BUNDLE_NAME) -> Path | None:
    """A ComfyUI bundle: COMFYUI_BUNDLE (for the pinned one), else the shared fixtures folder."""
    override = os.environ.get("COMFYUI_BUNDLE") if name == BUNDLE_NAME else None
    found = [Path(override)] if override else candidates(name)
    return next((candidate for candidate in found if candidate.is_file()), None)


def bundle_path(name: str = BUNDLE_NAME) -> Path:
    """A ComfyUI bundle, or a skip of the test that needs it."""
    found = find_bundle(name)
    if found is not None:
        return found
    pytest.skip(
        f"the real ComfyUI bundle ({name}) is not on this machine; "
        "set COMFYUI_BUNDLE to run the real end-to-end tests"
    )


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


def real_install_args(target: Path, bundle: str = BUNDLE_NAME, ref: str = BUNDLE_REF) -> list[str]:
    """The command line of the real install into ``target`` (the registry's torch trio)."""
    return [
        cli_path(),
        "install",
        str(target),
        "--gpu",
        "none",
        "--torch-index",
        "default",
        "--comfyui-url",
        str(bundle_path(bundle)),
        "--comfyui-ref",
        ref,
        "--python",
        BASE_PYTHON,
    ]


def launch_and_stop(install: Path, env: dict[str, str]) -> dict[str, object]:
    """`comfy-install launch --background` on the CPU, `/object_info` read, then `stop`.

    Returns:
        The launch's JSON `data` and the node names `/object_info` listed (`nodes`).
    """
    port = free_port()
    started = subprocess.run(
        [cli_path(), "launch", str(install), "--listen", "127.0.0.1", "--port", str(port),
         "--background", "--json", "--", "--cpu"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    try:
        assert started.returncode == 0, started.stderr[-3000:]
        data: dict[str, object] = json.loads(started.stdout)["data"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/object_info", timeout=10) as r:
            assert r.status == 200
            data["nodes"] = sorted(json.loads(r.read()))
    finally:
        stopped = subprocess.run(
            [cli_path(), "stop", str(install)],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert stopped.returncode == 0, stopped.stderr
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/object_info", timeout=2)
    return data


REAL_ENV = dict(os.environ, NO_COLOR="1", UV_PYTHON_DOWNLOADS="never")
