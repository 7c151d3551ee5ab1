"""`comfy-install launch` and `stop` against a real venv and the fixture ComfyUI.

Each install is a folder with `ComfyUI/main.py` (the fixture from
`support.comfy_repo`) and `venv` linked to a real venv made with uv, holding a
fake torch whose switches record what is set on them (to `$FAKE_TORCH_RECORD`),
and for some tests fake `sageattention` and `triton` wheels. The GPU is a fake
`nvidia-smi` (compute capability 8.9) first on PATH; on a machine with a real
NVIDIA GPU, NVML answers first, which these tests allow for.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from installer.core.envelope import ENVELOPE_KEYS
from installer.launch.process import process_running
from installer.launch.shim import ensure_shim
from installer.plan.launch_settings import RELEVANT_VARIABLES
from support.comfy_repo import MAIN_PY
from support.wheels import WheelSpec, build_wheel

pytestmark = pytest.mark.skipif(os.name == "nt", reason="POSIX process groups and signals")

# The commands as `installer.cli.app` registers them (registered here too until it does).
CLI = """
import sys
from installer.cli.app import app
from installer.cli.launch import LAUNCH_CONTEXT_SETTINGS, launch, stop
names = {c.name or getattr(c.callback, "__name__", "") for c in app.registered_commands}
if "launch" not in names:
    app.command(context_settings=LAUNCH_CONTEXT_SETTINGS)(launch)
if "stop" not in names:
    app.command()(stop)
sys.argv[0] = "comfy-install"
app()
"""

FAKE_TORCH_INIT = '''
"""A stand-in for torch whose switches record what is set on them."""
import json, os
from torch import version
__version__ = version.__version__
RECORD = {}

def _record(key, value):
    RECORD[key] = value
    path = os.environ.get("FAKE_TORCH_RECORD")
    if path:
        with open(path, "w") as handle:
            json.dump(RECORD, handle)

def set_float32_matmul_precision(precision):
    _record("matmul_precision", precision)

def compile(model=None, **options):
    _record("compile", {"model": model, **options})
    return ("compiled", model)

from torch import cuda, backends
'''

FAKE_BACKENDS_CUDA = """
import torch

class _Matmul:
    def __setattr__(self, name, value):
        torch._record("cuda.matmul." + name, value)
        object.__setattr__(self, name, value)

matmul = _Matmul()
"""

FAKE_BACKENDS_CUDNN = """
import sys, types
import torch

class _Cudnn(types.ModuleType):
    def __setattr__(self, name, value):
        if not name.startswith("_"):
            torch._record("cudnn." + name, value)
        super().__setattr__(name, value)

sys.modules[__name__].__class__ = _Cudnn
"""

RECORDING_TORCH = WheelSpec(
    "torch",
    "2.9.1+cu128",
    files={
        "torch/__init__.py": FAKE_TORCH_INIT,
        "torch/version.py": "__version__ = '2.9.1+cu128'\ncuda = '12.8'\n",
        "torch/cuda/__init__.py": "def is_available():\n    return False\n",
        "torch/backends/__init__.py": "",
        "torch/backends/cuda/__init__.py": FAKE_BACKENDS_CUDA,
        "torch/backends/cudnn/__init__.py": FAKE_BACKENDS_CUDNN,
    },
)

FAKE_SMI = """#!{python}
import sys
if any(a.startswith("--query-gpu") for a in sys.argv[1:]):
    print("0, NVIDIA GeForce RTX 4090, 8.9, 24564, 24000, 580.65.06, 00000000:01:00.0, GPU-0")
else:
    print("| NVIDIA-SMI 580.65.06   Driver Version: 580.65.06   CUDA Version: 13.0 |")
"""


# --- fixtures ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def venvs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real venvs: ``bare`` (empty), ``torch`` (recording torch), ``sage`` (+ sage, triton)."""
    root = tmp_path_factory.mktemp("launch-venvs")
    wheels = root / "wheels"
    torch_whl = build_wheel(RECORDING_TORCH, wheels)
    sage_whl = build_wheel(WheelSpec("sageattention", "1.0.6"), wheels)
    triton_whl = build_wheel(WheelSpec("triton", "3.5.1"), wheels)
    from uv import find_uv_bin

    uv = str(find_uv_bin())
    env = {**os.environ, "UV_CACHE_DIR": str(root / "uv-cache"), "UV_PYTHON_DOWNLOADS": "never"}
    made: dict[str, Path] = {}
    for name, wheel_files in (
        ("bare", []),
        ("torch", [torch_whl]),
        ("sage", [torch_whl, sage_whl, triton_whl]),
    ):
        venv = root / name
        subprocess.run(
            [uv, "venv", "-q", "--python", sys.executable, str(venv)], env=env, check=True
        )
        if wheel_files:
            subprocess.run(
                [uv, "pip", "install", "-q", "--offline", "--no-deps",
                 "--python", str(venv / "bin" / "python"), *map(str, wheel_files)],
                env=env, check=True,
            )  # fmt: skip
        made[name] = venv
    return made


@pytest.fixture(scope="module")
def fake_gpu_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fake-gpu-bin")
    smi = folder / "nvidia-smi"
    smi.write_text(FAKE_SMI.format(python=sys.executable))
    smi.chmod(0o755)
    return folder


def make_install(root: Path, venv: Path) -> Path:
    install = root / "install"
    (install / "ComfyUI").mkdir(parents=True)
    (install / "ComfyUI" / "main.py").write_text(MAIN_PY)
    (install / "venv").symlink_to(venv, target_is_directory=True)
    return install


@pytest.fixture
def install(tmp_path: Path, venvs: dict[str, Path]) -> Path:
    return make_install(tmp_path, venvs["torch"])


@pytest.fixture
def env(tmp_path: Path, fake_gpu_bin: Path) -> dict[str, str]:
    """The launcher's environment: no tuning variables of the developer's, a fake GPU."""
    clean = {k: v for k, v in os.environ.items() if k not in RELEVANT_VARIABLES}
    clean.update(
        PATH=f"{fake_gpu_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        NO_COLOR="1",
        COMFY_FIXTURE_ECHO=str(tmp_path / "echo.json"),
        FAKE_TORCH_RECORD=str(tmp_path / "torch-record.json"),
    )
    return clean


@pytest.fixture
def port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cli(*args: str | Path) -> list[str]:
    return [sys.executable, "-c", CLI, *map(str, args)]


def run(
    args: list[str], env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def echo(env: dict[str, str]) -> dict[str, Any]:
    return json.loads(Path(env["COMFY_FIXTURE_ECHO"]).read_text())


def torch_record(env: dict[str, str]) -> dict[str, Any]:
    return json.loads(Path(env["FAKE_TORCH_RECORD"]).read_text())


def gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process_running(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def stopper(env: dict[str, str]) -> Iterator[list[Path]]:
    """Installs listed here are stopped at the end of the test, whatever happened."""
    started: list[Path] = []
    yield started
    for install_dir in started:
        run(cli("stop", install_dir), env)


# --- --print-env, --json, invalid values ---------------------------------------------------


def test_print_env_json_shows_the_plan_and_starts_nothing(
    install: Path, env: dict[str, str], port: int
) -> None:
    env["MATMUL_PRECISION"] = "medium"
    done = run(
        cli("launch", install, "--port", port, "--print-env", "--json", "--", "--lowvram"), env
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert tuple(document) == ENVELOPE_KEYS
    data = document["data"]
    assert data["argv"] == [
        str(install / "venv" / "bin" / "python"), "-u", str(install / "ComfyUI" / "main.py"),
        "--port", str(port), "--lowvram",
    ]  # fmt: skip
    assert data["env"]["PYTORCH_ALLOC_CONF"] == "expandable_segments:True"
    assert data["env"]["COMFY_INSTALL_TUNING"] == "1"
    assert "MATMUL_PRECISION" not in data["env"]
    assert data["user_env"] == {"MATMUL_PRECISION": "medium"}
    assert data["machine"]["torch"] == {"version": "2.9.1+cu128", "cuda": "12.8"}
    packages = data["machine"]["attention_packages"]
    assert packages["torch"] == "2.9.1+cu128" and packages["sageattention"] is None
    assert data["machine"]["calibration"] == {
        "path": str(install / ".comfy-install" / "calibration.json"),
        "present": False,
        "problem": None,
    }
    assert data["attention"]["status"] == "off" and "no calibration" in data["attention"]["reason"]
    state = install / ".comfy-install"
    assert not (state / "comfyui.pid").exists() and not (state / "logs").exists()
    assert not Path(env["COMFY_FIXTURE_ECHO"]).exists()
    assert data["machine"]["shim"]["status"] == "missing"  # --print-env writes nothing


def test_print_env_text_can_be_pasted(install: Path, env: dict[str, str], port: int) -> None:
    done = run(cli("launch", install, "--port", port, "--print-env"), env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == f"{install}/venv/bin/python -u {install}/ComfyUI/main.py --port {port}"
    assert "export PYTORCH_ALLOC_CONF=expandable_segments:True" in lines
    assert "export COMFY_INSTALL_TUNING=1" in lines


def test_invalid_values_are_refused_before_anything_starts(
    install: Path, env: dict[str, str], port: int
) -> None:
    env.update(MATMUL_PRECISION="fast", TORCH_COMPILE_MODE="bogus")
    done = run(cli("launch", install, "--port", port), env)
    assert done.returncode == 2
    assert "MATMUL_PRECISION=fast is not valid: use one of highest, high, medium" in done.stderr
    assert "TORCH_COMPILE_MODE=bogus" in done.stderr and "reduce-overhead" in done.stderr
    assert not (install / ".comfy-install" / "logs").exists()


# --- a real start ---------------------------------------------------------------------------


def test_background_launch_tunes_comfyui_and_stop_ends_it(
    install: Path, env: dict[str, str], port: int, stopper: list[Path]
) -> None:
    env["COMFY_EXTRA_ARGS"] = '--foo "a b"'
    stopper.append(install)
    done = run(cli("launch", install, "--port", port, "--background", "--json", "--", "--bar"), env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)["data"]
    assert result["url"] == f"http://127.0.0.1:{port}"
    pid = result["pid"]
    assert process_running(pid)
    with urllib.request.urlopen(f"{result['url']}/object_info", timeout=5) as answer:
        assert answer.status == 200

    seen = echo(env)
    assert seen["argv"] == ["--port", str(port), "--foo", "a b", "--bar"]
    assert seen["env"]["PYTORCH_ALLOC_CONF"] == "expandable_segments:True"
    assert "PYTORCH_CUDA_ALLOC_CONF" not in seen["env"]
    assert seen["env"]["COMFY_INSTALL_TUNING"] == "1"
    assert seen["env"]["ENABLE_TF32"] == "1"
    # The shim set the switches right after the fixture imported torch.
    assert torch_record(env) == {
        "cuda.matmul.allow_tf32": True,
        "cudnn.allow_tf32": True,
        "cudnn.benchmark": True,
        "matmul_precision": "high",
    }
    assert "GPU 0: NVIDIA" in done.stderr and "compute capability" in done.stderr
    assert "torch: 2.9.1+cu128, CUDA 12.8 build (cu128)" in done.stderr
    assert f"ComfyUI is ready at http://127.0.0.1:{port} after" in done.stderr

    record = json.loads((install / ".comfy-install" / "comfyui.pid").read_text())
    assert record["pid"] == pid and record["port"] == port
    log = Path(record["log"]).read_text()
    assert "tuning tf32: on ENABLE_TF32=1" in log
    assert "comfy-install tuning: TF32 on, cuDNN benchmark on, float32 matmul precision high" in log
    assert f"To see the GUI go to: http://127.0.0.1:{port}" in log

    again = run(cli("launch", install, "--port", port, "--background"), env)
    assert again.returncode == 3 and "already running" in again.stderr

    stopped = run(cli("stop", install, "--json"), env)
    assert stopped.returncode == 0, stopped.stderr
    assert json.loads(stopped.stdout)["data"]["was_running"] is True
    assert gone(pid)
    assert not (install / ".comfy-install" / "comfyui.pid").exists()
    assert "fixture ComfyUI: stopped" in Path(record["log"]).read_text()
    assert "not running" in run(cli("stop", install), env).stderr


def test_stop_handles_a_stale_pid_file(install: Path, env: dict[str, str]) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    pid_file = install / ".comfy-install" / "comfyui.pid"
    pid_file.parent.mkdir()
    record = {"pid": dead.pid, "port": 1, "url": "http://x", "started_at": "t", "log": "l"}
    pid_file.write_text(json.dumps(record))
    done = run(cli("stop", install), env)
    assert done.returncode == 0
    assert "stale pid file" in done.stderr
    assert not pid_file.exists()


def test_slow_start_is_waited_for(
    install: Path, env: dict[str, str], port: int, stopper: list[Path]
) -> None:
    env["COMFY_FIXTURE_DELAY"] = "1"  # four 0.25 s polls fail before it answers
    stopper.append(install)
    done = run(cli("launch", install, "--port", port, "--background", "--json"), env)
    assert done.returncode == 0, done.stderr
    seconds = json.loads(done.stdout)["data"]["seconds_to_ready"]
    assert seconds >= 1.0
    assert f"ComfyUI is ready at http://127.0.0.1:{port} after {seconds:.1f} s" in done.stderr


def test_early_exit_shows_the_last_lines_and_the_exit_code(
    install: Path, env: dict[str, str], port: int
) -> None:
    env["COMFY_FIXTURE_EXIT"] = "3"
    for mode in ((), ("--background",)):
        done = run(cli("launch", install, "--port", port, *mode), env)
        assert done.returncode == 1, done.stderr
        assert "ComfyUI exited during startup with exit code 3" in done.stderr
        assert "fixture ComfyUI: exiting early on purpose" in done.stderr
        assert not (install / ".comfy-install" / "comfyui.pid").exists()


def test_installed_sage_is_not_enabled_without_a_calibration(
    tmp_path: Path, venvs: dict[str, Path], env: dict[str, str], port: int
) -> None:
    install = make_install(tmp_path, venvs["sage"])
    env["COMFY_FIXTURE_EXIT"] = "0"  # record the arguments, then stop at once
    done = run(cli("launch", install, "--port", port), env)
    assert "exit code 0" in done.stderr
    assert echo(env)["argv"] == ["--port", str(port)]
    assert "COMFY_INSTALL_ATTENTION_ROUTES" not in echo(env)["env"]

    mine = run(
        cli("launch", install, "--port", port, "--print-env", "--json",
            "--", "--use-sage-attention"),
        env,
    )  # fmt: skip
    data = json.loads(mine.stdout)["data"]
    assert data["argv"].count("--use-sage-attention") == 1
    assert data["attention"]["status"] == "user"


# What `comfy.ldm.modules.attention` looks like to the router (ComfyUI's names and
# signatures), and a model module that binds `optimized_attention` and calls it.
FAKE_ATTENTION_PY = """
import functools
def wrap_attn(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)
    return wrapper
@wrap_attn
def attention_pytorch(q, k, v, heads, mask=None, attn_precision=None, skip_reshape=False,
                      skip_output_reshape=False, **kwargs):
    return "attention_pytorch"
@wrap_attn
def attention_sage(q, k, v, heads, mask=None, attn_precision=None, skip_reshape=False,
                   skip_output_reshape=False, **kwargs):
    return "attention_sage"
SAGE_ATTENTION_IS_AVAILABLE = True
optimized_attention = attention_pytorch
optimized_attention_masked = optimized_attention
"""
FAKE_MODEL_PY = """
import types
from comfy.ldm.modules.attention import optimized_attention
def tensor(*shape):
    return types.SimpleNamespace(shape=shape, dtype="torch.float16",
                                 device=types.SimpleNamespace(type="cuda"))
video, sdxl = tensor(1, 32760, 5120), tensor(2, 4096, 640)
print("fixture model:", optimized_attention(video, video, video, 40),
      optimized_attention(sdxl, sdxl, sdxl, 10), flush=True)
"""


def add_fake_comfy(install: Path, attention_py: str = FAKE_ATTENTION_PY) -> None:
    root = install / "ComfyUI"
    for package in ("comfy", "comfy/ldm", "comfy/ldm/modules", "comfy/ldm/flux"):
        (root / package).mkdir(parents=True, exist_ok=True)
        (root / package / "__init__.py").write_text("")
    (root / "comfy/ldm/modules/attention.py").write_text(attention_py)
    (root / "comfy/ldm/flux/math.py").write_text(FAKE_MODEL_PY)


def calibrated_install(tmp_path: Path, venv: Path, env: dict[str, str]) -> Path:
    """An install with the fake ComfyUI and a calibration fresh for this machine's fake GPU."""
    from installer.attention.rules.records import dump_calibration
    from support.attention import h200_calibration

    install = make_install(tmp_path, venv)
    add_fake_comfy(install)
    # Measured on this machine's (fake) GPU, driver and venv: fresh.
    versions = {"torch": "2.9.1+cu128", "xformers": None, "sageattention": "1.0.6",
                "sageattn3": None, "comfy-kitchen": None, "triton": "3.5.1"}  # fmt: skip
    calibration = h200_calibration(versions, "NVIDIA GeForce RTX 4090", "8.9", "580.65.06")
    state = install / ".comfy-install"
    state.mkdir()
    (state / "calibration.json").write_text(dump_calibration(calibration))
    env["COMFY_FIXTURE_IMPORT"] = "comfy.ldm.flux.math"
    return install


def test_a_calibration_routes_comfyuis_attention_calls(
    tmp_path: Path, venvs: dict[str, Path], env: dict[str, str], port: int, stopper: list[Path]
) -> None:
    install = calibrated_install(tmp_path, venvs["sage"], env)
    state = install / ".comfy-install"

    shown = run(cli("launch", install, "--port", port, "--print-env"), env)
    assert shown.returncode == 0, shown.stderr
    assert "# attention: on COMFY_INSTALL_ATTENTION_ROUTES=" in shown.stdout
    assert "SageAttention 1.0.6 from 16K tokens (1.46× at 75.6K tokens)" in shown.stdout

    stopper.append(install)
    done = run(cli("launch", install, "--port", port, "--background"), env)
    assert done.returncode == 0, done.stderr
    assert "tuning attention: on" in done.stderr
    routes = json.loads((state / "attention-routes.json").read_text())
    assert routes["counts_file"] == str(state / "attention-calls.json")
    assert echo(env)["env"]["COMFY_INSTALL_ATTENTION_ROUTES"] == str(
        state / "attention-routes.json"
    )
    assert run(cli("stop", install), env).returncode == 0
    log = next((state / "logs").glob("comfyui-*.log")).read_text()
    assert "comfy-install tuning: attention routing attached to comfy.ldm.modules.attention" in log
    assert "fixture model: attention_sage attention_pytorch" in log
    counts = json.loads((state / "attention-calls.json").read_text())
    assert counts["attached"] is True
    assert counts["calls"] == {"sageattention": 1, "sdpa": 1}
    assert counts["shapes"] == {
        "fp16 D=128 N=32760": {"sageattention": 1},
        "fp16 D=64 N=4096": {"sdpa": 1},
    }

    # A ComfyUI without the function the table needs: nothing attached, it still starts.
    add_fake_comfy(install, FAKE_ATTENTION_PY.replace("def attention_sage", "def attention_x"))
    done = run(cli("launch", install, "--port", port, "--background"), env)
    assert done.returncode == 0, done.stderr
    assert run(cli("stop", install), env).returncode == 0
    newest = sorted((state / "logs").glob("comfyui-*.log"))[-1].read_text()
    assert "attention routing not attached (comfy.ldm.modules.attention has no attention_sage)" in (
        newest
    )
    assert "fixture model: attention_pytorch attention_pytorch" in newest
    assert json.loads((state / "attention-calls.json").read_text())["attached"] is False


def test_attention_routes_off_keeps_comfyuis_attention_and_every_other_tuning(
    tmp_path: Path, venvs: dict[str, Path], env: dict[str, str], port: int, stopper: list[Path]
) -> None:
    install = calibrated_install(tmp_path, venvs["sage"], env)
    state = install / ".comfy-install"
    routed = run(cli("launch", install, "--port", port, "--print-env"), env)
    assert routed.returncode == 0, routed.stderr
    env["COMFY_INSTALL_ATTENTION_ROUTES"] = "off"
    env["COMFY_INSTALL_ATTENTION_COUNTS"] = str(state / "calls.json")

    shown = run(cli("launch", install, "--port", port, "--print-env"), env)
    assert shown.returncode == 0, shown.stderr
    off = "# attention: off (you set COMFY_INSTALL_ATTENTION_ROUTES=off; ComfyUI's own attention)"
    assert off in shown.stdout.splitlines()
    mine = shown.stdout.split("# variables you set (kept as they are):")[1]
    assert "export COMFY_INSTALL_ATTENTION_ROUTES=off\n" in mine

    # Every other line is the routed launch's (the attention lines and your variables aside).
    def rest(text: str) -> list[str]:
        lines = text.split("# variables you set")[0].splitlines()
        return [
            line
            for line in lines
            if not line.startswith(("# attention", "export COMFY_INSTALL_ATTENTION"))
        ]

    assert rest(shown.stdout) == rest(routed.stdout)

    stopper.append(install)
    done = run(cli("launch", install, "--port", port, "--background"), env)
    assert done.returncode == 0, done.stderr
    assert "tuning attention: on" not in done.stderr  # off lines show with --verbose only
    assert echo(env)["env"]["COMFY_INSTALL_ATTENTION_ROUTES"] == "off"
    assert run(cli("stop", install), env).returncode == 0
    assert not (state / "attention-routes.json").exists()
    log = next((state / "logs").glob("comfyui-*.log")).read_text()
    assert (
        "comfy-install tuning: attention routing off (COMFY_INSTALL_ATTENTION_ROUTES=off); "
        "ComfyUI keeps attention_pytorch"
    ) in log
    assert "cannot be read" not in log
    assert "fixture model: attention_pytorch attention_pytorch" in log
    counts = json.loads((state / "calls.json").read_text())
    assert counts["attached"] is False and counts["off"] is True and counts["calls"] == {}


def test_ctrl_c_stops_comfyui_and_exits_130(install: Path, env: dict[str, str], port: int) -> None:
    launcher = subprocess.Popen(
        cli("launch", install, "--port", port),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(
        target=lambda: [lines.put(line) for line in launcher.stderr],  # type: ignore[union-attr]
        daemon=True,
    )
    reader.start()
    seen: list[str] = []
    deadline = time.monotonic() + 20
    while not any("ComfyUI is ready" in line for line in seen):
        assert time.monotonic() < deadline, "".join(seen)
        try:
            seen.append(lines.get(timeout=0.5))
        except queue.Empty:
            assert launcher.poll() is None, "".join(seen)
    child = json.loads((install / ".comfy-install" / "comfyui.pid").read_text())["pid"]
    assert child != launcher.pid and process_running(child)

    launcher.send_signal(signal.SIGINT)
    assert launcher.wait(timeout=20) == 130
    reader.join(timeout=5)
    while not lines.empty():
        seen.append(lines.get())
    output = "".join(seen)
    assert gone(child), f"ComfyUI (pid {child}) outlived the launcher"
    assert "fixture ComfyUI: stopped" in output  # its own output reached the terminal
    assert "ComfyUI was stopped" in output
    assert "error:" not in output, "stopping on purpose is not an error"
    assert not (install / ".comfy-install" / "comfyui.pid").exists()


def test_busy_port_names_the_process_that_holds_it(install: Path, env: dict[str, str]) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        done = run(cli("launch", install, "--port", busy), env)
    assert done.returncode == 3
    assert f"Port {busy} on 127.0.0.1 is already in use" in done.stderr
    if sys.platform.startswith("linux"):
        assert f"by pid {os.getpid()} (" in done.stderr
        assert "python" in done.stderr
    assert "--port" in done.stderr  # the hint
    assert not Path(env["COMFY_FIXTURE_ECHO"]).exists()


# --- the shim in a real interpreter -----------------------------------------------------------

PROBE_MAIN = """
import builtins, json, sys
before = "torch" in sys.modules
try:
    import torch
    record = torch.RECORD
except ImportError:
    record = None
print(json.dumps({"torch_before": before, "record": record,
                  "compile": hasattr(builtins, "COMFY_TORCH_COMPILE")}))
"""


def shim_env(**values: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if k not in RELEVANT_VARIABLES}
    return {**clean, "COMFY_INSTALL_TUNING": "1", **values}


def venv_site(venv: Path) -> Path:
    return next(venv.glob("lib/python*/site-packages"))


def run_probe(venv: Path, folder: Path, env: dict[str, str], script: str = "main.py") -> Any:
    path = folder / script
    path.write_text(PROBE_MAIN)
    done = run([str(venv / "bin" / "python"), str(path)], env)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return json.loads(done.stdout), done.stderr


def test_shim_never_breaks_startup_without_torch(venvs: dict[str, Path], tmp_path: Path) -> None:
    venv = venvs["bare"]
    assert ensure_shim(venv_site(venv)) == "current"
    env = shim_env(ENABLE_TF32="1", ENABLE_TORCH_COMPILE="1", MATMUL_PRECISION="high")
    done = run([str(venv / "bin" / "python"), "-c", "print('ok')"], env)
    assert (done.returncode, done.stdout, done.stderr) == (0, "ok\n", "")
    result, _ = run_probe(venv, tmp_path, env)
    assert result == {"torch_before": False, "record": None, "compile": True}


def test_shim_applies_the_switches_after_torch_is_imported(
    venvs: dict[str, Path], tmp_path: Path
) -> None:
    venv = venvs["torch"]
    ensure_shim(venv_site(venv))
    env = shim_env(ENABLE_TF32="1", ENABLE_CUDNN_BENCHMARK="0", MATMUL_PRECISION="medium")
    result, stderr = run_probe(venv, tmp_path, env)
    assert result["torch_before"] is False  # the shim itself never imports torch
    assert result["record"] == {
        "cuda.matmul.allow_tf32": True,
        "cudnn.allow_tf32": True,
        "cudnn.benchmark": False,
        "matmul_precision": "medium",
    }
    assert result["compile"] is False
    assert stderr.count("comfy-install tuning:") == 1  # once, although lib64 -> lib
    # Not ComfyUI (another script name), or no marker: nothing happens.
    other, _ = run_probe(venv, tmp_path, env, script="other.py")
    assert other["record"] == {}
    env.pop("COMFY_INSTALL_TUNING")
    plain, _ = run_probe(venv, tmp_path, env)
    assert plain["record"] == {}


def test_comfy_torch_compile_exists_only_when_enabled(
    venvs: dict[str, Path], tmp_path: Path
) -> None:
    venv = venvs["torch"]
    ensure_shim(venv_site(venv))
    script = tmp_path / "main.py"
    script.write_text(
        "import builtins, json, sys\n"
        "compiled = builtins.COMFY_TORCH_COMPILE('model', dynamic=True)\n"
        "import torch\n"
        "print(json.dumps({'result': compiled, 'call': torch.RECORD['compile']}))\n"
    )
    env = shim_env(
        ENABLE_TORCH_COMPILE="1",
        TORCH_COMPILE_BACKEND="inductor",
        TORCH_COMPILE_MODE="max-autotune",
        TORCH_COMPILE_FULLGRAPH="1",
        TORCH_COMPILE_DYNAMIC="false",
    )
    done = run([str(venv / "bin" / "python"), str(script)], env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "result": ["compiled", "model"],
        "call": {"model": "model", "backend": "inductor", "mode": "max-autotune",
                 "fullgraph": True, "dynamic": True},
    }  # fmt: skip
    assert "COMFY_TORCH_COMPILE is available to nodes" in done.stderr
    result, _ = run_probe(venv, tmp_path, shim_env(ENABLE_TORCH_COMPILE="0", ENABLE_TF32="1"))
    assert result["compile"] is False


# --- the shim with a real torch on a real GPU -----------------------------------------------

REAL_TORCH_MAIN = """
import builtins, json, sys, warnings
caught = []
warnings.simplefilter("always")
warnings.showwarning = lambda message, category, *a, **k: caught.append(str(message))
before = "torch" in sys.modules
import torch
import torch.nn.functional as F
x = torch.randn(512, 512, device="cuda")
y = x @ x
F.conv2d(torch.randn(1, 3, 64, 64, device="cuda"), torch.randn(8, 3, 3, 3, device="cuda"))
compiled = builtins.COMFY_TORCH_COMPILE(torch.nn.Linear(64, 64).cuda())
for _ in range(3):
    out = compiled(torch.randn(8, 64, device="cuda"))
torch.cuda.synchronize()
print(json.dumps({
    "torch_before": before, "torch": torch.__version__,
    "matmul_tf32": torch.backends.cuda.matmul.allow_tf32,
    "cudnn_tf32": torch.backends.cudnn.allow_tf32,
    "benchmark": torch.backends.cudnn.benchmark,
    "precision": torch.get_float32_matmul_precision(),
    "allocator_backend": torch.cuda.get_allocator_backend(),
    "compiled_shape": list(out.shape),
    "warnings": caught,
}))
"""


def cuda_torch_python() -> str | None:
    """A Python whose torch sees a GPU: $LAUNCH_TORCH_PYTHON, else python3 on PATH."""
    for candidate in (os.environ.get("LAUNCH_TORCH_PYTHON"), shutil.which("python3")):
        if not candidate:
            continue
        check = "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"
        if (
            subprocess.run([candidate, "-c", check], capture_output=True, check=False).returncode
            == 0
        ):
            return candidate
    return None


@pytest.mark.gpu
@pytest.mark.parametrize(
    ("scenario", "backend"),
    [
        # What the launch sets for the default compile mode (reduce-overhead: CUDA
        # graphs); it passes --disable-cuda-malloc, so ComfyUI adds no backend.
        ({"PYTORCH_ALLOC_CONF": "expandable_segments:True"}, "native"),
        # ComfyUI's default allocator, with a compile mode that records no graphs.
        ({"PYTORCH_ALLOC_CONF": "expandable_segments:True",
          "PYTORCH_CUDA_ALLOC_CONF": "backend:cudaMallocAsync",
          "TORCH_COMPILE_MODE": "default"}, "cudaMallocAsync"),
    ],
)  # fmt: skip
def test_shim_tunes_a_real_torch_on_a_real_gpu(
    tmp_path: Path, scenario: dict[str, str], backend: str
) -> None:
    python = cuda_torch_python()
    if python is None:
        pytest.skip("no Python with a CUDA torch (set LAUNCH_TORCH_PYTHON)")
    torch_site = subprocess.run(
        [python, "-c", "import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    venv = tmp_path / "venv"
    subprocess.run([python, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = venv_site(venv)
    (site / "torch_site.pth").write_text(torch_site + "\n")
    assert ensure_shim(site) == "current"
    script = tmp_path / "main.py"
    script.write_text(REAL_TORCH_MAIN)
    env = shim_env(
        ENABLE_TF32="1",
        ENABLE_CUDNN_BENCHMARK="1",
        MATMUL_PRECISION="high",
        ENABLE_TORCH_COMPILE="1",
        **scenario,
    )
    done = run([str(venv / "bin" / "python"), str(script)], env, timeout=600)
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(facts, indent=2))  # for the record: allocator backend, warnings
    assert "Traceback" not in done.stderr and "FAILED" not in done.stderr, done.stderr
    assert facts["torch_before"] is False
    assert facts["matmul_tf32"] is True and facts["cudnn_tf32"] is True
    assert facts["benchmark"] is True
    assert facts["precision"] == "high"
    assert facts["compiled_shape"] == [8, 64]
    assert facts["allocator_backend"] == backend
    assert "comfy-install tuning: TF32 on, cuDNN benchmark on" in done.stderr
