"""The model downloads of a manifest, checked and planned before anything is fetched.

[`plan_model_downloads`][installer.plan.model_downloads.plan_model_downloads] turns the
`models` entries of a model manifest (or of `dependencies.json`) into download requests: an
unknown kind, a file name that would leave its folder, two entries writing one file or (unless
allowed) an entry without a sha256 is refused with the JSON path of the entry. Pure: the planner
runs it for the plan of install step 12, the `models download` command before its transfers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from installer.core.downloads import DownloadRequest
from installer.core.errors import ConfigError, IntegrityError
from installer.plan.model_kinds import model_relative_path, resolve_kind, where_in

if TYPE_CHECKING:
    from collections.abc import Sequence

    from installer.core.config import ModelEntry


@dataclass(frozen=True)
class PlannedModel:
    """One checked manifest entry, ready to download.

    Attributes:
        index: The entry's position in the manifest's `models` list.
        kind: The entry's kind with aliases resolved (`clip` → `text_encoders`).
        request: What [`download_files`][installer.edges.download.api.download_files]
            fetches for it.
    """

    index: int
    kind: str
    request: DownloadRequest


def plan_model_downloads(
    entries: Sequence[ModelEntry],
    models_dir: Path,
    *,
    allow_unverified: bool = False,
    source: str | None = None,
) -> list[PlannedModel]:
    """Check manifest entries and turn them into download requests; fetch nothing.

    Args:
        entries: The `models` list of a model manifest or of `dependencies.json`.
        models_dir: The folder holding the `<kind>/` folders (`ComfyUI/models`
            or a shared store).
        allow_unverified: Accept entries without a sha256.
        source: The file the entries come from, named in errors.

    Returns:
        One planned download per entry, in order.

    Raises:
        ConfigError: An unknown kind, a file name that would leave its folder,
            or two entries writing the same file; the message gives the JSON
            path (`models[3].kind`).
        IntegrityError: Entries without a sha256 while unverified files are
            not allowed (all of them are listed).
    """
    planned: list[PlannedModel] = []
    unverified: list[str] = []
    targets: dict[tuple[str, ...], int] = {}
    for index, entry in enumerate(entries):
        path = f"models[{index}]"
        kind = resolve_kind(entry.kind, where=where_in(source, f"{path}.kind"))
        dest_dir = models_dir / kind
        filename: str | None = None
        if entry.filename is not None:
            parts = model_relative_path(entry.filename, where=where_in(source, f"{path}.filename"))
            dest_dir = dest_dir.joinpath(*parts[:-1])
            filename = parts[-1]
            other = targets.setdefault((kind, *parts), index)
            if other != index:
                raise ConfigError(
                    f"{where_in(source, path)} and models[{other}] both write "
                    f"{kind}/{entry.filename}.",
                    "Remove the duplicate entry or give one of them another filename.",
                )
        if entry.sha256 is None:
            unverified.append(f"{path} ({entry.filename or entry.url})")
        planned.append(
            PlannedModel(
                index=index,
                kind=kind,
                request=DownloadRequest(
                    url=entry.url,
                    dest_dir=dest_dir,
                    filename=filename,
                    sha256=entry.sha256,
                    size=entry.size,
                ),
            )
        )
    if unverified and not allow_unverified:
        where = f" in {source}" if source else ""
        raise IntegrityError(
            f"no sha256 is recorded{where} for: {', '.join(unverified)}; refusing to download "
            "unverified model files.",
            "Add each file's sha256 (and size) to the manifest, or pass --allow-unverified "
            "to accept them unchecked.",
        )
    return planned
