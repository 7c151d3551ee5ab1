"""What machine this is: OS, architecture, Python, free disk, git and uv.

[`detect_environment`][installer.edges.environment.detect_environment] returns a frozen
[`Environment`][installer.core.facts.Environment] that the planner reads; it is
the only place that asks the operating system these questions. The differences
between Windows and POSIX layouts (where a venv keeps its Python, what a
launcher script is called) also live here, as pure functions of the target
platform so a Linux machine can plan a Windows install.
"""

from __future__ import annotations

import contextlib
import os
import platform as _platform
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from installer.core.facts import Environment, TargetDir, Tool


def current_platform() -> str:
    """Return `linux`, `windows`, `darwin` or the raw ``sys.platform`` for others."""
    if sys.platform.startswith("linux"):
        return "linux"
    if sys.platform in ("win32", "cygwin"):
        return "windows"
    return sys.platform


def free_disk_bytes(path: Path) -> tuple[int | None, Path]:
    """Return the free bytes on the filesystem that holds (or will hold) ``path``.

    The nearest existing folder on the way is measured, so a DIR that does not exist
    yet is measured where it will be created (and a file in the way, which the target-folder
    check refuses, is never named as the folder measured).

    Args:
        path: The folder to measure; it need not exist.

    Returns:
        ``(free, measured)``: the free bytes (None when the OS cannot say) and the folder that was
        measured.
    """
    probe = path.absolute()
    while not probe.is_dir() and probe != probe.parent:
        probe = probe.parent  # a file in the way is not a folder: its folder is measured
    try:
        return shutil.disk_usage(probe).free, probe
    except OSError:
        return None, probe


def probe_target_dir(install_dir: Path) -> TargetDir:
    """Look at where an install into ``install_dir`` would write, writing nothing.

    The install creates `DIR/.comfy-install` first (with DIR and any missing parents), so
    the nearest existing path on the way there decides: it must be a directory in which
    new entries can be made.

    Args:
        install_dir: DIR; it need not exist.

    Returns:
        What the preflight checks of the plan need to know.
    """
    path = install_dir.absolute()
    nearest = path / ".comfy-install"
    while _mode(nearest) is None and nearest != nearest.parent:
        nearest = nearest.parent
    own, found = _mode(path), _mode(nearest)
    nearest_is_dir = found is not None and stat.S_ISDIR(found)
    effective = os.access in os.supports_effective_ids
    return TargetDir(
        path=str(path),
        exists=own is not None,
        is_dir=own is not None and stat.S_ISDIR(own),
        nearest=str(nearest),
        nearest_is_dir=nearest_is_dir,
        writable=nearest_is_dir and os.access(nearest, os.W_OK | os.X_OK, effective_ids=effective),
    )


def _mode(path: Path) -> int | None:
    """Return the mode of what ``path`` names (links followed), None when it cannot be seen."""
    try:
        return path.stat().st_mode
    except (OSError, ValueError):
        return None


def _run_version(name: str, path: str | None, args: list[str], pattern: str) -> Tool:
    if path is None:
        return Tool(name, error=f"{name} was not found on PATH")
    try:
        done = subprocess.run(
            [path, *args], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Tool(name, path=path, error=f"{name} could not be started: {exc}")
    text = (done.stdout or "") + (done.stderr or "")
    if done.returncode != 0:
        return Tool(name, path=path, error=f"{name} exited with {done.returncode}: {text.strip()}")
    match = re.search(pattern, text)
    return Tool(name, path=path, version=match.group(1) if match else text.strip()[:40])


def detect_git() -> Tool:
    """Find git on PATH and read its version."""
    return _run_version("git", shutil.which("git"), ["--version"], r"git version (\S+)")


def find_uv_binary() -> str | None:
    """Return the uv executable shipped with the `uv` package, else uv on PATH."""
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        return shutil.which("uv")


def detect_uv() -> Tool:
    """Find uv (the bundled binary first) and read its version."""
    return _run_version("uv", find_uv_binary(), ["--version"], r"uv (\S+)")


def detect_compiler(platform: str) -> Tool:
    """Find a C/C++ compiler (for source builds): cl on Windows, else c++/g++/clang++.

    Args:
        platform: The target OS; `windows` looks for MSVC's `cl`.

    Returns:
        The first compiler found on PATH (its name as `version`), or a Tool whose `error` says what
        was looked for.
    """
    names = ["cl"] if platform == "windows" else ["c++", "g++", "clang++"]
    for name in names:
        path = shutil.which(name)
        if path:
            return Tool("compiler", path=path, version=name)
    return Tool("compiler", error=f"no C++ compiler found (looked for {', '.join(names)})")


def detect_nvcc() -> Tool:
    """Find the CUDA compiler (nvcc) on PATH or under CUDA_HOME and read its version.

    The Tool's `path` is the real `bin/nvcc` inside the toolkit folder (not a wrapper
    script or link on PATH), so its grandparent is the CUDA_HOME a build must use.
    """
    exe = "nvcc.exe" if os.name == "nt" else "nvcc"
    path = shutil.which("nvcc")
    cuda_home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if cuda_home and (Path(cuda_home) / "bin" / exe).is_file():
        path = str(Path(cuda_home) / "bin" / exe)
    if path is None:
        return Tool("nvcc", error="the CUDA toolkit (nvcc) was not found")
    tool = _run_version("nvcc", path, ["--version"], r"release ([0-9.]+)")
    if tool.ok:
        home = toolkit_home(path)
        if home is not None:
            return Tool("nvcc", path=str(home / "bin" / exe), version=tool.version)
    return tool


def toolkit_home(nvcc: str) -> Path | None:
    """Return the CUDA toolkit folder an nvcc belongs to (the one holding its headers).

    A link or a wrapper script on PATH (`/usr/local/bin/nvcc` calling
    `/usr/local/cuda-13.0/bin/nvcc`) is followed: nvcc's dry run names its own folder.

    Args:
        nvcc: The nvcc found on PATH or under CUDA_HOME.
    """
    real = Path(nvcc).resolve()
    if (real.parent.parent / "include" / "cuda_runtime.h").is_file():
        return real.parent.parent
    try:
        done = subprocess.run(
            [nvcc, "-dryrun", "-c", "comfy_install_probe.cu"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"^#\$ _HERE_=(.+)$", done.stdout + done.stderr, re.MULTILINE)
    if match is None:
        return None
    home = Path(match.group(1).strip()).parent
    return home if (home / "include" / "cuda_runtime.h").is_file() else None


def usable_cpu_count() -> int | None:
    """Return the CPU cores this process may run on (its affinity mask), None when unknown."""
    if hasattr(os, "sched_getaffinity"):
        with contextlib.suppress(OSError):
            return len(os.sched_getaffinity(0)) or None
    return os.cpu_count()


def memory_total_bytes() -> int | None:
    """Return the machine's physical memory in bytes (a container's limit when lower).

    Linux reads `/proc/meminfo` and the cgroup limit, Windows asks
    `GlobalMemoryStatusEx`; None elsewhere or when the OS does not say.
    """
    if os.name == "nt":
        import ctypes

        class _Status(ctypes.Structure):
            _fields_ = [
                ("length", ctypes.c_ulong),
                ("load", ctypes.c_ulong),
                ("total_phys", ctypes.c_ulonglong),
                ("avail_phys", ctypes.c_ulonglong),
                ("total_page", ctypes.c_ulonglong),
                ("avail_page", ctypes.c_ulonglong),
                ("total_virtual", ctypes.c_ulonglong),
                ("avail_virtual", ctypes.c_ulonglong),
                ("avail_extended", ctypes.c_ulonglong),
            ]

        status = _Status()
        status.length = ctypes.sizeof(_Status)
        if ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):  # type: ignore[attr-defined]
            return int(status.total_phys)
        return None
    total: int | None = None
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                total = int(line.split()[1]) * 1024
                break
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        with contextlib.suppress(OSError, ValueError):
            limit = int(Path(limit_file).read_text().strip())
            if total is None or limit < total:
                total = limit
    return total


def os_pretty_name() -> str:
    """Return a human name for the OS, e.g. 'Ubuntu 24.04.3 LTS' or 'Windows 11'."""
    if current_platform() == "linux":
        try:
            info = _platform.freedesktop_os_release()
            return info.get("PRETTY_NAME") or info.get("NAME") or "Linux"
        except OSError:
            return f"Linux {_platform.release()}"
    return f"{_platform.system()} {_platform.release()}".strip()


def detect_environment(target_dir: Path, *, probe_build_tools: bool = True) -> Environment:
    """Detect everything about this machine that the plan depends on.

    Args:
        target_dir: The install directory (measured for free disk space even
            if it does not exist yet).
        probe_build_tools: Also look for a C++ compiler and nvcc (needed only
            when a package must be compiled).
    """
    platform = current_platform()
    free, measured = free_disk_bytes(target_dir)
    return Environment(
        platform=platform,
        arch=_platform.machine().lower() or "unknown",
        os_name=os_pretty_name(),
        python_version=_platform.python_version(),
        python_executable=sys.executable,
        free_disk_bytes=free,
        disk_path=str(measured),
        git=detect_git(),
        uv=detect_uv(),
        compiler=detect_compiler(platform) if probe_build_tools else Tool("compiler"),
        nvcc=detect_nvcc() if probe_build_tools else Tool("nvcc"),
        cpu_count=usable_cpu_count(),
        memory_total_bytes=memory_total_bytes(),
        target=probe_target_dir(target_dir),
    )


def pid_alive(pid: int) -> bool:
    """Return True when a process with ``pid`` exists on this machine.

    Args:
        pid: A process id; 0 or less is never alive. A process of another user counts as alive.
    """
    if pid <= 0:
        return False
    if os.name == "nt":
        import ctypes

        kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        exit_code = ctypes.c_ulong()
        kernel32.GetExitCodeProcess(handle, ctypes.byref(exit_code))
        kernel32.CloseHandle(handle)
        return bool(exit_code.value == 259)  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def site_packages_dirs(venv_dir: Path, platform: str) -> list[Path]:
    r"""Return the site-packages folders of a venv (`Lib\\site-packages` on Windows).

    Args:
        venv_dir: The venv folder.
        platform: The target OS, `linux` or `windows`.

    Returns:
        On Windows the one folder, whether or not it exists; elsewhere the existing
        `lib/python*/site-packages` folders, sorted.
    """
    if platform == "windows":
        return [venv_dir / "Lib" / "site-packages"]
    return sorted(venv_dir.glob("lib/python*/site-packages"))


_LOCK_OFFSET = 2**30  # Windows: lock a byte far past the content, which stays readable


def try_lock_file(fd: int) -> bool:
    """Take an exclusive, non-blocking OS lock on an open file; False if another holds it.

    The operating system drops the lock when the process ends, however it ends,
    so a lock can never be left behind by a killed process.

    Args:
        fd: A file descriptor opened for writing.
    """
    if os.name == "nt":
        import msvcrt

        os.lseek(fd, _LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        except OSError:
            return False
        finally:
            os.lseek(fd, 0, os.SEEK_SET)
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def unlock_file(fd: int) -> None:
    """Release the OS lock taken with `try_lock_file`.

    Args:
        fd: The file descriptor the lock was taken on.
    """
    if os.name == "nt":
        import msvcrt

        os.lseek(fd, _LOCK_OFFSET, os.SEEK_SET)
        with contextlib.suppress(OSError):
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]
        return
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_UN)


def proxy_note(url: str, environ: Mapping[str, str] | None = None) -> str:
    """Say which proxy variable a request to ``url`` goes through, for error messages.

    Args:
        url: The URL that failed.
        environ: The environment to read (default: `os.environ`).

    Returns:
        `` (through the proxy http://… from HTTPS_PROXY)`` when a proxy variable
        applies to the URL (and `NO_PROXY` does not exclude it), else ``""``.
    """
    from urllib.parse import urlsplit
    from urllib.request import proxy_bypass_environment  # type: ignore[attr-defined]

    from installer.core.log import redact

    env = os.environ if environ is None else environ
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), parts.hostname or ""
    if not scheme or not host:
        return ""
    no_proxy = {k.lower(): v for k, v in env.items() if k.lower() == "no_proxy"}
    if no_proxy and proxy_bypass_environment(host, {"no": no_proxy["no_proxy"]}):
        return ""
    for name in (f"{scheme}_proxy", "all_proxy"):
        for variable in (name.upper(), name):
            value = env.get(variable)
            if value:
                return f" (through the proxy {redact(value)} from {variable})"
    return ""
