"""`launch --gpus` against the fixture ComfyUI: the set in the background, Ctrl-C, failures.

The install is `ComfyUI/main.py` from `support.comfy_repo` (argument parsing and an
`/object_info` server, quick to start) with a real venv holding a CPU torch stand-in.
The GPUs are the recorded three-GPU NVML answer (`support.nvml_record`) in the CLI's
own interpreter; the real ComfyUI run is `tests/e2e/test_fleet_real.py`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from installer.launch.process import process_running
from installer.plan.launch_settings import RELEVANT_VARIABLES
from support.comfy_repo import MAIN_PY
from support.nvml_record import stand_in_env
from support.wheels import WheelSpec, build_wheel

pytestmark = pytest.mark.skipif(os.name == "nt", reason="POSIX process groups and signals")

CPU_TORCH = WheelSpec(
    "torch",
    "2.9.1+cpu",
    files={
        "torch/__init__.py": "__version__ = '2.9.1+cpu'\n",
        "torch/version.py": "__version__ = '2.9.1+cpu'\ncuda = None\n",
    },
)


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from uv import find_uv_bin

    root = tmp_path_factory.mktemp("fleet-venv")
    wheel = build_wheel(CPU_TORCH, root / "wheels")
    uv = str(find_uv_bin())
    env = {**os.environ, "UV_CACHE_DIR": str(root / "uv-cache"), "UV_PYTHON_DOWNLOADS": "never"}
    target = root / "venv"
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(target)], env=env, check=True)
    subprocess.run(
        [uv, "pip", "install", "-q", "--offline", "--no-deps",
         "--python", str(target / "bin" / "python"), str(wheel)],
        env=env, check=True,
    )  # fmt: skip
    return target


@pytest.fixture
def install(tmp_path: Path, venv: Path) -> Path:
    install = tmp_path / "install"
    (install / "ComfyUI").mkdir(parents=True)
    (install / "ComfyUI" / "main.py").write_text(MAIN_PY)
    (install / "venv").symlink_to(venv, target_is_directory=True)
    return install


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if k not in RELEVANT_VARIABLES}
    clean.update(NO_COLOR="1", PATH=f"{tmp_path}/no-smi{os.pathsep}{os.environ.get('PATH', '')}")
    return stand_in_env(clean, tmp_path / "nvml")


@pytest.fixture
def first_port() -> int:
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port + 3 > 65535:
            continue
        free = True
        for other in (port + 1, port + 2):
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", other))
                except OSError:
                    free = False
        if free:
            return port
    pytest.fail("no three free ports in a row")


def cli(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "installer", *map(str, args)]


def run(
    args: list[str], env: dict[str, str], timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def pid_files(install: Path) -> list[Path]:
    return sorted((install / ".comfy-install").glob("**/comfyui.pid"))


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def test_every_gpu_in_the_background_then_stop(
    install: Path, env: dict[str, str], first_port: int
) -> None:
    done = run(cli("launch", install, "--gpus", "all", "--port", first_port, "--background",
                   "--json"), env)  # fmt: skip
    try:
        assert done.returncode == 0, done.stderr
        members = json.loads(done.stdout)["data"]["gpus"]
        assert [(m["gpu"], m["port"]) for m in members] == [
            (0, first_port), (1, first_port + 1), (2, first_port + 2),
        ]  # fmt: skip
        for m in members:
            record = json.loads((install / f".comfy-install/fleet/gpu-{m['gpu']}/comfyui.pid")
                                .read_text())  # fmt: skip
            argv = record["argv"]
            assert argv[argv.index("--cuda-device") + 1] == str(m["gpu"])
            assert argv[argv.index("--temp-directory") + 1].endswith(f"fleet/gpu-{m['gpu']}")
            assert environ_of(m["pid"])["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
        assert "stop them with: comfy-install stop" in done.stderr
        # A plain launch (one GPU, another port) while the set runs is refused, naming it.
        single = run(cli("launch", install, "--port", first_port + 7, "--background"), env)
        assert single.returncode == 3, single.stderr
        said = " ".join(single.stderr.split())
        assert "is already running (GPU 0: pid" in said and "GPU 2: pid" in said, said
        assert "comfy-install stop" in said
        assert not (install / ".comfy-install" / "comfyui.pid").exists()
    finally:
        stopped = run(cli("stop", install, "--json"), env)
    assert stopped.returncode == 0, stopped.stderr
    assert len(json.loads(stopped.stdout)["data"]["fleet"]) == 3
    assert all(not process_running(m["pid"]) for m in members)
    assert pid_files(install) == []


def test_ctrl_c_in_the_foreground_stops_the_whole_set(
    install: Path, env: dict[str, str], first_port: int
) -> None:
    launcher = subprocess.Popen(
        cli("launch", install, "--gpus", "0,1", "--port", first_port),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while len(pid_files(install)) < 2 or not (install / ".comfy-install/fleet/fleet.json").exists():
        assert launcher.poll() is None, launcher.stdout.read() if launcher.stdout else ""
        assert time.monotonic() < deadline, "the set did not come up"
        time.sleep(0.2)
    pids = [json.loads(p.read_text())["pid"] for p in pid_files(install)]
    launcher.send_signal(signal.SIGINT)
    assert launcher.wait(timeout=60) == 130
    output = launcher.stdout.read() if launcher.stdout else ""
    assert "ComfyUI was stopped on every GPU" in output
    assert all(not process_running(pid) for pid in pids)
    assert pid_files(install) == []


def test_a_member_that_exits_fails_the_set(
    install: Path, env: dict[str, str], first_port: int
) -> None:
    env["COMFY_FIXTURE_EXIT"] = "3"
    done = run(cli("launch", install, "--gpus", "0,2", "--port", first_port, "--background"), env)
    assert done.returncode == 1, done.stderr
    assert "ComfyUI exited during startup with exit code 3" in done.stderr
    assert "GPU 0: " in done.stderr
    assert pid_files(install) == []


def test_a_taken_port_starts_nothing(install: Path, env: dict[str, str], first_port: int) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", first_port + 1))
        holder.listen()
        done = run(cli("launch", install, "--gpus", "0,1", "--port", first_port,
                       "--background"), env)  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert f"Port {first_port + 1}" in done.stderr
    assert pid_files(install) == []


def test_one_gpu_is_the_single_launch(install: Path, env: dict[str, str], first_port: int) -> None:
    done = run(cli("launch", install, "--gpus", "1", "--port", first_port, "--background",
                   "--json"), env)  # fmt: skip
    try:
        assert done.returncode == 0, done.stderr
        data = json.loads(done.stdout)["data"]
        assert data["gpu"] == 1 and data["url"].endswith(f":{first_port}")
        record = json.loads((install / ".comfy-install/comfyui.pid").read_text())
        assert record["argv"][record["argv"].index("--cuda-device") + 1] == "1"
        assert not (install / ".comfy-install/fleet").exists()
    finally:
        stopped = run(cli("stop", install, "--json"), env)
    assert stopped.returncode == 0
    assert json.loads(stopped.stdout)["data"]["was_running"] is True


def test_bad_selections(install: Path, env: dict[str, str]) -> None:
    missing = run(cli("launch", install, "--gpus", "0,7", "--background"), env)
    assert missing.returncode == 2
    assert "GPU 7" in missing.stderr
    reserved = run(cli("launch", install, "--gpus", "all", "--background", "--", "--port", "9"),
                   env)  # fmt: skip
    assert reserved.returncode == 2
    assert "conflicts with --gpus" in reserved.stderr
