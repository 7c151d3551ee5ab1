"""The calibration and routes files of an install, and the venv's versions they are checked against.

`comfy-install tune` writes `DIR/.comfy-install/calibration.json`
([`write_calibration`][installer.attention.files.write_calibration]);
`launch` reads it ([`read_calibration`][installer.attention.files.read_calibration])
and decides from it. A missing file is no calibration; an unreadable one is
reported with the reason and used no more than a missing one. The routing
table a launch derives from it is written next to it
([`write_routes`][installer.attention.files.write_routes]) for the shim in
ComfyUI's process to read, in the schema of
[`installer.attention.shim.routes`][installer.attention.shim.routes].
[`probe_attention`][installer.attention.files.probe_attention] asks the venv's Python for
the installed versions of torch and the attention packages, without importing them, and
[`check_calibration`][installer.attention.files.check_calibration] is the one check of
whether the calibration still describes this machine, for `launch`'s neighbours `status`,
`doctor` and install's measuring (`launch` itself decides from the same rules in its plan).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from installer.attention.rules.records import (
    CALIBRATION_FILE,
    WATCHED_DISTRIBUTIONS,
    Calibration,
    dump_calibration,
    parse_calibration,
)
from installer.attention.rules.routing import (
    AttentionProbe,
    CalibrationRead,
    CalibrationState,
    calibration_state,
)
from installer.attention.shim.routes import dump_routes
from installer.core.facts import GpuReport
from installer.edges.state import atomic_write_text, state_dir
from installer.plan.launch_settings import MARKER_ENV

if TYPE_CHECKING:
    from installer.attention.shim.routes import RoutesData


def calibration_path(install_dir: Path) -> Path:
    """Return `DIR/.comfy-install/calibration.json`.

    Args:
        install_dir: DIR, the install directory.
    """
    return state_dir(install_dir) / CALIBRATION_FILE


def read_calibration(install_dir: Path) -> CalibrationRead:
    """Read the install's calibration, if there is one.

    Args:
        install_dir: DIR, the install directory.

    Returns:
        The file's path with the calibration, or with nothing (no file), or
        with the reason it cannot be used (unreadable, not a calibration).
    """
    return read_calibration_at(calibration_path(install_dir))


def read_calibration_at(path: Path) -> CalibrationRead:
    """Read a calibration file at ``path`` (a fleet member's, in its own folder).

    Args:
        path: The file.

    Returns:
        As [`read_calibration`][installer.attention.files.read_calibration].
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return CalibrationRead(path)
    except OSError as exc:
        return CalibrationRead(path, problem=f"{path} cannot be read ({exc.strerror or exc})")
    try:
        return CalibrationRead(path, calibration=parse_calibration(text))
    except ValueError as exc:
        return CalibrationRead(path, problem=f"{path} is {exc}")


def write_calibration(install_dir: Path, calibration: Calibration) -> Path:
    """Write the install's calibration atomically; return where.

    Args:
        install_dir: DIR, the install directory.
        calibration: What `tune` measured.

    Raises:
        EnvironmentUnsupportedError: The disk is full or the folder is not writable.
    """
    path = calibration_path(install_dir)
    atomic_write_text(path, dump_calibration(calibration))
    return path


def write_routes(path: Path, routes: RoutesData) -> None:
    """Write the routing table the shim reads (atomically).

    Args:
        path: Where the launch plan put it (next to the calibration).
        routes: The table as JSON-ready data.

    Raises:
        EnvironmentUnsupportedError: The disk is full or the folder is not writable.
    """
    atomic_write_text(path, dump_routes(routes))


_VERSIONS_PROBE = """
import importlib.metadata as m, json, sys
found = {}
for name in sys.argv[1:]:
    try:
        found[name] = m.version(name)
    except m.PackageNotFoundError:
        found[name] = None
print(json.dumps(found))
"""


def probe_attention(
    venv_python: Path, environ: Mapping[str, str] | None = None
) -> AttentionProbe | None:
    """Ask the venv's Python for the versions of torch and the attention packages (no import).

    Args:
        venv_python: The venv's interpreter.
        environ: Environment for the check (default: this process's).

    Returns:
        The versions (None for a package that is not installed), or None when
        the interpreter did not answer.
    """
    env = dict(os.environ if environ is None else environ)
    env.pop(MARKER_ENV, None)
    try:
        done = subprocess.run(
            [str(venv_python), "-c", _VERSIONS_PROBE, *WATCHED_DISTRIBUTIONS],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=env,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return None
    try:
        versions = json.loads(lines[-1])
    except ValueError:
        return None
    if not isinstance(versions, dict):
        return None
    return AttentionProbe({str(k): None if v is None else str(v) for k, v in versions.items()})


def check_calibration(install_dir: Path, gpu: GpuReport | None = None) -> CalibrationState:
    """Check the install's calibration against this machine now (`status`, `doctor`, `install`).

    The one "missing, stale or fresh" check: the GPUs are detected (when not given) and the
    venv is asked for its package versions only when there is a calibration to check.

    Args:
        install_dir: DIR, the install directory.
        gpu: The GPUs detected now (None: detected here, only when there is a calibration).

    Returns:
        Whether `launch` would route by it, and why not.
    """
    from installer.edges.environment import current_platform
    from installer.edges.generations import current_root
    from installer.edges.probe import layout

    read = read_calibration(install_dir)
    probe = None
    if read.calibration is not None:
        if gpu is None:
            from installer.edges.gpu import detect_gpus

            gpu = detect_gpus()
        platform = current_platform()
        python = layout(current_root(install_dir, platform), platform)["venv_python"]
        probe = probe_attention(python) if python.is_file() else None
    # Without a calibration the GPUs are not looked at (nor detected): any report does.
    unseen = GpuReport(source="none", reason="not detected: no calibration to check")
    return calibration_state(read, probe, gpu or unseen, install_dir)
