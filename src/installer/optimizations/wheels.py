"""Prebuilt wheels for step 10: downloaded once to the cache, checked against their sha256.

A wheel is downloaded (resumable) to
[`download_cache_dir`][installer.optimizations.wheels.download_cache_dir] and checked
against the sha256 `tools_manifest.json` records for it before it is installed from the
local file; a checksum mismatch stops the step (exit code 4).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from installer.core.errors import InstallerError, IntegrityError
from installer.core.log import InstallerLogger
from installer.optimizations.target import StepTarget
from installer.plan.optimizations import PlannedOptimization


def download_cache_dir() -> Path:
    """Return the folder downloaded wheels are kept in (`COMFY_INSTALL_CACHE_DIR` overrides)."""
    override = os.environ.get("COMFY_INSTALL_CACHE_DIR")
    if override:
        return Path(override) / "downloads"
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("comfy-install", appauthor=False)) / "downloads"


def download_wheels(
    wheels: Sequence[PlannedOptimization], target: StepTarget, log: InstallerLogger
) -> tuple[dict[str, Path], dict[str, str]]:
    """Download (or find in the cache) and verify the wheels; return (files, failures).

    Args:
        wheels: The wheel entries to install.
        target: The download jobs and whether unverified wheels are accepted.
        log: Where progress goes.

    Returns:
        The local file of each wheel, and the reason each failed download failed, by file name.

    Raises:
        IntegrityError: A wheel does not match its checksum (whatever else happened).
    """
    from installer.core.downloads import DownloadRequest
    from installer.edges.download.api import download_files_settled

    requests = [
        DownloadRequest(
            url=e.wheel.url,
            dest_dir=download_cache_dir(),
            filename=e.wheel.filename,
            sha256=e.wheel.sha256,
            size=e.wheel.size,
        )
        for e in wheels
        if e.wheel
    ]
    files: dict[str, Path] = {}
    failures: dict[str, str] = {}
    if not requests:
        return files, failures
    outcomes = download_files_settled(
        requests, log=log, jobs=target.download_jobs, allow_unverified=target.allow_unverified
    )
    for outcome in outcomes:
        if isinstance(outcome, IntegrityError):
            raise outcome
    for request, outcome in zip(requests, outcomes, strict=True):
        if isinstance(outcome, InstallerError):
            failures[request.filename or ""] = outcome.message
        else:
            files[request.filename or ""] = outcome.path
    return files, failures
