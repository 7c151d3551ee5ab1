"""Checks on a real NVIDIA GPU (run with `pytest -m gpu` on the GPU machine, not in CI).

They use the machine's own torch (a venv made with `--system-site-packages`
over it), real NVML, and wheels carried in `GPU_WHEELS` (the machine has no
network): the real xformers and sageattention 1.0.6 wheels from the registry,
plus SageAttention stand-ins built here and served on 127.0.0.1. What they
find is written to `$OUT` when that is set (the worked examples in docs/).
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

from installer.core.config import Dependencies, IndexOptions, ToolsManifest
from installer.core.log import InstallerLogger
from installer.edges.environment import find_uv_binary
from installer.edges.gpu import detect_gpus
from installer.edges.uv import Uv
from installer.optimizations.install import install_optimizations
from installer.optimizations.target import StepTarget
from installer.optimizations.venv import inspect_venv_torch
from installer.plan.compat import spec_contains
from support.cli import SHIPPED_DEPS
from support.http_server import LocalHTTPServer
from support.wheels import WheelSpec, build_wheel, sha256_of

pytestmark = pytest.mark.gpu

OUT = Path(os.environ["OUT"]) if os.environ.get("OUT") else None
CARRIED = Path(os.environ.get("GPU_WHEELS", ".whl"))


def save(name: str, data: Any) -> None:
    """Keep a finding under $OUT (for the docs) and print it."""
    text = data if isinstance(data, str) else json.dumps(data, indent=2)
    print(f"--- {name}\n{text}")
    if OUT is not None:
        (OUT / name).write_text(text)


@pytest.fixture(scope="module")
def gpu_report() -> Any:
    report = detect_gpus()
    if not report.has_nvidia:
        pytest.skip(f"no NVIDIA GPU here: {report.reason}")
    return report


def machine_python() -> str:
    """The Python that holds the machine's CUDA torch."""
    for candidate in (os.environ.get("TORCH_PYTHON"), sys.executable, shutil.which("python3")):
        if (
            candidate
            and subprocess.run(
                [candidate, "-c", "import torch"], capture_output=True, check=False
            ).returncode
            == 0
        ):
            return candidate
    pytest.skip("no Python with torch on this machine")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NO_COLOR="1")
    return subprocess.run(
        [sys.executable, "-m", "installer", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_nvml_sees_the_gpu_and_the_driver(gpu_report: Any) -> None:
    card = gpu_report.gpus[0]
    save(
        "gpu-report.json",
        {
            "source": gpu_report.source,
            "reason": gpu_report.reason,
            "driver": gpu_report.driver_version,
            "cuda_driver": gpu_report.cuda_driver_version,
            "gpus": [vars(g) for g in gpu_report.gpus],
        },
    )
    assert gpu_report.source == "nvml"
    assert card.name.startswith("NVIDIA")
    assert card.vram_total_bytes and card.vram_total_bytes > 10 * 2**30
    assert gpu_report.cuda_driver_version is not None


def test_doctor_and_dry_run_on_this_gpu(gpu_report: Any, tmp_path: Path) -> None:
    doctor = cli("doctor", str(tmp_path / "inst"), "--json")
    assert doctor.returncode == 0, doctor.stderr
    save("doctor.json", doctor.stdout)
    data = json.loads(doctor.stdout)["data"]
    assert data["gpu"]["gpus"][0]["cc"] == gpu_report.gpus[0].cc
    plan = cli("install", str(tmp_path / "inst"), "--dry-run", "--json")
    assert plan.returncode == 0, plan.stderr
    save("dry-run.json", plan.stdout)
    text = cli("install", str(tmp_path / "inst"), "--dry-run")
    save("dry-run.txt", text.stdout)
    plan_data = json.loads(plan.stdout)["data"]
    assert plan_data["torch"]["cuda"] is not None
    assert not (tmp_path / "inst").exists()


def test_gpu_step_records_the_gpu(gpu_report: Any, tmp_path: Path) -> None:
    target = tmp_path / "inst"
    done = cli("install", str(target), "--only", "gpu")
    assert done.returncode == 0, done.stderr
    state = json.loads((target / ".comfy-install" / "state.json").read_text())
    recorded = state["steps"]["gpu"]["outputs"]
    save("state-gpu-step.json", recorded)
    assert recorded["gpus"][0]["name"] == gpu_report.gpus[0].name
    assert recorded["gpus"][0]["cc"] == gpu_report.gpus[0].cc
    assert recorded["cuda_driver_version"] == gpu_report.cuda_driver_version


SA_STANDINS = {
    "sageattention2-sm80-89": (
        "sageattention-2.2.0+cu130torch2.11.0-cp39-abi3-linux_x86_64.whl",
        ">=8.0,<9.0",
    ),
    "sageattention2-sm90": (
        "sageattention-2.2.0+cu130torch2.11.0sm90-cp39-abi3-linux_x86_64.whl",
        ">=9.0,<10.0",
    ),
    "sageattention2-sm120": (
        "sageattention-2.2.0+cu130torch2.11.0sm120-cp39-abi3-linux_x86_64.whl",
        ">=12.0,<13.0",
    ),
    "sageattention3": (
        "sageattn3-1.0.0+cu130torch2.11.0-cp39-abi3-linux_x86_64.whl",
        ">=10.0,<13.0",
    ),
}


def test_step10_over_the_machines_torch(gpu_report: Any, tmp_path: Path) -> None:
    python = machine_python()
    venv = tmp_path / "venv"
    subprocess.run(
        [python, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True
    )
    venv_python = venv / "bin" / "python"
    # The machine's python may itself be a venv: --system-site-packages then reaches only
    # the base interpreter's folders, so point a .pth at the folders that hold its torch.
    machine_sites = subprocess.run(
        [python, "-c", "import site; print('\\n'.join(site.getsitepackages()))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    purelib = subprocess.run(
        [str(venv_python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(purelib) / "machine-torch.pth").write_text(machine_sites)
    before = inspect_venv_torch(venv_python)
    assert before.version, "the machine's torch is not visible in the venv"
    files = {}
    for name, (filename, _) in SA_STANDINS.items():
        dist, version = filename.split("-")[:2]
        module = "sageattn3" if dist == "sageattn3" else "sageattention"
        files[name] = build_wheel(
            WheelSpec(
                dist,
                version,
                tag="cp39-abi3-linux_x86_64",
                filename=filename,
                files={f"{module}/__init__.py": f"BUILD = {name!r}\n"},
            ),
            tmp_path / "sa",
        )
    deps = json.loads(SHIPPED_DEPS.read_text())
    with LocalHTTPServer() as server:
        for path in files.values():
            server.add(f"/releases/{path.name}", path.read_bytes())
        deps["pip_packages"]["sageattention_wheels"] = [
            {
                "name": name,
                "cc": cc,
                "torch": ">=2.11,<2.12",
                "cuda": ["cu130", "cu128"],
                "python": ">=3.9",
                "platform": "linux",
                "import_name": "sageattn3" if name.endswith("3") else "sageattention",
                "url": server.url(f"/releases/{filename}"),
            }
            for name, (filename, cc) in SA_STANDINS.items()
        ]
        manifest = ToolsManifest.model_validate(
            {
                "schema_version": 1,
                "files": {p.name: {"sha256": sha256_of(p)} for p in files.values()},
            }
        )
        (tmp_path / ".comfy-install").mkdir()
        os.environ["COMFY_INSTALL_CACHE_DIR"] = str(tmp_path / "cache")
        log = InstallerLogger(verbosity=0, log_file=tmp_path / "step10.log")
        uv = Uv(
            binary=find_uv_binary() or "uv",
            index=IndexOptions(find_links=[str(CARRIED.resolve())], offline=True),
            log=log,
        )
        target = StepTarget(
            python_exe=venv_python,
            install_path=tmp_path,
            platform="linux",
            gpu=gpu_report,
            uv=uv,
            manifest=manifest,
        )
        outcomes = install_optimizations(
            venv_python,
            tmp_path / "ComfyUI",
            tmp_path,
            Dependencies.model_validate(deps),
            log,
            target=target,
        )
    after = inspect_venv_torch(venv_python)
    imports = subprocess.run(
        [
            str(venv_python),
            "-c",
            "import json, importlib\nout = {}\n"
            "for m in ('xformers', 'xformers.ops', 'sageattention', 'triton'):\n"
            "    try:\n        mod = importlib.import_module(m)\n"
            "        out[m] = getattr(mod, '__version__', getattr(mod, 'BUILD', 'ok'))\n"
            "    except Exception as e:\n        out[m] = 'ERROR ' + repr(e)[:300]\n"
            "print(json.dumps(out))",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    save(
        "step10-h100.json",
        {
            "gpu": [vars(g) for g in gpu_report.gpus],
            "torch_before": vars(before),
            "torch_after": vars(after),
            "outcomes": [o.as_dict() for o in outcomes],
            "imports": imports.stdout.strip() or imports.stderr[-2000:],
        },
    )
    installed = {o.name for o in outcomes if o.status == "installed" and o.kind == "wheel"}
    cc = gpu_report.gpus[0].cc
    expected = {n for n, (_, spec) in SA_STANDINS.items() if spec_contains(spec, cc)}
    assert installed == expected
    assert after.pins == before.pins
