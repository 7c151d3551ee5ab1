"""Step 10's source route for real: a pinned local git source built into a wheel, cached, reused.

A tiny SageAttention-shaped setuptools package (`support.source_repo`) is cloned at
its pinned commit and built by the real code path (`uv build --wheel
--no-build-isolation` in a build environment over a real uv venv), installed, cached
under `COMFY_INSTALL_CACHE_DIR`, taken from the cache by the next install, built again
when the cached file's hash changed; a build that fails (a C compiler on a broken C file, a
setup script that raises) falls through to SageAttention 1 with the first error shown;
Ctrl-C stops the whole build and leaves nothing behind.

The C compiler is a stand-in of the test's own (`CC`, read by setuptools): a script that
rejects the file as gcc does, so the test needs no compiler on the machine (the README
lists none, and a stock Debian has none).

The machine's toolkit is given as data (nvcc 12.8, matching the fake cu128 torch): the
package has no CUDA code, so no nvcc runs. Setuptools comes from the package registry.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from installer.core.config import Dependencies, IndexOptions, ToolsManifest
from installer.core.facts import BuildHost, Tool, gpu_override
from installer.core.log import InstallerLogger
from installer.edges.environment import detect_git, find_uv_binary
from installer.edges.probe import installed_distributions
from installer.edges.uv import Uv
from installer.optimizations.install import install_optimizations
from installer.optimizations.outcome import OptimizationOutcome
from installer.optimizations.target import StepTarget
from installer.optimizations.venv import inspect_venv_torch
from support.cli import BASE_PYTHON, SHIPPED_DEPS, Fixtures
from support.http_server import LocalHTTPServer
from support.package_index import serve_index
from support.source_repo import make_source_repo, source_entry
from support.wheels import sha256_of

pytestmark = pytest.mark.real

HOST = BuildHost(
    compiler=Tool("compiler", path=shutil.which("c++") or "c++", version="c++"),
    nvcc=Tool("nvcc", path="nvcc", version="12.8"),
    git=detect_git(),
    cpu_count=2,
    memory_total_bytes=8 * 2**30,
)


GCC_STAND_IN = """#!/bin/sh
# A C compiler that rejects its C file the way gcc 12 does (what the build's log shows).
for arg in "$@"; do
    case "$arg" in
        *.c) source="$arg" ;;
    esac
done
echo "$source: In function 'kernel':" >&2
printf "%s:2:12: error: %s\n" "$source" \
    "'undeclared_symbol_in_kernels' undeclared (first use in this function)" >&2
echo "    2 |     return undeclared_symbol_in_kernels + 1;" >&2
exit 1
"""


def gcc_stand_in(folder: Path) -> Path:
    """Write the stand-in compiler into ``folder``; return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "cc"
    path.write_text(GCC_STAND_IN)
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def source_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    repo = tmp_path_factory.mktemp("sources") / "tiny-sageattention"
    return repo, make_source_repo(repo)


@pytest.fixture(scope="module")
def index(fixtures: Fixtures):
    with LocalHTTPServer() as server:
        yield serve_index(server, sorted(fixtures.links.glob("*.whl")))


def make_venv(folder: Path, fixtures: Fixtures) -> Path:
    """A uv venv with the fake torch 2.9.1+cu128 trio; returns its Python."""
    uv = find_uv_binary() or "uv"
    subprocess.run([uv, "venv", "-q", str(folder), "--python", BASE_PYTHON], check=True)
    python = folder / "bin" / "python"
    subprocess.run(
        [uv, "pip", "install", "-q", "--python", str(python), "--offline", "--find-links",
         str(fixtures.links), "torch==2.9.1", "torchvision==0.24.1", "torchaudio==2.9.1"],
        check=True,
        env=dict(os.environ, UV_CACHE_DIR=str(fixtures.uv_cache)),
    )  # fmt: skip
    return python


def config(url: str, commit: str) -> Dependencies:
    deps = json.loads(SHIPPED_DEPS.read_text())
    deps["optimizations"]["packages"] = []
    deps["pip_packages"]["sageattention_wheels"] = []
    deps["pip_packages"]["sageattention_sources"] = [source_entry(url, commit)]
    return Dependencies.model_validate(deps)


def step10(
    python: Path, deps: Dependencies, index_url: str, work: Path, name: str
) -> tuple[dict[str, OptimizationOutcome], Path]:
    """Run step 10 on the venv of ``python``; return the outcomes by name and the log file."""
    log_file = work / f"{name}.log"
    log = InstallerLogger(verbosity=-1, log_file=log_file)
    uv = Uv(
        binary=find_uv_binary() or "uv",
        index=IndexOptions(extra_index_urls=[index_url]),
        log=log,
    )
    install = work / name
    (install / ".comfy-install").mkdir(parents=True, exist_ok=True)
    target = StepTarget(
        python_exe=python,
        install_path=install,
        platform="linux",
        gpu=gpu_override("9.0", "12.8"),
        uv=uv,
        manifest=ToolsManifest(schema_version=1),
        build_host=HOST,
    )
    outcomes = install_optimizations(python, install / "ComfyUI", install, deps, log, target=target)
    log.close()
    return {o.name: o for o in outcomes}, log_file


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("COMFY_INSTALL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "builds"


def cached_entries(cache: Path) -> list[Path]:
    if not cache.exists():
        return []
    return sorted(p for p in cache.iterdir() if not p.name.startswith("."))


def dists(python: Path) -> dict[str, str]:
    return installed_distributions(python.parent.parent, "linux")


def site_packages(python: Path) -> Path:
    return next(python.parent.parent.glob("lib/python*/site-packages"))


def test_build_cache_reuse_and_rebuild_after_the_cached_file_changed(
    source_repo: tuple[Path, dict[str, str]],
    index: str,
    cache: Path,
    fixtures: Fixtures,
    tmp_path: Path,
) -> None:
    repo, commits = source_repo
    deps = config(str(repo), commits["good"])

    # First install: cloned at the pin, built, installed, cached, its sha256 in the outcome.
    first_venv = make_venv(tmp_path / "venv1", fixtures)
    torch_before = inspect_venv_torch(first_venv).pins
    outcomes, log1 = step10(first_venv, deps, index, tmp_path, "first")
    built = outcomes["sageattention2 (source)"]
    assert built.status == "installed", built.reason
    assert built.reason.startswith("built in ")
    fallback = outcomes["sageattention==1.0.6 (fallback)"]
    assert (fallback.status, fallback.reason) == (
        "skipped",
        "not needed: sageattention2 (source) was built",
    )
    [entry] = cached_entries(cache)
    record = json.loads((entry / "build.json").read_text())
    wheel = entry / record["wheel"]
    assert record["key"]["commit"] == commits["good"]
    assert record["key"]["torch"] == "2.9.1+cu128" and record["key"]["arch_list"] == "9.0"
    assert built.sha256 == record["sha256"] == sha256_of(wheel)
    assert dists(first_venv)["sageattention"] == "2.2.0+tiny"
    module = site_packages(first_venv) / "sageattention" / "__init__.py"
    assert "tiny source build" in module.read_text()
    assert inspect_venv_torch(first_venv).pins == torch_before
    text = log1.read_text()
    assert "--no-build-isolation" in text and "TORCH_CUDA_ARCH_LIST=9.0" in text
    assert not list((cache / ".work").iterdir()), "the build's temporary folder is removed"
    # The build environment, not the venv, got the build requirements.
    assert "setuptools" not in dists(first_venv)

    # Second install on the same machine: the cached wheel, verified, nothing compiled.
    mtime = wheel.stat().st_mtime_ns
    second_venv = make_venv(tmp_path / "venv2", fixtures)
    outcomes, log2 = step10(second_venv, deps, index, tmp_path, "second")
    reused = outcomes["sageattention2 (source)"]
    assert reused.status == "installed"
    assert reused.reason.startswith("reused the wheel built before (sha256 verified)")
    assert reused.sha256 == record["sha256"]
    assert "uv build" not in log2.read_text() and "git clone" not in log2.read_text()
    assert wheel.stat().st_mtime_ns == mtime
    assert dists(second_venv)["sageattention"] == "2.2.0+tiny"

    # The cached file changes: its hash no longer matches, so it is built again.
    with wheel.open("ab") as handle:
        handle.write(b"tampered")
    third_venv = make_venv(tmp_path / "venv3", fixtures)
    outcomes, log3 = step10(third_venv, deps, index, tmp_path, "third")
    rebuilt = outcomes["sageattention2 (source)"]
    assert rebuilt.status == "installed", rebuilt.reason
    assert rebuilt.reason.startswith("built in ")
    assert "changed since it was built" in log3.read_text()
    [entry] = cached_entries(cache)
    record = json.loads((entry / "build.json").read_text())
    assert rebuilt.sha256 == record["sha256"] == sha256_of(entry / record["wheel"])


@pytest.mark.parametrize(
    ("variant", "first_error"),
    [
        ("broken_c", ("csrc/kernels.c:2:12: error:", "undeclared_symbol_in_kernels")),
        ("raises", ("RuntimeError: CUDA 12.4 or higher is required for compute capability 8.9.",)),
    ],
)
def test_failed_build_falls_through_to_sageattention_1_with_the_first_error(
    variant: str,
    first_error: tuple[str, ...],
    source_repo: tuple[Path, dict[str, str]],
    index: str,
    cache: Path,
    fixtures: Fixtures,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    repo, commits = source_repo
    monkeypatch.setenv("CC", str(gcc_stand_in(tmp_path / "bin")))
    venv = make_venv(tmp_path / "venv", fixtures)
    torch_before = inspect_venv_torch(venv).pins
    outcomes, log = step10(venv, config(str(repo), commits[variant]), index, tmp_path, "fail")
    failed = outcomes["sageattention2 (source)"]
    assert failed.status == "failed"
    assert all(part in failed.reason for part in first_error), failed.reason
    assert str(log) in failed.reason
    fallback = outcomes["sageattention==1.0.6 (fallback)"]
    assert fallback.status == "installed"
    assert fallback.reason == "installed because the sageattention2 (source) build failed"
    assert dists(venv)["sageattention"] == "1.0.6"
    assert inspect_venv_torch(venv).pins == torch_before
    assert cached_entries(cache) == []
    assert not list((cache / ".work").iterdir())


def test_a_commit_missing_from_the_source_fails_the_clone_and_falls_through(
    source_repo: tuple[Path, dict[str, str]],
    index: str,
    cache: Path,
    fixtures: Fixtures,
    tmp_path: Path,
) -> None:
    repo, _ = source_repo
    venv = make_venv(tmp_path / "venv", fixtures)
    missing = "0123456789abcdef0123456789abcdef01234567"
    outcomes, _ = step10(venv, config(str(repo), missing), index, tmp_path, "missing")
    failed = outcomes["sageattention2 (source)"]
    assert failed.status == "failed"
    assert "the clone failed" in failed.reason and missing in failed.reason
    assert outcomes["sageattention==1.0.6 (fallback)"].status == "installed"


INTERRUPT = r"""
import json, sys
from pathlib import Path
sys.path[:0] = json.loads(sys.argv[1])
from test_source_build import config, step10
repo, commit, index, work, python = sys.argv[2:7]
print("starting", flush=True)
step10(Path(python), config(repo, commit), index, Path(work), "interrupted")
"""


def test_ctrl_c_stops_the_whole_build_and_leaves_nothing(
    source_repo: tuple[Path, dict[str, str]],
    index: str,
    cache: Path,
    fixtures: Fixtures,
    tmp_path: Path,
) -> None:
    repo, commits = source_repo
    venv = make_venv(tmp_path / "venv", fixtures)
    pid_file = tmp_path / "child.pid"
    here = str(Path(__file__).parent)
    paths = json.dumps([here, str(Path(here).parent), *sys.path])
    process = subprocess.Popen(
        [sys.executable, "-c", INTERRUPT, paths, str(repo), commits["slow"], index,
         str(tmp_path), str(venv)],
        env=dict(os.environ, TINY_PID_FILE=str(pid_file)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, "the slow build never started"
        time.sleep(0.2)
    child = int(pid_file.read_text())
    assert alive(child), "the build's own child process runs"
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode != 0
    assert "KeyboardInterrupt" in output
    for _ in range(50):
        if not alive(child):
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the build's child process {child} outlived the interrupt")
    assert cached_entries(cache) == []
    assert not list((cache / ".work").iterdir()), "nothing half-written is left"
    assert "sageattention" not in dists(venv)


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, dead but not yet reaped, does not count)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
