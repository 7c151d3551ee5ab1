"""Locked installs for real: the real ComfyUI v0.3.77 and the registry's packages.

Writes the Linux lock of the fixture bundle for the default index (torch 2.9.1
from the registry) and this Python, then installs it the way steps 7 and 8 do
(torch with the lock as a constraint, then ComfyUI's requirements with
`--require-hashes --no-deps`) and starts ComfyUI with nothing else installed
(`main.py --cpu --quick-test-for-ci`: every built-in node imports). How a
locked step 8 compares with live resolution is measured in `bench/run.py`.
Marked `real`: it needs the package registry; under a minute with a warm uv
cache.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.cli import BASE_PYTHON, SHIPPED_DEPS, lock_cli, run, venv_dists
from support.comfy_repo import git
from support.real import bundle_path

pytestmark = pytest.mark.real

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
MISSING_MODULE_SIGNS = ("No module named", "ModuleNotFoundError", "IMPORT FAILED", "Cannot import")


@pytest.fixture(scope="module")
def real_lock(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A lock of the bundle's ComfyUI for linux, the default index and this Python."""
    root = tmp_path_factory.mktemp("lock-real")
    bundle = bundle_path()
    source = root / "comfy-src"
    git("clone", "-q", str(bundle), str(source), cwd=root)
    commit = git("rev-parse", "HEAD", cwd=source)
    deps = json.loads(SHIPPED_DEPS.read_text())
    deps["comfyui"] = {"url": str(bundle), "ref": "v0.3.77", "commit": commit}
    deps["python"]["default"] = PYTHON
    config = root / "deps.json"
    config.write_text(json.dumps(deps, indent=2))
    lock_dir = root / "locks"
    env = dict(os.environ, NO_COLOR="1")
    start = time.monotonic()
    done = run(
        lock_cli(
            "--config",
            str(config),
            "--platform",
            "linux",
            "--torch-variant",
            "default",
            "--python",
            PYTHON,
            "--lock-dir",
            str(lock_dir),
        ),
        env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return {
        "root": root,
        "config": config,
        "lock": lock_dir / f"linux-default-py{PYTHON.replace('.', '')}.txt",
        "source": source,
        "deps": deps,
        "env": env,
        "lock_seconds": time.monotonic() - start,
    }


def test_real_lock_pins_everything_with_hashes(real_lock: dict) -> None:
    from installer.core.lockfile import parse_lock

    lock = parse_lock(real_lock["lock"])
    requirements = {e.name for e in lock.sections["requirements"]}
    torch_only = {e.name for e in lock.sections["torch"]}
    assert {"comfyui-frontend-package", "transformers", "av", "requests"} <= requirements
    assert {"torch", "torchvision", "torchaudio"} <= torch_only
    assert not {"torch", "torchvision", "torchaudio"} & requirements
    assert any(name.startswith("nvidia-") for name in torch_only)
    for entry in lock.entries:
        assert "==" in entry.requirement and entry.hashes, entry
        assert all(h.startswith("sha256:") for h in entry.hashes)
    assert lock.header.values["comfyui-commit"] == real_lock["deps"]["comfyui"]["commit"]


def _logger(path: Path):
    from installer.core.log import InstallerLogger

    return InstallerLogger(verbosity=-1, stream=io.StringIO(), log_file=path)


def _venv_with_torch(root: Path, lock: Path | None):
    """Steps 4 and 7: a venv and the torch trio (pinned by the lock when one is given)."""
    from installer.core.config import IndexOptions
    from installer.edges.environment import find_uv_binary
    from installer.edges.probe import installed_distributions
    from installer.edges.uv import TORCH_TRIO, Uv, write_constraints

    log = _logger(root / "install.log")
    uv = Uv(binary=find_uv_binary() or "uv", index=IndexOptions(), log=log)
    uv.venv(root / "venv", BASE_PYTHON, clear=True)
    python = root / "venv" / "bin" / "python"
    deps = json.loads(SHIPPED_DEPS.read_text())
    uv.pip_install(
        python, deps["torch"]["packages"], constraints=[lock] if lock else [], what="install torch"
    )
    found = installed_distributions(root / "venv", "linux")
    constraints = write_constraints(
        root / "state" / "constraints.txt", {name: found[name] for name in TORCH_TRIO}
    )
    return uv, python, constraints, log


def test_install_from_real_lock_starts_comfyui(real_lock: dict, tmp_path: Path) -> None:
    from installer.lock.install import install_from_lock

    lock: Path = real_lock["lock"]
    source: Path = real_lock["source"]
    locked_root = tmp_path / "locked"
    uv, python, constraints, log = _venv_with_torch(locked_root, lock)
    torch_before = venv_dists(locked_root)["torch"]
    result = install_from_lock(uv, python, lock, constraints, log)
    assert venv_dists(locked_root)["torch"] == torch_before
    locked = venv_dists(locked_root)
    from installer.core.lockfile import parse_lock

    for entry in parse_lock(lock).sections["requirements"]:
        assert locked.get(entry.name) == entry.requirement.split("==", 1)[1], entry.name
    # How long a locked step 8 takes against live resolution is measured in bench/run.py
    # (never asserted in a test).
    assert result.packages > 0

    # Only the locked set (steps 7 and 8) is installed: ComfyUI must start with it.
    comfy = tmp_path / "ComfyUI"
    git("clone", "-q", str(source), str(comfy), cwd=tmp_path)
    quick = subprocess.run(
        [str(python), "main.py", "--cpu", "--quick-test-for-ci"],
        cwd=comfy,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = quick.stdout + quick.stderr
    assert quick.returncode == 0, output[-4000:]
    assert not [sign for sign in MISSING_MODULE_SIGNS if sign in output], output[-4000:]
