"""Running the installer in tests: its console script, config, environment, state."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_DEPS = REPO_ROOT / "dependencies.json"
BASE_PYTHON = os.path.realpath(sys.executable)
FIXTURE_TRIO = ("torch==2.9.1", "torchvision==0.24.1", "torchaudio==2.9.1")
"""The torch trio of the tiny fixture wheels (tests/conftest.py), whatever the shipped pin."""


def cli_path() -> str:
    """The installed `comfy-install` console script of the test environment."""
    candidate = Path(sys.executable).parent / "comfy-install"
    return (
        str(candidate) if candidate.exists() else shutil.which("comfy-install") or "comfy-install"
    )


def cli(*args: object) -> list[str]:
    """The command line of `comfy-install ARGS` (the installed console script)."""
    return [cli_path(), *map(str, args)]


def lock_cli(*args: str) -> list[str]:
    """The command line of `comfy-install lock` (its module, run by this Python)."""
    return [sys.executable, "-m", "installer.cli.lock", *args]


@dataclass(frozen=True)
class Fixtures:
    """Paths and commits of the session's fixtures."""

    root: Path
    links: Path
    wheels: dict[str, Path]
    comfy_repo: Path
    commits: dict[str, str]
    uv_cache: Path


def write_config(path: Path, fixtures: Fixtures, **changes: Any) -> Path:
    """Write a dependencies.json for the fixtures: the shipped one, pointed at the local repo
    and pinned to the fixtures' torch trio.

    Keyword arguments replace top-level sections (``torch=...``) or, with a
    dotted-free ``comfyui_commit``/``comfyui_ref``, the ComfyUI pin.
    """
    deps = json.loads(SHIPPED_DEPS.read_text())
    ref = changes.pop("comfyui_ref", "v2")
    deps["comfyui"] = {
        "url": str(fixtures.comfy_repo),
        "ref": ref,
        "commit": changes.pop("comfyui_commit", fixtures.commits[ref]),
    }
    deps["python"]["default"] = f"{sys.version_info.major}.{sys.version_info.minor}"
    deps["preflight"]["min_free_gb"] = 0.1
    deps["extra_requirements"] = []
    deps["torch"]["packages"] = list(FIXTURE_TRIO)
    deps["torch"]["default_index_builds"] = {"linux": "cu128", "windows": "cpu"}
    deps.update(changes)
    path.write_text(json.dumps(deps, indent=2))
    return path


def installer_env(fixtures: Fixtures, **extra: str) -> dict[str, str]:
    """Environment for running the installer in tests: isolated uv cache, no colours."""
    env = dict(os.environ)
    env.update(
        {
            "UV_CACHE_DIR": str(fixtures.uv_cache),
            "NO_COLOR": "1",
            "COMFY_INSTALL_CACHE_DIR": str(fixtures.root / "downloads"),
            "UV_PYTHON_DOWNLOADS": "never",
        }
    )
    env.update(extra)
    return env


def install_args(install_dir: Path, config: Path, index_url: str, *extra: str) -> list[str]:
    """Command line for an install against the local fixtures."""
    return [
        cli_path(),
        "install",
        str(install_dir),
        "--config",
        str(config),
        "--gpu",
        "none",
        "--torch-index",
        "default",
        "--index-url",
        index_url,
        "--python",
        BASE_PYTHON,
        *extra,
    ]


def run(
    args: list[str], env: dict[str, str], timeout: float = 180, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing text output."""
    return subprocess.run(
        args, env=env, capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd
    )


def read_state(install_dir: Path) -> dict[str, Any]:
    """Load DIR/.comfy-install/state.json (it must be valid JSON)."""
    return json.loads((install_dir / ".comfy-install" / "state.json").read_text())


def venv_dists(install_dir: Path) -> dict[str, str]:
    """Distributions installed in the install's venv, read from dist-info folders."""
    from installer.edges.probe import installed_distributions

    return installed_distributions(install_dir / "venv", "linux")
