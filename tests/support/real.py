"""The real ComfyUI v0.3.77 bundle: where it is, how to install and start it in tests."""

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

BUNDLE_NAME = "comfyui-v0.3.77.bundle"
BUNDLE_CANDIDATES = [
    REPO_ROOT.parent / "shared" / "fixtures" / BUNDLE_NAME,
    REPO_ROOT / "shared" / "fixtures" / BUNDLE_NAME,
    Path("/work/shared/fixtures") / BUNDLE_NAME,
]


def find_bundle() -> Path | None:
    """The ComfyUI v0.3.77 bundle: COMFYUI_BUNDLE, else the shared fixtures folder."""
    override = os.environ.get("COMFYUI_BUNDLE")
    candidates = [Path(override)] if override else BUNDLE_CANDIDATES
    return next((candidate for candidate in candidates if candidate.is_file()), None)


def bundle_path() -> Path:
    """The ComfyUI v0.3.77 bundle, or a skip of the test that needs it."""
    found = find_bundle()
    if found is not None:
        return found
    pytest.skip(
        f"the real ComfyUI bundle ({BUNDLE_NAME}) is not on this machine; "
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


def real_install_args(target: Path) -> list[str]:
    """The command line of the real install into ``target``."""
    return [
        cli_path(),
        "install",
        str(target),
        "--gpu",
        "none",
        "--torch-index",
        "default",
        "--comfyui-url",
        str(bundle_path()),
        "--comfyui-ref",
        "v0.3.77",
        "--python",
        BASE_PYTHON,
    ]


REAL_ENV = dict(os.environ, NO_COLOR="1", UV_PYTHON_DOWNLOADS="never")
