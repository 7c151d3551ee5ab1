"""Write an image's build context to a folder, atomically, and gather what goes into it.

The folder is assembled next to its final place and renamed into it, so a
reader sees the old context or the new one, never half of one. Every file gets
mode 0644, every folder 0755 and every time stamp `SOURCE_DATE_EPOCH`, so two
contexts of the same inputs are identical, file for file and byte for byte.
A folder is replaced only when it is empty or a context this command wrote
(it holds the marker file).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from installer.image.containerfile import (
    BUILD_DIR,
    MARKER_FILE,
    SOURCE_DATE_EPOCH,
    ContextFile,
)
from installer.image.own_wheel import checkout_root

WHEEL_SUFFIXES = (".whl", ".tar.gz", ".zip")


def sha256_file(path: Path) -> str:
    """Return the sha256 of a file's bytes, as 64 hex digits.

    Args:
        path: The file.
    """
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_local(location: str) -> bool:
    """Return True when ``location`` names something on this machine (a path, a file:// URL).

    Args:
        location: A URL or path as given on the command line.
    """
    if location.startswith("file://"):
        return True
    return "://" not in location and not location.startswith("git@")


def local_path(location: str) -> Path:
    """Return the path of a local location (a `file://` URL or a path).

    Args:
        location: A location for which [`is_local`][installer.image.context.is_local] is True.
    """
    return Path(location.removeprefix("file://")).expanduser().absolute()


def comfyui_source_file(location: str) -> tuple[str, ContextFile]:
    """Place a local ComfyUI source (a git bundle) in the context.

    Args:
        location: `--comfyui-url` naming a file on this machine.

    Returns:
        The URL the install inside the image clones from, and the context file.

    Raises:
        UsageError: The location is not a file (a folder must be made a bundle first).
    """
    from installer.core.errors import UsageError

    path = local_path(location)
    if not path.is_file():
        raise UsageError(
            f"--comfyui-url {location}: a local ComfyUI source must be a git bundle file.",
            f"Make one with `git -C {location} bundle create comfyui.bundle --all`, "
            "or give a URL the image can clone from.",
        )
    return f"{BUILD_DIR}/sources/{path.name}", ContextFile(f"sources/{path.name}", source=path)


def find_links_files(location: str) -> tuple[str, list[ContextFile]]:
    """Place a local folder of wheels in the context.

    Args:
        location: `--find-links` naming a folder on this machine.

    Returns:
        The folder the install inside the image reads, and the context files (sorted).

    Raises:
        UsageError: The location is not a folder.
    """
    from installer.core.errors import UsageError

    folder = local_path(location)
    if not folder.is_dir():
        raise UsageError(f"--find-links {location}: not a folder on this machine.")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(WHEEL_SUFFIXES))
    return f"{BUILD_DIR}/wheels", [ContextFile(f"wheels/{p.name}", source=p) for p in files]


def write_context(directory: Path, files: Sequence[ContextFile]) -> list[tuple[str, str]]:
    """Write the build context into ``directory``, replacing the context that was there.

    Args:
        directory: The context folder; created, or replaced when it is empty or a context.
        files: The files, from [`context_files`][installer.image.containerfile.context_files].

    Returns:
        (path, sha256) of each file written, sorted by path.

    Raises:
        UsageError: ``directory`` is a file, or a folder with other things in it.
        EnvironmentUnsupportedError: The folder cannot be written (permissions, disk full).
    """
    from installer.core.errors import EnvironmentUnsupportedError, UsageError

    directory = directory.expanduser().absolute()
    if directory.exists() and (
        not directory.is_dir()
        or (any(directory.iterdir()) and not (directory / MARKER_FILE).is_file())
    ):
        raise UsageError(
            f"{directory} exists and is not an image context written by comfy-install.",
            "Choose a new or empty folder.",
        )
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        try:
            written = _fill(staging, files)
            _swap(staging, directory)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    except OSError as error:
        raise EnvironmentUnsupportedError(
            f"Cannot write the image context to {directory}: {error.strerror or error}.",
            "Choose a folder you can write to, on a disk with free space.",
        ) from error
    return written


def _fill(root: Path, files: Sequence[ContextFile]) -> list[tuple[str, str]]:
    written: list[tuple[str, str]] = []
    for entry in sorted(files, key=lambda f: f.path):
        path = root / entry.path
        path.parent.mkdir(parents=True, exist_ok=True)
        if entry.text is not None:
            path.write_bytes(entry.text.encode("utf-8"))
        elif entry.source is not None:
            shutil.copyfile(entry.source, path)
        path.chmod(0o644)
        written.append((entry.path, sha256_file(path)))
    (root / MARKER_FILE).write_bytes(b"")
    (root / MARKER_FILE).chmod(0o644)
    for path in sorted(root.rglob("*"), reverse=True):
        if path.is_dir():
            path.chmod(0o755)
        os.utime(path, (SOURCE_DATE_EPOCH, SOURCE_DATE_EPOCH))
    root.chmod(0o755)
    os.utime(root, (SOURCE_DATE_EPOCH, SOURCE_DATE_EPOCH))
    return written


def _swap(staging: Path, directory: Path) -> None:
    """Rename ``staging`` to ``directory``; an old context is moved aside first, then removed."""
    if not directory.exists():
        staging.rename(directory)
        return
    old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
    directory.rename(old)
    try:
        staging.rename(directory)
    except OSError:
        old.rename(directory)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _uv() -> str:
    from uv import find_uv_bin

    return str(find_uv_bin())


def exported_requirements(root: Path) -> str:
    """Return this tool's dependencies as its `uv.lock` pins and hashes them (`uv export`).

    Only the runtime dependencies: no dev or docs groups, not the project itself (its wheel is
    installed on its own). The text names no host path, so one lock gives the same bytes anywhere.

    Args:
        root: The checkout, holding `pyproject.toml` and `uv.lock`.

    Raises:
        CommandFailedError: `uv export` failed (e.g. `uv.lock` is out of date with
            `pyproject.toml`: run `uv lock`).
    """
    import subprocess

    from installer.core.errors import CommandFailedError

    command = [
        _uv(),
        "export",
        "--frozen",
        "--no-default-groups",
        "--no-emit-project",
        "--no-header",
        "--format",
        "requirements-txt",
    ]
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise CommandFailedError(
            "uv export", done.returncode, done.stderr, "Run `uv lock` in the checkout, then again."
        )
    return done.stdout


def installed_requirements(distribution: str = "comfy-install") -> str:
    """Return the dependencies of ``distribution``, pinned to the versions installed with it.

    For a tool installed from a wheel, which has no `uv.lock` beside it: each dependency,
    followed through its own dependencies, is pinned to the version this environment holds
    (`name==version`, no hashes); one not installed here (its marker excludes this machine) is
    kept as its requirement says, marker and all.

    Args:
        distribution: The installed distribution whose dependencies are pinned.
    """
    from importlib.metadata import PackageNotFoundError, requires
    from importlib.metadata import distribution as find

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins: dict[str, str] = {}
    waiting = list(requires(distribution) or [])
    while waiting:
        requirement = Requirement(waiting.pop())
        if requirement.marker is not None and "extra" in str(requirement.marker):
            continue
        name = canonicalize_name(requirement.name)
        if name in pins:
            continue
        try:
            found = find(requirement.name)
        except PackageNotFoundError:
            pins[name] = str(requirement)
            continue
        marker = f" ; {requirement.marker}" if requirement.marker is not None else ""
        pins[name] = f"{name}=={found.version}{marker}"
        waiting += found.requires or []
    return "".join(line + "\n" for _, line in sorted(pins.items()))


def tool_requirements() -> tuple[str, str]:
    """Return this tool's dependencies, pinned, and where the pins come from.

    From the checkout's `uv.lock` (hashed) when this tool runs from a checkout; otherwise the
    versions installed with it
    ([`installed_requirements`][installer.image.context.installed_requirements]).

    Raises:
        CommandFailedError: `uv export` failed.
    """
    root = checkout_root()
    if root is not None and (root / "uv.lock").is_file():
        return exported_requirements(root), "uv.lock (hashed)"
    return installed_requirements(), "the versions installed with this comfy-install (no hashes)"
