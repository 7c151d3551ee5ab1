"""Sharing one model store (a network volume, another drive) between installs.

[`share_models`][installer.models.share.share_models] points ComfyUI at the store through
`extra_model_paths.yaml`, or links (copies where links are not allowed) each file of the store
into `models/<kind>/`; a different file that already has the name is never replaced.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from installer.core.errors import EnvironmentUnsupportedError, UsageError
from installer.models.extra_paths import write_shared_config
from installer.models.files import PARTIAL_SUFFIXES, FileHashes, copy_into_place
from installer.plan.model_kinds import MODEL_KINDS, kind_folders

if TYPE_CHECKING:
    from installer.core.log import InstallerLogger

LinkActionKind = Literal["linked", "copied", "present", "skipped"]


@dataclass(frozen=True)
class LinkAction:
    """What happened to one file of a shared store when linking it into `models/`.

    Attributes:
        source: The file in the store.
        destination: Its place under `models/<kind>/`.
        action: `linked` (a symlink made), `copied` (symlinks not allowed
            here), `present` (already linked, or an identical file is there)
            or `skipped` (a different file has the name).
        reason: Why, for people.
    """

    source: Path
    destination: Path
    action: LinkActionKind
    reason: str

    def as_dict(self) -> dict[str, str]:
        """Return the action as JSON-ready data."""
        return {
            "source": str(self.source),
            "destination": str(self.destination),
            "action": self.action,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class ShareResult:
    """How ComfyUI was pointed at a shared model store.

    Attributes:
        store: The shared store (absolute).
        config_path: The `extra_model_paths.yaml` written, or `None` with links.
        links: The per-file link results (empty without `--link`).
    """

    store: Path
    config_path: Path | None
    links: tuple[LinkAction, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """Return the result as JSON-ready data."""
        return {
            "store": str(self.store),
            "config_path": None if self.config_path is None else str(self.config_path),
            "links": [link.as_dict() for link in self.links],
        }


def check_shared_store(store: Path, models_dir: Path) -> Path:
    """Check that a shared store can be used, and return its absolute path.

    The store must already exist (a network volume that is not mounted must
    not be replaced by an empty folder) and must not be `models_dir` itself
    or lie inside it.

    Args:
        store: The shared store (laid out like `ComfyUI/models`: `<kind>/` folders).
        models_dir: The install's `ComfyUI/models`.

    Returns:
        The store, absolute and resolved.

    Raises:
        UsageError: The store is missing, not a folder, or inside `models_dir`.
    """
    if not store.is_dir():
        raise UsageError(
            f"the shared model store {store} does not exist or is not a folder.",
            "Mount or create it first (comfy-install does not create it, so an unmounted "
            "volume is not mistaken for an empty one).",
        )
    resolved = store.resolve()
    models = models_dir.resolve()
    if resolved == models or resolved.is_relative_to(models):
        raise UsageError(
            f"the shared model store {store} is inside {models_dir}.",
            "Choose a folder outside ComfyUI/models.",
        )
    return resolved


def _store_files(store: Path) -> Iterator[tuple[str, Path, Path]]:
    """Yield (kind, file, path relative to its kind folder) for each file of the store."""
    for kind in MODEL_KINDS:
        for folder_name in kind_folders(kind):
            folder = store / folder_name
            if not folder.is_dir():
                continue
            for root, dirs, files in os.walk(folder):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if name.startswith(".") or name.endswith(PARTIAL_SUFFIXES):
                        continue
                    file = Path(root, name)
                    yield kind, file, file.relative_to(folder)


def link_shared_models(store: Path, models_dir: Path, *, log: InstallerLogger) -> list[LinkAction]:
    """Link every file of a shared store into `models/<kind>/`; copy where links are not allowed.

    A file in `store/<kind>/` (or a legacy folder such as `store/clip/`)
    gets a symlink at `models_dir/<kind>/<same relative path>`. Where the OS
    refuses symlinks (Windows without the privilege, some file systems) the
    file is copied instead, with one warning. A link already pointing at the
    file, or an identical file, is left; a different file is never replaced.

    Args:
        store: The shared store, absolute.
        models_dir: `ComfyUI/models`.
        log: One line per file linked or copied; the warning above.

    Returns:
        One action per file of the store.

    Raises:
        EnvironmentUnsupportedError: A link or copy cannot be written.
    """
    hashes = FileHashes()
    actions: list[LinkAction] = []
    symlinks = True
    for kind, source, relative in _store_files(store):
        destination = models_dir / kind / relative
        present = _link_state(source, destination, hashes)
        if present is not None:
            actions.append(LinkAction(source, destination, *present))
            continue
        try:
            destination.parent.mkdir(parents=True, exist_ok=True)
            made: LinkActionKind = "copied"
            if symlinks:
                try:
                    destination.symlink_to(source)
                    made = "linked"
                except OSError as exc:
                    if destination.is_symlink() or destination.exists():
                        raise
                    symlinks = False
                    log.warn(
                        f"cannot create symlinks in {models_dir} ({exc.strerror or exc}); "
                        "copying the shared files instead"
                    )
            if made == "linked":
                actions.append(LinkAction(source, destination, made, "symlink created"))
                log.info(f"linked {destination} → {source}")
            else:
                copy_into_place(source, destination)
                actions.append(LinkAction(source, destination, made, "symlinks not allowed"))
                log.info(f"copied {source} → {destination}")
        except OSError as exc:
            raise EnvironmentUnsupportedError(
                f"cannot link {source} into {destination.parent}: {exc.strerror or exc}.",
                "Check free space and permissions, then run again.",
            ) from exc
    return actions


def _link_state(
    source: Path, destination: Path, hashes: FileHashes
) -> tuple[LinkActionKind, str] | None:
    """Return (action, reason) when ``destination`` is already taken, else `None`."""
    if destination.is_symlink():
        if destination.readlink() == source or destination.resolve() == source.resolve():
            return "present", "already linked"
        return "skipped", "a link to another file has this name; not replaced"
    if not destination.exists():
        return None
    if destination.is_file() and hashes.same(destination, source):
        return "present", "an identical file is already there"
    return "skipped", "a different file with this name is already there; not replaced"


def share_models(
    comfyui_dir: Path, store: Path, *, log: InstallerLogger, link: bool = False
) -> ShareResult:
    """Point the ComfyUI in ``comfyui_dir`` at a shared model store.

    Args:
        comfyui_dir: The ComfyUI checkout (`DIR/ComfyUI`).
        store: The shared store, laid out like `ComfyUI/models` (`<kind>/` folders).
        log: Where status lines go.
        link: Link (or copy) each file into `models/<kind>/` instead of
            writing `extra_model_paths.yaml`.

    Returns:
        What was written or linked.

    Raises:
        UsageError: The store is missing or inside `ComfyUI/models`.
        ConfigError: An existing `extra_model_paths.yaml` cannot be changed safely.
        EnvironmentUnsupportedError: A file cannot be written.
    """
    models_dir = comfyui_dir / "models"
    resolved = check_shared_store(store, models_dir)
    if link:
        links = link_shared_models(resolved, models_dir, log=log)
        return ShareResult(store=resolved, config_path=None, links=tuple(links))
    config = write_shared_config(comfyui_dir, resolved)
    log.info(f"{config} points ComfyUI at {resolved}")
    return ShareResult(store=resolved, config_path=config)
