"""One ComfyUI per GPU, for real: `launch --gpus` starts two real ComfyUIs, `stop` ends both.

This machine has no GPU, so NVML's answer is a recorded one of three GPUs
(`tests/data/nvml-3gpu.json`, played back through pynvml's functions by
`support.nvml_record`; `edges/gpu.py` parses it as a real answer). ComfyUI v0.33.0 (the
real bundle, installed once per session) runs with `--cpu`, so `--cuda-device N` only
sets `CUDA_VISIBLE_DEVICES` in each. Marked `real`: it needs the shared real install.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest

from support.cli import cli_path
from support.nvml_record import stand_in_env
from support.real import REAL_ENV, free_port

pytestmark = pytest.mark.real


def _two_free_ports() -> int:
    for _ in range(50):
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    pytest.fail("no two free ports in a row")


def _own_dir(shared: Path, tmp_path: Path) -> Path:
    """A DIR of this test's own over the shared install: its pid files and `stop` are its own."""
    target = tmp_path / "inst"
    state = target / ".comfy-install"
    state.mkdir(parents=True)
    for part in ("venv", "ComfyUI"):
        (target / part).symlink_to(shared / part, target_is_directory=True)
    shutil.copy2(shared / ".comfy-install" / "state.json", state / "state.json")
    return target


def _cli(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [cli_path(), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _answers(port: int) -> list[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/object_info", timeout=10) as answer:
        assert answer.status == 200
        return sorted(json.loads(answer.read()))


def test_two_real_comfyuis_on_two_gpus_start_list_and_stop(
    real_install: Path, tmp_path: Path
) -> None:
    install = _own_dir(real_install, tmp_path)
    env = stand_in_env(REAL_ENV, tmp_path / "nvml")
    port = _two_free_ports()
    started = _cli(
        "launch", str(install), "--gpus", "0,2", "--port", str(port), "--background", "--json",
        "--", "--cpu", env=env,
    )  # fmt: skip
    try:
        assert started.returncode == 0, started.stderr[-4000:]
        data = json.loads(started.stdout)["data"]
        members = data["gpus"]
        assert [(m["gpu"], m["name"], m["port"]) for m in members] == [
            (0, "NVIDIA H100 80GB HBM3", port),
            (2, "NVIDIA H200", port + 1),
        ]
        assert len({m["pid"] for m in members}) == 2
        for member in members:
            assert member["seconds_to_ready"] > 0
            assert "KSampler" in _answers(member["port"])
            log = Path(member["log"]).read_text()
            assert f"Set cuda device to: {member['gpu']}" in log  # ComfyUI's own line
            assert f"/fleet/gpu-{member['gpu']}/" in member["log"]
        argv = json.loads((install / ".comfy-install/fleet/gpu-2/comfyui.pid").read_text())["argv"]
        assert argv[argv.index("--cuda-device") + 1] == "2"
        assert argv[argv.index("--port") + 1] == str(port + 1)

        again = _cli("launch", str(install), "--gpus", "all", "--port", str(port + 5),
                     "--background", "--", "--cpu", env=env)  # fmt: skip
        assert again.returncode == 3, again.stderr
        assert "already running" in again.stderr

        status = _cli("status", str(install), "--json", env=env, timeout=120)
        assert status.returncode == 0, status.stderr
        listed = json.loads(status.stdout)["data"]["fleet"]
        assert [(m["gpu"], m["port"], m["pid"], m["ready"]) for m in listed] == [
            (m["gpu"], m["port"], m["pid"], True) for m in members
        ]
        shown = _cli("status", str(install), env=env, timeout=120)
        text = shown.stdout + shown.stderr  # rich's console of `status` is the log's
        assert "ComfyUI per GPU" in text and "NVIDIA H200" in text
    finally:
        stopped = _cli("stop", str(install), "--json", env=env, timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    outcome = json.loads(stopped.stdout)["data"]
    assert [m["was_running"] for m in outcome["fleet"]] == [True, True]
    for member in (port, port + 1):
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{member}/object_info", timeout=2)
    assert not list((install / ".comfy-install/fleet").glob("gpu-*/comfyui.pid"))
    after = json.loads(_cli("status", str(install), "--json", env=env).stdout)["data"]["fleet"]
    assert [(m["gpu"], m["running"], m["ready"]) for m in after] == [
        (0, False, False),
        (2, False, False),
    ]
