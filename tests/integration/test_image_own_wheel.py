"""`image context` from the tool installed the README's way: it finds its own wheel unasked.

Real installs: `python -m venv` + `pip install .` of a copy of this checkout (what the README's
first command does), and `pip install` of the wheel `uv build --wheel` makes of it, each into
a venv of its own (pip takes the dependencies from the package registry, hence `real`). Then
the installed console script writes an image context for the README's example
(`--gpu 9.0 --cuda-driver 13.0`) and the wheel in it is checked, file by file, against the
files that were installed:

* after `pip install .`: built from the folder it was installed from; once that folder has
  changed, repacked from the installed files (what runs is what the image gets);
* after a wheel install: that wheel, byte for byte; once it is gone, repacked, the same bytes
  each time, and installable;
* with nothing to go on (no RECORD), exit 2 and a message that says to pass --wheel.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from installer import __version__
from installer.edges.environment import find_uv_binary
from installer.image.own_wheel import wheel_files

pytestmark = pytest.mark.real

REPO_ROOT = Path(__file__).resolve().parents[2]
# What the wheel build reads (pyproject.toml's hatch settings), copied from this checkout.
SOURCE_FILES = ("pyproject.toml", "README.md", "dependencies.json", "tools_manifest.json")
SOURCE_DIRS = ("src/installer", "locks")
WHEEL = f"comfy_install-{__version__}-py3-none-any.whl"


def copy_source(dest: Path) -> Path:
    for name in SOURCE_FILES:
        shutil.copy2(REPO_ROOT / name, dest / name)
    for name in SOURCE_DIRS:
        shutil.copytree(REPO_ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def make_venv(folder: Path, *install: str) -> Path:
    """A venv made the README's way (`python -m venv`, its pip), with ``install`` pip-installed."""
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    python = folder / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *install],
        check=True,
    )
    return folder


def site_packages(venv: Path) -> Path:
    return next(venv.glob("lib/python3*/site-packages"))


def context(venv: Path, folder: Path) -> subprocess.CompletedProcess[str]:
    """`comfy-install image context FOLDER --gpu 9.0 --cuda-driver 13.0`, as the README says."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    return subprocess.run(
        [str(venv / "bin" / "comfy-install"), "image", "context", str(folder),
         "--gpu", "9.0", "--cuda-driver", "13.0"],
        capture_output=True, text=True, env={**env, "NO_COLOR": "1"}, cwd=folder.parent,
    )  # fmt: skip


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A copy of this checkout and the wheel `uv build --wheel` makes of it."""
    root = tmp_path_factory.mktemp("own-wheel")
    (root / "comfy-install").mkdir()
    source = copy_source((root / "comfy-install").resolve())
    subprocess.run(
        [find_uv_binary() or "uv", "build", "-q", "--wheel", "--out-dir", str(root / "dist"),
         str(source)],
        check=True, env={**os.environ, "SOURCE_DATE_EPOCH": "315532800"},
    )  # fmt: skip
    return source, root / "dist" / WHEEL


@pytest.fixture(scope="module")
def from_folder(built: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`python3 -m venv .tool && .tool/bin/python -m pip install .` in the copy."""
    source, _ = built
    return make_venv(tmp_path_factory.mktemp("pip-dot") / ".tool", str(source))


@pytest.fixture(scope="module")
def wheel_install(
    built: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """A venv with the built wheel pip-installed, and that wheel (a copy tests may move)."""
    _, wheel = built
    keep = tmp_path_factory.mktemp("wheel-file") / wheel.name
    shutil.copy2(wheel, keep)
    return make_venv(tmp_path_factory.mktemp("pip-wheel") / ".tool", str(keep)), keep


@pytest.fixture
def changed_source(built: tuple[Path, Path]) -> Iterator[Path]:
    source, _ = built
    module = source / "src" / "installer" / "image" / "own_wheel.py"
    original = module.read_bytes()
    module.write_bytes(original + b"\n# changed after the install\n")
    yield source
    module.write_bytes(original)


def test_pip_install_dot_builds_from_the_folder_it_came_from(
    built: tuple[Path, Path], from_folder: Path, tmp_path: Path
) -> None:
    source, wheel = built
    done = context(from_folder, tmp_path / "ctx")
    assert done.returncode == 0, done.stderr
    assert f"built from {source}, the folder it was installed from" in done.stderr
    made = tmp_path / "ctx" / "dist" / WHEEL
    assert wheel_files(made) == wheel_files(wheel)
    assert sha256(made) == sha256(wheel), "the same checkout builds the same bytes"
    assert (tmp_path / "ctx" / "Containerfile").is_file()


def test_a_changed_folder_gives_the_installed_files_repacked(
    built: tuple[Path, Path], from_folder: Path, changed_source: Path, tmp_path: Path
) -> None:
    _, wheel = built
    done = context(from_folder, tmp_path / "ctx")
    assert done.returncode == 0, done.stderr
    assert "repacked from the installed files" in done.stderr
    assert f"{changed_source}, where it was installed from, no longer holds them" in done.stderr
    made = tmp_path / "ctx" / "dist" / WHEEL
    assert wheel_files(made) == wheel_files(wheel), "the files that run, not the changed ones"


def test_a_wheel_install_uses_that_wheel_then_repacks_it_when_it_is_gone(
    built: tuple[Path, Path], wheel_install: tuple[Path, Path], tmp_path: Path
) -> None:
    _, wheel = built
    from_wheel, installed_from = wheel_install
    done = context(from_wheel, tmp_path / "first")
    assert done.returncode == 0, done.stderr
    assert "the wheel it was installed from" in done.stderr
    assert sha256(tmp_path / "first" / "dist" / WHEEL) == sha256(wheel)

    installed_from.rename(tmp_path / "away.whl")
    try:
        repacked = [context(from_wheel, tmp_path / name) for name in ("second", "third")]
    finally:
        (tmp_path / "away.whl").rename(installed_from)
    for done in repacked:
        assert done.returncode == 0, done.stderr
        assert "repacked from the installed files" in done.stderr
    second, third = (tmp_path / name / "dist" / WHEEL for name in ("second", "third"))
    assert wheel_files(second) == wheel_files(wheel)
    assert sha256(second) == sha256(third), "a repack is the same bytes each time"

    # The repacked wheel is a wheel pip installs, with the package's metadata and entry point.
    target = tmp_path / "installed"
    subprocess.run(
        [str(from_wheel / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps",
         "--disable-pip-version-check", "--target", str(target), str(second)],
        check=True,
    )  # fmt: skip
    [info] = target.glob("comfy_install-*.dist-info")
    assert f"Version: {__version__}" in (info / "METADATA").read_text()
    assert "comfy-install = installer.entry:main" in (info / "entry_points.txt").read_text()
    assert (target / "installer" / "_data" / "dependencies.json").is_file()


def test_without_its_record_it_says_to_pass_the_wheel(
    wheel_install: tuple[Path, Path], tmp_path: Path
) -> None:
    from_wheel, _ = wheel_install
    [record] = site_packages(from_wheel).glob("comfy_install-*.dist-info/RECORD")
    record.rename(tmp_path / "RECORD")
    try:
        done = context(from_wheel, tmp_path / "ctx")
    finally:
        (tmp_path / "RECORD").rename(record)
    assert done.returncode == 2, done.stderr
    assert "cannot make its own wheel for the image" in done.stderr
    assert "--wheel FILE" in done.stderr
    assert not (tmp_path / "ctx").exists()
