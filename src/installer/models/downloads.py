"""Downloading the files of a model manifest into `models/<kind>/`, verified.

The requests come from
[`plan_model_downloads`][installer.plan.model_downloads.plan_model_downloads];
[`fetch_planned_models`][installer.models.downloads.fetch_planned_models] is the one place both
`comfy-install models download` and install step 12 hand them to the downloader, with the rule
for a file already at a planned place:
[`ModelFilePolicy`][installer.plan.model_files.ModelFilePolicy]. It keeps the right file, moves
a wrong one aside once the right one is verified, and stops with a
[`FileConflictError`][installer.core.errors.FileConflictError] rather than replace a file that
no sha256 tells apart. A user's file is never deleted or written over.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from installer.edges.download.api import download_files
from installer.plan.model_downloads import PlannedModel, plan_model_downloads
from installer.plan.model_files import ModelFilePolicy

if TYPE_CHECKING:
    from collections.abc import Sequence

    from installer.core.config import ModelEntry
    from installer.core.downloads import DownloadResult
    from installer.core.log import InstallerLogger


def fetch_planned_models(
    planned: Sequence[PlannedModel],
    *,
    log: InstallerLogger,
    jobs: int = 4,
    allow_unverified: bool = False,
    replace: bool = False,
    replace_how: str = "pass --replace",
) -> list[DownloadResult]:
    """Download the planned model files, ``jobs`` at a time; files already right are skipped.

    Args:
        planned: The downloads from
            [`plan_model_downloads`][installer.plan.model_downloads.plan_model_downloads].
        log: Progress bars on a terminal, one line per file otherwise.
        jobs: Transfers at a time.
        allow_unverified: Accept entries without a sha256.
        replace: Move a different file of an entry without a sha256 aside instead of
            stopping (`--replace`).
        replace_how: How the user asks for ``replace`` in this command (said in the
            hint of a conflict).

    Returns:
        One result per planned file, in order; `moved_aside` says where a file that
        was in the way went.

    Raises:
        FileConflictError: A different file has a planned name and no sha256 says
            which one is right (it is kept; the other files still download).
        IntegrityError: A file whose hash or size is wrong.
        NetworkError: A server stayed unreachable or kept failing.
        DownloadError: A server refused a file, or a URL breaks the policy.
        EnvironmentUnsupportedError: A file cannot be written.
        UsageError: ``jobs`` below 1.
    """
    return download_files(
        [item.request for item in planned],
        log=log,
        jobs=jobs,
        allow_unverified=allow_unverified,
        existing=ModelFilePolicy(replace=replace, replace_how=replace_how),
    )


def download_models(
    entries: Sequence[ModelEntry],
    models_dir: Path,
    *,
    log: InstallerLogger,
    jobs: int = 4,
    allow_unverified: bool = False,
    replace_how: str = "pass --replace",
) -> list[Path]:
    """Download model files into `models_dir/<kind>/`, verified, ``jobs`` at a time.

    Every entry is checked first (see
    [`plan_model_downloads`][installer.plan.model_downloads.plan_model_downloads]); files
    already present with the right sha256 are not fetched again.

    Args:
        entries: The `models` list of a model manifest or of `dependencies.json`.
        models_dir: `ComfyUI/models`, or a shared store laid out the same way.
        log: Progress bars on a terminal, one line per file otherwise.
        jobs: Transfers at a time.
        allow_unverified: Accept entries without a sha256.
        replace_how: What the user can do to move a file in the way aside (said in
            the hint of a conflict); this function itself never does without a sha256.

    Returns:
        The final path of each file, in the order of ``entries``.

    Raises:
        ConfigError: A bad entry (unknown kind, unsafe file name, duplicate).
        FileConflictError: A different file has a planned name and no sha256 says
            which one is right (it is kept).
        IntegrityError: An entry without sha256 (unless allowed), or a file
            whose hash or size is wrong.
        NetworkError: A server stayed unreachable or kept failing.
        DownloadError: A server refused a file, or a URL breaks the policy.
        EnvironmentUnsupportedError: A file cannot be written.
        UsageError: ``jobs`` below 1.
    """
    planned = plan_model_downloads(entries, models_dir, allow_unverified=allow_unverified)
    results = fetch_planned_models(
        planned,
        log=log,
        jobs=jobs,
        allow_unverified=allow_unverified,
        replace_how=replace_how,
    )
    return [result.path for result in results]
