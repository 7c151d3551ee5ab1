"""Saved benchmark runs: one JSON file per run in `DIR/.comfy-install/benchmarks/`."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from pydantic import ValidationError

from installer.attention.measure.results import BenchmarkRun
from installer.core.errors import UsageError
from installer.edges.state import atomic_write_text, state_dir


def benchmarks_dir(install_dir: Path) -> Path:
    """Return `DIR/.comfy-install/benchmarks`.

    Args:
        install_dir: The install directory (`DIR`).
    """
    return state_dir(install_dir) / "benchmarks"


def run_file_name(created_at: str) -> str:
    """Return the file name of a run made at ``created_at`` (sorts by time, no colons).

    Args:
        created_at: The run's time in ISO 8601 format, as in `BenchmarkRun.created_at`.
    """
    stamp = dt.datetime.fromisoformat(created_at).astimezone(dt.timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H-%M-%S.%fZ") + ".json"


def save_run(install_dir: Path, run: BenchmarkRun) -> Path:
    """Save ``run`` atomically under `DIR/.comfy-install/benchmarks/` and return its path.

    Args:
        install_dir: The install directory (`DIR`).
        run: The run to save (its ``created_at`` names the file).

    Raises:
        EnvironmentUnsupportedError: The folder is not writable or the disk is full.
    """
    path = benchmarks_dir(install_dir) / run_file_name(run.created_at)
    atomic_write_text(path, run.model_dump_json(indent=2) + "\n")
    return path


def load_run(path: Path) -> BenchmarkRun:
    """Read a saved run.

    Args:
        path: The run's JSON file.

    Raises:
        UsageError: The file is missing, not JSON or not a benchmark run.
    """
    try:
        return BenchmarkRun.model_validate_json(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(
            f"{path} cannot be read ({exc.strerror or exc}).", "Give an existing run file."
        ) from exc
    except ValidationError as exc:
        raise UsageError(
            f"{path} is not a benchmark run saved by comfy-install "
            f"({exc.error_count()} problem(s)).",
            "Give a file from DIR/.comfy-install/benchmarks/.",
        ) from exc


def saved_runs(install_dir: Path) -> list[Path]:
    """Return the saved run files of an install, oldest first.

    Args:
        install_dir: The install directory (`DIR`).
    """
    folder = benchmarks_dir(install_dir)
    try:
        return sorted(path for path in folder.glob("*.json") if path.is_file())
    except OSError:
        return []


def latest_run(install_dir: Path, before: str | None = None) -> tuple[Path, BenchmarkRun] | None:
    """Return the newest readable saved run (made before ``before``, when given).

    Args:
        install_dir: The install directory (`DIR`).
        before: A run's ``created_at``: only runs saved earlier count (None: any run).
    """
    for path in reversed(saved_runs(install_dir)):
        if before is not None and path.name >= run_file_name(before):
            continue
        try:
            return path, load_run(path)
        except UsageError:
            continue
    return None
