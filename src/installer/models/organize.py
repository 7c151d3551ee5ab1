"""Organizing loose model files into `models/<kind>/`: plan the moves, then carry them out.

[`plan_organize`][installer.models.organize.plan_organize] classifies every loose file and decides
its action; [`apply_organize`][installer.models.organize.apply_organize] moves files and removes
duplicates. A different file that already has the name is never overwritten.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from installer.core.errors import EnvironmentUnsupportedError, UsageError
from installer.models.classify import Classification, ManifestIndex, classify_with
from installer.models.files import PARTIAL_SUFFIXES, FileHashes, copy_into_place

if TYPE_CHECKING:
    from installer.core.log import InstallerLogger

MODEL_EXTENSIONS: frozenset[str] = frozenset(
    {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft", ".gguf"}
)
"""File extensions treated as model files: ComfyUI's `supported_pt_extensions` and `.gguf`."""

OrganizeActionKind = Literal["move", "remove-duplicate", "skip", "unclassified"]


@dataclass(frozen=True)
class OrganizeAction:
    """What organizing does (or would do) with one loose file.

    Attributes:
        source: The loose file.
        action: `move` into place, `remove-duplicate` (an identical file is
            already in place), `skip` (a reason prevents the move) or
            `unclassified` (left where it is).
        classification: The kind found for the file and why.
        destination: Where the file goes or collides (`None` when unclassified).
        reason: Why this action, for people.
    """

    source: Path
    action: OrganizeActionKind
    classification: Classification
    destination: Path | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """Return the action as JSON-ready data."""
        return {
            "source": str(self.source),
            "action": self.action,
            "kind": self.classification.kind,
            "method": self.classification.method,
            "destination": None if self.destination is None else str(self.destination),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class OrganizePlan:
    """Every loose file found and what organizing does with it.

    Attributes:
        models_dir: The `ComfyUI/models` whose loose files were looked at.
        target_dir: The folder holding the `<kind>/` folders files go to
            (`ComfyUI/models`, or a shared store).
        actions: One action per loose model file, in the order found.
    """

    models_dir: Path
    target_dir: Path
    actions: tuple[OrganizeAction, ...]

    def counts(self) -> dict[str, int]:
        """Return how many files get each action."""
        kinds: tuple[OrganizeActionKind, ...] = ("move", "remove-duplicate", "skip", "unclassified")
        return {kind: sum(a.action == kind for a in self.actions) for kind in kinds}

    def as_dict(self) -> dict[str, Any]:
        """Return the plan as JSON-ready data."""
        return {
            "models_dir": str(self.models_dir),
            "target_dir": str(self.target_dir),
            "actions": [action.as_dict() for action in self.actions],
            "counts": self.counts(),
        }


def _is_model_file(path: Path) -> bool:
    name = path.name
    return (
        not name.startswith(".")
        and not name.endswith(PARTIAL_SUFFIXES)
        and path.suffix.lower() in MODEL_EXTENSIONS
        and path.is_file()
        and not path.is_symlink()
    )


def loose_model_files(models_dir: Path, sources: Sequence[Path] = ()) -> list[Path]:
    """Return the model files waiting to be organized.

    Args:
        models_dir: `ComfyUI/models`; the model files directly in it count.
        sources: Further download folders (their model files, not
            subfolders) or single files (taken whatever their extension).

    Returns:
        The files, each once, in a stable order. Hidden files, partial
        downloads and symlinks in the folders are left out.

    Raises:
        UsageError: A source does not exist, or is a symlink to a file.
    """
    found: list[Path] = []
    seen: set[Path] = set()

    def add(path: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            found.append(path)

    for folder in (models_dir, *sources):
        if folder.is_symlink() and folder.is_file():
            raise UsageError(
                f"{folder} is a symlink; organize moves real files only (a moved relative "
                "link would break).",
                "Give the path of the file it points to.",
            )
        if folder.is_file():
            add(folder)
        elif folder.is_dir():
            for child in sorted(folder.iterdir()):
                if _is_model_file(child):
                    add(child)
        elif folder != models_dir:
            raise UsageError(f"{folder} does not exist.", "Check the path given to --from.")
    return found


def plan_organize(
    models_dir: Path,
    *,
    sources: Sequence[Path] = (),
    manifest: ManifestIndex | None = None,
    target_dir: Path | None = None,
) -> OrganizePlan:
    """Decide where every loose model file goes; change nothing.

    A file goes to `target_dir/<kind>/<name>`. When a file of that name is
    already there (or another loose file claims the place), the two are
    compared: identical content means the loose copy is a duplicate to
    remove; different content means the file is skipped with the reason. A
    file already in its place, of no settled kind, or that cannot be read
    stays where it is.

    Args:
        models_dir: `ComfyUI/models` (its loose files are organized).
        sources: Further download folders or files to organize.
        manifest: A manifest whose entries decide first.
        target_dir: Where the `<kind>/` folders are (default: ``models_dir``;
            a shared store with `--shared-models`).

    Returns:
        The plan, one action per loose file.

    Raises:
        UsageError: A source does not exist, or is a symlink to a file.
    """
    target = target_dir if target_dir is not None else models_dir
    hashes = FileHashes()
    claimed: dict[Path, Path] = {}
    actions: list[OrganizeAction] = []
    for source in loose_model_files(models_dir, sources):
        try:
            actions.append(_plan_one(source, target, manifest, hashes, claimed))
        except OSError as exc:
            unread = Classification(None, "none", f"cannot read it: {exc.strerror or exc}")
            actions.append(OrganizeAction(source, "skip", unread, None, unread.reason))
    return OrganizePlan(models_dir=models_dir, target_dir=target, actions=tuple(actions))


def _plan_one(
    source: Path,
    target: Path,
    manifest: ManifestIndex | None,
    hashes: FileHashes,
    claimed: dict[Path, Path],
) -> OrganizeAction:
    found = classify_with(source, manifest, hashes)
    if found.kind is None:
        return OrganizeAction(source, "unclassified", found, None, "left in place: " + found.reason)
    folder = target / found.kind
    if found.subfolder:
        folder = folder.joinpath(*found.subfolder.split("/"))
    destination = folder / source.name
    if destination.exists() and destination.resolve() == source.resolve():
        return OrganizeAction(source, "skip", found, destination, "already in place")
    rival = claimed.get(destination)
    if rival is not None:
        if hashes.same(rival, source):
            return OrganizeAction(
                source,
                "remove-duplicate",
                found,
                destination,
                f"identical to {rival}, which moves there",
            )
        return OrganizeAction(
            source,
            "skip",
            found,
            destination,
            f"{rival} (different content, same name) moves there",
        )
    if destination.is_symlink() or destination.exists():
        if destination.is_file() and hashes.same(destination, source):
            return OrganizeAction(
                source, "remove-duplicate", found, destination, "an identical file is already there"
            )
        return OrganizeAction(
            source,
            "skip",
            found,
            destination,
            "a different file with this name is already there; not overwritten",
        )
    claimed[destination] = source
    return OrganizeAction(source, "move", found, destination, found.reason)


def apply_organize(plan: OrganizePlan, *, log: InstallerLogger) -> list[OrganizeAction]:
    """Carry out a plan: move files and remove duplicates; skip the rest.

    Moves never overwrite: a file that appeared at a destination since the
    plan was made is left alone. A move across file systems copies to a
    temporary file beside the destination, renames it, then deletes the source.

    Args:
        plan: The plan from [`plan_organize`][installer.models.organize.plan_organize].
        log: One line per file moved or removed.

    Returns:
        The actions carried out (moves and duplicate removals).

    Raises:
        EnvironmentUnsupportedError: A file cannot be moved or removed (the
            files handled before it stay handled).
    """
    done: list[OrganizeAction] = []
    for action in plan.actions:
        if action.destination is None or action.action not in ("move", "remove-duplicate"):
            continue
        try:
            if action.action == "move":
                if not _move_no_clobber(action.source, action.destination):
                    log.warn(f"{action.destination} appeared meanwhile; {action.source} not moved")
                    continue
                log.info(f"moved {action.source.name} → {action.destination.parent}")
            else:
                action.source.unlink()
                log.info(f"removed {action.source} (identical to {action.destination})")
        except OSError as exc:
            raise EnvironmentUnsupportedError(
                f"cannot {action.action.replace('-', ' ')} {action.source}: {exc.strerror or exc}.",
                "Check free space and permissions of both folders, then run again.",
            ) from exc
        done.append(action)
    return done


def _move_no_clobber(source: Path, destination: Path) -> bool:
    """Move ``source`` to ``destination`` unless something is there; return whether it moved."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    if destination.exists() or destination.is_symlink():
        return False
    try:
        os.rename(source, destination)  # noqa: PTH104 - os.rename reports EXDEV, which we need
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        copy_into_place(source, destination)
        source.unlink()
    return True
