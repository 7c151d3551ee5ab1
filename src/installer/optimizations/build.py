"""Step 10's source route: build a pinned source into a wheel against the venv's torch, once.

What [`build_source`][installer.optimizations.build.build_source] does with a planned
source build (see [`installer.plan.sage_sources`][installer.plan.sage_sources]):

1. Looks in the build cache ([`build_cache`][installer.optimizations.build_cache]) for a
   wheel of the same source, torch, Python and architectures whose bytes still hash to
   the recorded sha256: that wheel is used and nothing is compiled.
2. Clones the source at the pinned commit into a temporary folder and verifies HEAD
   (the commit is the integrity anchor).
3. Makes a throwaway build environment over the venv: a venv of the same Python with
   the build requirements (`setuptools`, `wheel`, `packaging` as the package's
   `pyproject.toml` pins them, and `ninja`) and a `.pth` file that puts the venv's own
   folders behind them, so the build sees the venv's torch while the venv itself is not
   changed (the package pins `packaging<24` for its build; ComfyUI's venv keeps its own).
4. Runs `uv build --wheel --no-build-isolation` with that environment's Python (uv ships
   with comfy-install, and a uv venv has no pip), with `CUDA_HOME` set to the toolkit the
   plan chose and the plan's `TORCH_CUDA_ARCH_LIST`, `MAX_JOBS` and `EXT_PARALLEL`.
   The output goes to the install log; the terminal shows one live line with the elapsed
   time and the units compiled (ninja's `[N/M]` lines). The build runs in a process
   group of its own: Ctrl-C stops every compiler it started.
5. Stores the wheel in the cache (atomically, its sha256 recorded) and removes the
   temporary folder, whatever happened.

A failed build raises [`BuildFailedError`][installer.core.errors.BuildFailedError] with
the compiler's first error and the log's path; the step then installs the next route.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from installer.core.errors import BuildFailedError, CommandFailedError, StepFailedError
from installer.core.facts import venv_python
from installer.core.log import InstallerLogger
from installer.edges.git import checkout_pinned
from installer.edges.proc import run_command
from installer.optimizations.build_cache import (
    BuildKey,
    build_cache_dir,
    find_cached,
    store_build,
)
from installer.optimizations.target import StepTarget
from installer.plan.optimizations import PlannedOptimization

_NINJA = re.compile(r"^\s*\[(\d+)/(\d+)\]")
_COMPILER_ERROR = re.compile(
    r"(:\d+(:\d+)?: (fatal )?error\b"  # gcc / clang: file.cpp:12:5: error: ...
    r"|\(\d+\): (catastrophic |fatal )?error\b"  # nvcc / MSVC: file.cu(12): error ...
    r"|\berror [A-Z]+\d+:"  # MSVC: error C2065: / LNK1181:
    r"|\bnvcc fatal\b|^\s*fatal error\b)",
    re.IGNORECASE,
)
_PYTHON_ERROR = re.compile(r"^\s*([A-Za-z_][\w.]*(Error|Exception)): .+")


def first_error(lines: list[str]) -> str | None:
    """Return the line of a build's output that says what went wrong first.

    The first compiler error (gcc, clang, nvcc, MSVC) when there is one, else the last
    Python exception raised by the setup script, else the last line.

    Args:
        lines: The build's output lines.
    """
    for line in lines:
        if _COMPILER_ERROR.search(line):
            return line.strip()
    for line in reversed(lines):
        if _PYTHON_ERROR.match(line):
            return line.strip()
    tail = [line.strip() for line in lines if line.strip()]
    return tail[-1] if tail else None


@dataclass(frozen=True)
class BuiltWheel:
    """A wheel built from source (or taken from the build cache), ready to install."""

    path: Path
    sha256: str
    size: int
    seconds: float
    reused: bool


class _Progress:
    """Follows a build's output: units compiled (ninja's `[N/M]`) and the time."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.start = time.monotonic()
        self.units = 0
        self.latest = ""

    def feed(self, line: str) -> None:
        match = _NINJA.match(line)
        if match:
            self.units += 1
            self.latest = f"[{match.group(1)}/{match.group(2)}]"

    def text(self) -> str:
        minutes, seconds = divmod(int(time.monotonic() - self.start), 60)
        latest = f", ninja {self.latest}" if self.latest else ""
        return (
            f"building {self.name}: {minutes}:{seconds:02d} elapsed, "
            f"{self.units} unit{'s' if self.units != 1 else ''} compiled{latest}"
        )


_VENV_FACTS = r"""
import json, os, sys, sysconfig
paths = sysconfig.get_paths()
std = [os.path.normcase(os.path.realpath(paths[k])) for k in ("stdlib", "platstdlib")]
sites = []
for entry in sys.path:
    if not entry or not os.path.isdir(entry):
        continue
    real = os.path.normcase(os.path.realpath(entry))
    packages = "site-packages" in real or "dist-packages" in real
    if not packages and any(real == s or real.startswith(s + os.sep) for s in std):
        continue
    if entry not in sites:
        sites.append(entry)
tag = "cp%d%d" % sys.version_info[:2] + ("t" if sysconfig.get_config_var("Py_GIL_DISABLED") else "")
print(json.dumps({"sites": sites, "tag": tag, "platform": sysconfig.get_platform()}))
"""


@dataclass(frozen=True)
class VenvFacts:
    """What the build needs to know about the venv: its package folders, Python tag, platform."""

    sites: tuple[str, ...]
    tag: str
    platform: str


def venv_facts(python_exe: Path) -> VenvFacts:
    """Ask the venv's Python for its package folders (its own and any a .pth adds), tag, platform.

    Args:
        python_exe: The venv's interpreter.

    Raises:
        StepFailedError: The interpreter does not run.
    """
    try:
        done = subprocess.run(
            [str(python_exe), "-c", _VENV_FACTS],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
            env=_without_python_paths(dict(os.environ)),
        )
        data = json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as exc:
        raise StepFailedError(
            f"The venv's Python ({python_exe}) could not describe itself for the build: {exc}.",
            "Redo the venv with `--force venv`.",
        ) from exc
    return VenvFacts(tuple(data["sites"]), str(data["tag"]), str(data["platform"]))


def build_key(
    entry: PlannedOptimization, torch_version: str, torch_build: str, facts: VenvFacts
) -> BuildKey:
    """Return the cache key of a planned source build for a venv.

    Args:
        entry: The planned source entry (kind `source`).
        torch_version: The venv's torch, e.g. `2.11.0+cu130`.
        torch_build: Its CUDA build, e.g. `cu130`.
        facts: The venv's Python tag and platform.
    """
    assert entry.source is not None
    return BuildKey(
        name=entry.name.removesuffix(" (source)"),
        commit=entry.source.commit,
        subdirectory=entry.source.subdirectory,
        torch=torch_version,
        cuda=torch_build,
        python_tag=facts.tag,
        arch_list=entry.source.arch_list,
        platform=re.sub(r"[-.]", "_", facts.platform),
    )


def build_source(
    entry: PlannedOptimization,
    python_exe: Path,
    *,
    torch_version: str,
    torch_build: str,
    target: StepTarget,
    log: InstallerLogger,
) -> BuiltWheel:
    """Return the wheel of a planned source build: from the cache, or built now.

    Args:
        entry: The planned source entry (kind `source`, with its `source` settings).
        python_exe: The venv's interpreter; its torch is what the build compiles against.
        torch_version: The venv's torch version (part of the cache key).
        torch_build: Its CUDA build, e.g. `cu130` (part of the cache key).
        target: The venv's uv (index options for the build requirements) and the build host.
        log: Where the build's output goes (the install log) and its progress line.

    Returns:
        The wheel, its sha256 and size, how long the build took, and whether it was reused.

    Raises:
        BuildFailedError: The clone, the build requirements or the build failed; the message
            has the first error and the log's path.
    """
    source = entry.source
    if source is None:
        raise ValueError(f"{entry.name} is not a planned source build")
    facts = venv_facts(python_exe)
    key = build_key(entry, torch_version, torch_build, facts)
    cached = find_cached(key, log)
    if cached is not None:
        log.info(
            f"{entry.name}: reusing the wheel built {cached.built_at} for this commit, torch, "
            f"Python and architectures ({cached.wheel}, sha256 {cached.sha256[:16]}… verified)"
        )
        return BuiltWheel(cached.wheel, cached.sha256, cached.size, 0.0, reused=True)
    work_root = build_cache_dir() / ".work"
    work_root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{key.name}-", dir=work_root))
    try:
        built, seconds = _build(entry, python_exe, facts, work, target, log)
        stored = store_build(key, built, seconds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.success(
        f"{entry.name}: built {stored.wheel.name} in {seconds:.0f} s "
        f"({stored.size / 2**20:.1f} MiB, sha256 {stored.sha256}); cached at {stored.wheel}"
    )
    return BuiltWheel(stored.wheel, stored.sha256, stored.size, seconds, reused=False)


def _failed(
    entry: PlannedOptimization, stage: str, detail: str | None, log: InstallerLogger
) -> BuildFailedError:
    where = f" (the whole output is in {log.log_path})" if log.log_path else ""
    first = f": {detail}" if detail else ""
    return BuildFailedError(f"{entry.name}: {stage} failed{first}{where}")


def _build(
    entry: PlannedOptimization,
    python_exe: Path,
    facts: VenvFacts,
    work: Path,
    target: StepTarget,
    log: InstallerLogger,
) -> tuple[Path, float]:
    source = entry.source
    assert source is not None
    src = work / "src"
    log.info(f"{entry.name}: cloning {source.url} at {source.commit}")
    try:
        checkout_pinned(src, source.url, source.commit, log, expected=source.commit)
    except (StepFailedError, CommandFailedError) as exc:
        raise _failed(entry, "the clone", exc.message.splitlines()[0], log) from exc
    env_dir = work / "build-env"
    build_python = Path(venv_python(env_dir, target.platform))
    try:
        target.uv.venv(env_dir, str(python_exe), clear=False)
        _overlay(build_python, facts)
        if source.build_requires:
            target.uv.pip_install(
                build_python,
                source.build_requires,
                options=["--no-deps"],
                what=f"install the build requirements of {entry.name}",
            )
    except (StepFailedError, OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "message", str(exc)).splitlines()[0]
        raise _failed(entry, "preparing the build environment", detail, log) from exc
    folder = src / source.subdirectory if source.subdirectory else src
    dist = work / "dist"
    settings = " ".join(f"{k}={v}" for k, v in source.build_env.items())
    log.info(
        f"{entry.name}: compiling with nvcc {source.nvcc} ({settings}; {source.estimate}); "
        f"the compiler output goes to {log.log_path or 'the log'}"
    )
    progress = _Progress(entry.name)
    lines: list[str] = []

    def follow(line: str) -> None:
        progress.feed(line)
        lines.append(line)

    start = time.monotonic()
    with log.live(progress.text()) as update:
        stop = threading.Event()

        def tick() -> None:
            while not stop.wait(1.0):
                update(progress.text())

        ticker = threading.Thread(target=tick, name="build-progress", daemon=True)
        ticker.start()
        try:
            run_command(
                [
                    target.uv.binary,
                    "build",
                    "--wheel",
                    "--no-build-isolation",
                    "--python",
                    build_python,
                    "--out-dir",
                    dist,
                    *target.uv.index_args(),
                    folder,
                ],
                log=log,
                what=f"build {entry.name}",
                cwd=folder,
                env=_build_env(source.build_env, env_dir, build_python, facts, target),
                on_line=follow,
                process_group=True,
                spinner=False,
            )
        except CommandFailedError as exc:
            raise _failed(entry, "the build", first_error(lines), log) from exc
        finally:
            stop.set()
            ticker.join()
    seconds = time.monotonic() - start
    wheels = sorted(dist.glob("*.whl"))
    if len(wheels) != 1:
        raise _failed(entry, "the build", f"expected one wheel in {dist}, found {len(wheels)}", log)
    log.info(f"{entry.name}: {progress.units} units compiled in {seconds:.0f} s")
    return wheels[0], seconds


def _overlay(build_python: Path, facts: VenvFacts) -> None:
    """Put the venv's package folders behind the build environment's own (a .pth file)."""
    done = subprocess.run(
        [str(build_python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    purelib = Path(done.stdout.strip())
    (purelib / "_comfy_install_venv.pth").write_text(
        "\n".join(facts.sites) + "\n", encoding="utf-8"
    )


def _build_env(
    settings: dict[str, str],
    env_dir: Path,
    build_python: Path,
    facts: VenvFacts,
    target: StepTarget,
) -> dict[str, str]:
    host = target.build_host
    env = dict(target.uv.env)
    # A variable that skips the CUDA build (SAGEATTN_SKIP_CUDA_BUILD=1 for a docs build, say)
    # would give a wheel without kernels.
    for name in [n for n in env if n.upper().endswith("_SKIP_CUDA_BUILD")]:
        del env[name]
    env = _without_python_paths(env)
    env.update(settings)
    env["PATH"] = str(build_python.parent) + os.pathsep + env.get("PATH", "")
    env["VIRTUAL_ENV"] = str(env_dir)
    env.setdefault("UV_NO_PROGRESS", "1")
    home = host.cuda_home if host is not None else None
    if home is not None:
        env["CUDA_HOME"] = home
        if target.platform == "windows":
            env["CUDA_PATH"] = home
    # A toolkit installed without its libraries' headers (nvcc and the runtime only, as
    # some packages do) lacks cusparse.h or cublas_v2.h, which torch's own headers include.
    # The venv's NVIDIA wheels (torch's CUDA libraries) carry them, for torch's CUDA: they
    # go behind every explicit include folder, so the toolkit's own headers still win.
    extra = nvidia_include_dirs(facts)
    if extra:
        name = "INCLUDE" if target.platform == "windows" else "CPATH"
        env[name] = os.pathsep.join([*filter(None, [env.get(name)]), *extra])
    return env


def _without_python_paths(env: dict[str, str]) -> dict[str, str]:
    """Drop PYTHONPATH and PYTHONHOME: the build sees the venv and its tools, not the caller's."""
    return {k: v for k, v in env.items() if k.upper() not in ("PYTHONPATH", "PYTHONHOME")}


def nvidia_include_dirs(facts: VenvFacts) -> list[str]:
    """Return the header folders of the NVIDIA wheels the venv sees (`nvidia/*/include`).

    Args:
        facts: The venv's package folders.
    """
    found: list[str] = []
    for site in facts.sites:
        for folder in sorted(Path(site).glob("nvidia/*/include")):
            if folder.is_dir() and str(folder) not in found:
                found.append(str(folder))
    return found
