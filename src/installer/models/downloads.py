"""Downloading the files of a model manifest into `models/<kind>/`, verified.

The requests come from [`plan_model_downloads`][installer.plan.models.plan_model_downloads];
[`fetch_planned_models`][installer.models.downloads.fetch_planned_models] is the one place both
`comfy-install models download` and install step 12 hand them to the downloader. What happens to
a file already at a planned place is decided here: today the downloader keeps it when its sha256
matches and fetches it again otherwise; a policy for a different existing file (a conflict,
moving the old file aside) belongs in this module, before the requests are handed over.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from installer.edges.download.api import download_files
from installer.plan.models import PlannedModel, plan_model_downloads

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
) -> list[DownloadResult]:
    """Download the planned model files, ``jobs`` at a time; files already right are skipped.

    Args:
        planned: The downloads from
            [`plan_model_downloads`][installer.plan.models.plan_model_downloads].
        log: Progress bars on a terminal, one line per file otherwise.
        jobs: Transfers at a time.
        allow_unverified: Accept entries without a sha256.

    Returns:
        One result per planned file, in order.

    Raises:
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
    )


def download_models(
    entries: Sequence[ModelEntry],
    models_dir: Path,
    *,
    log: InstallerLogger,
    jobs: int = 4,
    allow_unverified: bool = False,
) -> list[Path]:
    """Download model files into `models_dir/<kind>/`, verified, ``jobs`` at a time.

    Every entry is checked first (see
    [`plan_model_downloads`][installer.plan.models.plan_model_downloads]); files
    already present with the right sha256 are not fetched again.

    Args:
        entries: The `models` list of a model manifest or of `dependencies.json`.
        models_dir: `ComfyUI/models`, or a shared store laid out the same way.
        log: Progress bars on a terminal, one line per file otherwise.
        jobs: Transfers at a time.
        allow_unverified: Accept entries without a sha256.

    Returns:
        The final path of each file, in the order of ``entries``.

    Raises:
        ConfigError: A bad entry (unknown kind, unsafe file name, duplicate).
        IntegrityError: An entry without sha256 (unless allowed), or a file
            whose hash or size is wrong.
        NetworkError: A server stayed unreachable or kept failing.
        DownloadError: A server refused a file, or a URL breaks the policy.
        EnvironmentUnsupportedError: A file cannot be written.
        UsageError: ``jobs`` below 1.
    """
    planned = plan_model_downloads(entries, models_dir, allow_unverified=allow_unverified)
    results = fetch_planned_models(planned, log=log, jobs=jobs, allow_unverified=allow_unverified)
    return [result.path for result in results]
