"""Environment faults: no git, uv that will not start, a full disk, DIR unusable, odd paths,
a read-only or modified clone, and NVML failing in every way it can.

Filesystem faults use real filesystems: a small tmpfs for a full disk and
read-only bind mounts for "not writable" (the tests run as root, which
ignores file modes but not a read-only mount); where mounting is not
permitted (an unprivileged CI runner) they are skipped with that reason.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from faults.faultkit import (
    BASE_PYTHON,
    BaseInstall,
    Case,
    Snapshot,
    assert_clean_after_rerun,
    assert_nothing_lost,
    assert_state_valid,
    clone_changes,
    clone_head,
    copy_install,
    error_and_hint,
    fill_disk,
    invoke,
    read_only,
    run_env,
    tmpfs,
    torch_files,
)
from support.cli import Fixtures, cli_path, venv_dists
from support.comfy_repo import git
from support.http_server import GeneratedBody
from support.package_index import serve_index
from support.wheels import WheelSpec, build_wheel

needs_mount = pytest.mark.usefixtures("mountable")


def pin_v1(case: Case) -> str:
    """Configure ComfyUI at the fixture's v1 (the copy is at v2), so step 5 must run."""
    commit = case.fixtures.commits["v1"]
    case.config(comfyui={"url": str(case.fixtures.comfy_repo), "ref": "v1", "commit": commit})
    return commit


# --------------------------------------------------------------------------- tools


def test_git_missing_when_a_clone_must_move(case: Case, tmp_path: Path) -> None:
    v1 = pin_v1(case)
    before = Snapshot.take(case.dir)
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    failed = case.run(env={"PATH": str(empty)})
    assert failed.code == 3, failed.stderr
    error, hint = error_and_hint(failed.stderr)
    # Found by the plan, before anything is written (the dry run says the same).
    assert error == "git is needed to clone ComfyUI, but git was not found on PATH."
    assert "Install git" in hint
    assert_nothing_lost(before)
    again = case.run()
    assert again.code == 0, again.stderr
    assert_clean_after_rerun(before, head=v1)


def user_env_with_broken_uv(tmp_path: Path, mode: int) -> Path:
    """A venv where comfy-install is importable and its bundled `bin/uv` is broken.

    The `uv` package finds its binary in the running Python's scripts folder
    first, so the installer run by this venv's Python meets this `uv`: a copy
    of the real one without execute permission (a noexec mount, an archive
    that lost file modes), or a truncated one (a broken download).
    """
    from installer.edges.environment import find_uv_binary

    real_uv = find_uv_binary()
    assert real_uv
    venv = tmp_path / "user-env"
    subprocess.run([real_uv, "venv", "-q", str(venv), "--python", BASE_PYTHON], check=True)
    site = next(venv.glob("lib/python*/site-packages"))
    import sysconfig

    project = sysconfig.get_paths()["purelib"]
    (site / "zz_comfy_install.pth").write_text(f"import site; site.addsitedir({project!r})\n")
    broken = venv / "bin" / "uv"
    if mode == 0o755:
        broken.write_bytes(Path(real_uv).read_bytes()[:4096])
    else:
        shutil.copy(real_uv, broken)
    broken.chmod(mode)
    return venv / "bin" / "python"


@pytest.mark.parametrize(
    ("mode", "why"),
    [
        (0o644, "could not be started (Permission denied)"),
        (0o755, "uv does not run: uv --version failed (exit code -11)"),
    ],
    ids=["not-executable", "truncated"],
)
def test_uv_that_cannot_start_exits_3(case: Case, tmp_path: Path, mode: int, why: str) -> None:
    python = user_env_with_broken_uv(tmp_path, mode)
    case.config()
    before = Snapshot.take(case.dir)
    failed = subprocess.run(
        [str(python), "-m", "installer", *case.args()],
        env=case.full_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert failed.returncode == 3, failed.stderr
    error, hint = error_and_hint(failed.stderr)
    assert error.startswith("Step 2 (uv) failed: uv")
    assert why in error
    assert "uv" in hint
    assert_nothing_lost(before)
    again = case.run()
    assert again.code == 0, again.stderr
    assert {k: venv_dists(case.dir)[k] for k in ("torch", "torchvision", "torchaudio")} == {
        "torch": "2.9.1+cu128",
        "torchvision": "0.24.1",
        "torchaudio": "2.9.1",
    }


def test_rerun_after_a_failed_uv_step_keeps_the_venv(
    case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uv as uv_package

    from installer.edges.environment import find_uv_binary

    real_uv = find_uv_binary()
    assert real_uv
    broken = tmp_path / "uv-copy" / "uv"
    broken.parent.mkdir()
    shutil.copy(real_uv, broken)
    broken.chmod(0o644)
    case.config()
    before = Snapshot.take(case.dir)
    monkeypatch.setattr(uv_package, "find_uv_bin", lambda: str(broken))
    failed = case.run()
    assert failed.code == 3, failed.stderr
    monkeypatch.undo()
    again = case.run()
    assert again.code == 0, again.stderr
    assert torch_files(case.dir) == before.torch, "the venv was recreated and torch reinstalled"


# --------------------------------------------------------------------------- disk


@needs_mount
def test_disk_fills_during_a_model_download(case: Case) -> None:
    small = case.tmp / "small-disk"
    with tmpfs(small, "30m"):
        case.dir = copy_install(case.dir, small / "inst ü")
        resource = case.server.add("/m/model.bin", GeneratedBody(3_000_000, seed=2))
        case.config(
            models=[
                {
                    "url": case.server.url("/m/model.bin"),
                    "kind": "checkpoints",
                    "sha256": resource.sha256,
                    "size": resource.size,
                }
            ]
        )
        final = case.models / "checkpoints" / "model.bin"
        before = Snapshot.take(case.dir)
        filler = fill_disk(small, 1_000_000)
        failed = case.run("--min-free-gb", "0")
        assert failed.code == 3, failed.stderr
        error, hint = error_and_hint(failed.stderr)
        assert error.startswith("Step 12 (models) failed: cannot write model.bin in ")
        assert error.endswith("No space left on device")
        assert "Free disk space" in hint
        assert not final.exists()
        assert_nothing_lost(before, verified={final: resource.sha256})
        filler.unlink()
        again = case.run("--min-free-gb", "0")
        assert again.code == 0, again.stderr
        assert "resumed at" in again.stderr
        assert_clean_after_rerun(before)


@needs_mount
@pytest.mark.parametrize(
    "leave",
    [
        pytest.param(8192, id="a-few-KiB-left"),
        pytest.param(0, id="no-byte-left"),
    ],
)
def test_disk_already_full_exits_3_before_any_step(case: Case, leave: int) -> None:
    small = case.tmp / "small-disk"
    with tmpfs(small, "30m"):
        case.dir = copy_install(case.dir, small / "inst ü")
        case.config(extra_requirements=["needs-torch"])
        before = Snapshot.take(case.dir)
        filler = fill_disk(small, leave)
        failed = case.run("--min-free-gb", "0")
        assert failed.code == 3, failed.stderr
        error, hint = error_and_hint(failed.stderr)
        assert "No space left on device" in error
        assert "Free disk space" in hint
        assert_nothing_lost(before)
        filler.unlink()
        again = case.run("--min-free-gb", "0")
        assert again.code == 0, again.stderr


@needs_mount
def test_disk_fills_during_a_uv_install(case: Case) -> None:
    blob = random.Random(1).randbytes(400_000).hex()
    fat = build_wheel(
        WheelSpec("fatpkg", "1.0", files={"fatpkg/__init__.py": "", "fatpkg/blob.txt": blob}),
        case.tmp / "fat",
    )
    serve_index(case.server, [*sorted(case.fixtures.links.glob("*.whl")), fat])
    small = case.tmp / "small-disk"
    with tmpfs(small, "30m"):
        case.dir = copy_install(case.dir, small / "inst ü")
        case.config(extra_requirements=["fatpkg==1.0"])
        before = Snapshot.take(case.dir)
        filler = fill_disk(small, 200_000)
        failed = case.run("--min-free-gb", "0")
        assert_nothing_lost(before)
        filler.unlink()
        assert failed.code == 3, failed.stderr
        _, hint = error_and_hint(failed.stderr)
        assert "Free disk space" in hint


# --------------------------------------------------------------------------- DIR


@needs_mount
def test_unusable_dir_exits_3_then_a_full_install_works_there(
    base_install: BaseInstall, fixtures: Fixtures, tmp_path: Path
) -> None:
    env = run_env(fixtures, tmp_path)
    parent = tmp_path / "parent"
    parent.mkdir()
    target = parent / "Comfy dir ü"
    args = [
        "install", str(target), "--config", str(base_install.config), "--torch-index",
        "default", "--python", BASE_PYTHON, "--gpu", "none",
    ]  # fmt: skip
    with read_only(parent):
        failed = invoke(args, env)
    assert failed.code == 3, failed.stderr
    error, hint = error_and_hint(failed.stderr)
    assert error == (
        f"{target} cannot be created: {parent} is not writable (no permission, or a "
        "read-only file system)."
    )
    assert "Choose a DIR you can write to" in hint
    target.write_text("my notes")
    failed = invoke(args, env)
    assert failed.code == 3, failed.stderr
    error, hint = error_and_hint(failed.stderr)
    assert error == f"{target} exists and is not a directory."
    assert target.read_text() == "my notes"
    target.unlink()
    done = invoke([*args, "--find-links", str(fixtures.links), "--offline"], env)
    assert done.code == 0, done.stderr
    assert (target / "venv" / "bin" / "python").is_file()
    assert clone_head(target) == fixtures.commits["v2"]


@needs_mount
def test_read_only_dir_exits_3(case: Case) -> None:
    resource = case.server.add("/m/model.bin", GeneratedBody(3000))
    case.config(
        models=[
            {
                "url": case.server.url("/m/model.bin"),
                "kind": "checkpoints",
                "sha256": resource.sha256,
            }
        ]
    )
    before = Snapshot.take(case.dir)
    with read_only(case.dir):
        failed = case.run()
    assert_nothing_lost(before)
    assert failed.code == 3, failed.stderr
    error, _ = error_and_hint(failed.stderr)
    assert "not writable" in error


# --------------------------------------------------------------------------- odd paths


def test_full_install_in_a_path_with_spaces_and_non_ascii(base_install: BaseInstall) -> None:
    target = base_install.dir
    assert " " in str(target) and not str(target).isascii()
    assert base_install.first.returncode == 0, base_install.first.stderr
    steps = assert_state_valid(target)["steps"]
    assert steps["verify"]["status"] == "done"
    assert steps["verify"]["outputs"]["startup_test"] == "ok"
    assert venv_dists(target)["torch"] == "2.9.1+cu128"
    launched = subprocess.run(
        [str(target / "run_comfyui.sh"), "--print-env", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert launched.returncode == 0, launched.stderr
    printed = json.loads(launched.stdout)
    assert printed["exit_code"] == 0
    assert str(target) in json.dumps(printed, ensure_ascii=False)


def test_printed_next_command_is_copy_pasteable(base_install: BaseInstall) -> None:
    import shlex

    line = next(
        line for line in base_install.first.stderr.splitlines() if line.startswith("Next: ")
    )
    assert shlex.split(line.removeprefix("Next: ")) == [
        "comfy-install",
        "launch",
        str(base_install.dir),
    ]


# --------------------------------------------------------------------------- the clone


@needs_mount
def test_read_only_clone_is_left_intact(case: Case) -> None:
    v1 = pin_v1(case)
    before = Snapshot.take(case.dir)
    with read_only(case.dir / "ComfyUI"):
        failed = case.run()
    assert failed.code == 1, failed.stderr
    error, hint = error_and_hint(failed.stderr)
    assert error.startswith("Step 5 (comfyui) failed: git checkout failed")
    assert "Read-only file system" in failed.stderr
    assert "run the same command again" in hint
    assert_nothing_lost(before)
    again = case.run()
    assert again.code == 0, again.stderr
    assert_clean_after_rerun(before, head=v1)


def test_clone_with_local_changes_is_never_overwritten(case: Case) -> None:
    v1 = pin_v1(case)
    main = case.dir / "ComfyUI" / "main.py"
    mine = main.read_text() + "\n# my local change\n"
    main.write_text(mine)
    head = clone_head(case.dir)
    torch = torch_files(case.dir)
    failed = case.run()
    assert failed.code == 1, failed.stderr
    error, hint = error_and_hint(failed.stderr)
    assert "has local changes (main.py)" in error
    assert "stash" in hint
    assert main.read_text() == mine
    assert clone_head(case.dir) == head
    assert torch_files(case.dir) == torch
    assert_state_valid(case.dir)
    comfy = case.dir / "ComfyUI"
    git("stash", cwd=comfy)
    again = case.run()
    assert again.code == 0, again.stderr
    assert clone_head(case.dir) == v1
    git("stash", "pop", cwd=comfy)
    assert main.read_text() == mine, "the user's change was lost"
    assert clone_changes(case.dir) == "M main.py"


# --------------------------------------------------------------------------- NVML

NVML_CALLS = (
    "nvmlInit",
    "nvmlSystemGetDriverVersion",
    "nvmlSystemGetCudaDriverVersion",
    "nvmlDeviceGetCount",
    "nvmlDeviceGetHandleByIndex",
    "nvmlDeviceGetCudaComputeCapability",
    "nvmlDeviceGetMemoryInfo",
    "nvmlDeviceGetName",
    "nvmlDeviceGetUUID",
    "nvmlDeviceGetPciInfo",
    "nvmlShutdown",
)


def nvml_error_classes() -> list[type[Exception]]:
    import pynvml

    return [getattr(pynvml, name) for name in dir(pynvml) if name.startswith("NVMLError_")]


def fake_nvml(monkeypatch: pytest.MonkeyPatch, failing: str, error: Exception) -> None:
    """Replace pynvml's functions with a healthy one-GPU machine, ``failing`` raising ``error``."""
    import pynvml

    healthy: dict[str, Callable[..., Any]] = {
        "nvmlInit": lambda: None,
        "nvmlShutdown": lambda: None,
        "nvmlSystemGetDriverVersion": lambda: "580.159.04",
        "nvmlSystemGetCudaDriverVersion": lambda: 13000,
        "nvmlDeviceGetCount": lambda: 1,
        "nvmlDeviceGetHandleByIndex": lambda index: ("handle", index),
        "nvmlDeviceGetCudaComputeCapability": lambda handle: (9, 0),
        "nvmlDeviceGetMemoryInfo": lambda handle: SimpleNamespace(total=80 << 30, free=79 << 30),
        "nvmlDeviceGetName": lambda handle: "NVIDIA H100 80GB HBM3",
        "nvmlDeviceGetUUID": lambda handle: "GPU-0000",
        "nvmlDeviceGetPciInfo": lambda handle: SimpleNamespace(busId="00000000:00:06.0"),
    }

    def fail(*args: Any) -> Any:
        raise error

    for name, function in healthy.items():
        monkeypatch.setattr(pynvml, name, fail if name == failing else function)


def expected_report(failing: str) -> str:
    """How detection must end when ``failing`` raises: a GPU, a warning, or no GPU."""
    if failing in ("nvmlDeviceGetUUID", "nvmlDeviceGetPciInfo", "nvmlShutdown"):
        return "gpu"  # optional details, or the clean-up: the GPU is still known
    if failing.startswith("nvmlDevice") and failing != "nvmlDeviceGetCount":
        return "warning"  # this GPU could not be read: "GPU 0 could not be read: ..."
    return "none"  # NVML itself failed: no GPU, with the reason


@pytest.mark.parametrize("failing", NVML_CALLS)
def test_every_nvml_error_in_every_call_gives_a_clean_report(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, failing: str
) -> None:
    from installer.edges.gpu import detect_gpus

    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi to fall back to
    wanted = expected_report(failing)
    wrong: list[str] = []
    for error_class in nvml_error_classes():
        fake_nvml(monkeypatch, failing, error_class())
        try:
            report = detect_gpus()
        except Exception as exc:
            wrong.append(f"{error_class.__name__}: raised {exc!r}")
            continue
        got = (
            "gpu"
            if report.has_nvidia
            else "warning"
            if report.warnings and report.warnings[0].startswith("GPU 0 could not be read")
            else "none"
        )
        if got != wanted or not report.reason:
            wrong.append(f"{error_class.__name__}: {got} ({report.reason!r}), wanted {wanted}")
    assert wrong == []
    assert len(nvml_error_classes()) >= 30


SITECUSTOMIZE = """
import pynvml

def _lost(*args):
    raise pynvml.NVMLError_GpuIsLost()

pynvml.nvmlInit = lambda: None
pynvml.nvmlShutdown = lambda: None
pynvml.nvmlSystemGetDriverVersion = lambda: "580.159.04"
pynvml.nvmlSystemGetCudaDriverVersion = lambda: 13000
pynvml.nvmlDeviceGetCount = lambda: 1
pynvml.nvmlDeviceGetHandleByIndex = _lost
"""


def test_doctor_json_with_a_gpu_fallen_off_the_bus(case: Case, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    env = case.full_env(
        PYTHONPATH=str(site), PATH=f"{empty}{os.pathsep}{Path(sys.executable).parent}"
    )
    env.pop("PYTHONSAFEPATH", None)
    done = subprocess.run(
        [cli_path(), "doctor", str(case.dir), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    report = json.loads(done.stdout)
    assert report["exit_code"] == 0
    assert "a GPU fell off the bus" in json.dumps(report["data"])
