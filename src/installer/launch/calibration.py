"""The calibration file of an install: where it is, reading it, writing it (atomically).

`comfy-install tune` writes `DIR/.comfy-install/calibration.json`
([`write_calibration`][installer.launch.calibration.write_calibration]);
`launch` reads it ([`read_calibration`][installer.launch.calibration.read_calibration])
and decides from it. A missing file is no calibration; an unreadable one is
reported with the reason and used no more than a missing one. The routing
table a launch derives from it is written next to it
([`write_routes`][installer.launch.calibration.write_routes]) for the shim in
ComfyUI's process to read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from installer.core.calibration import (
    CALIBRATION_FILE,
    Calibration,
    dump_calibration,
    parse_calibration,
)
from installer.edges.state import atomic_write_text, state_dir
from installer.plan.launch_attention import CalibrationRead


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
        As [`read_calibration`][installer.launch.calibration.read_calibration].
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


def write_routes(path: Path, routes: dict[str, Any]) -> None:
    """Write the routing table the shim reads (atomically).

    Args:
        path: Where the launch plan put it (next to the calibration).
        routes: The table as JSON-ready data.

    Raises:
        EnvironmentUnsupportedError: The disk is full or the folder is not writable.
    """
    atomic_write_text(path, json.dumps(routes, indent=2) + "\n")
