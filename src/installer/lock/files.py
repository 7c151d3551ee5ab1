"""Lock files on disk: read the headers of a folder of locks, find one target's lock, write one.

The format itself (header, entries, sections) is
[`installer.core.lockfile`][installer.core.lockfile]; this module is the folder around
it: the shipped `locks/` or a `--lock-dir`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from installer.core.config import Dependencies
from installer.core.errors import StepFailedError
from installer.core.lockfile import (
    PYTHON_PLATFORMS,
    LockHeader,
    LockTarget,
    parse_lock,
    read_header,
)
from installer.edges.state import atomic_write_text
from installer.plan.lock import LockChoice, choose_lock, python_minor


@dataclass(frozen=True)
class LockWrite:
    """The result of writing one lock file."""

    target: LockTarget
    path: Path
    changed: bool
    packages: dict[str, int]
    size: int
    inputs_sha256: str


def read_lock_headers(lock_dir: Path) -> dict[str, LockHeader]:
    """Read the header of every lock file in ``lock_dir``, by target name.

    Args:
        lock_dir: The folder of lock files (the shipped `locks/` or `--lock-dir`); a file whose name
            does not match its header's target is ignored.

    Returns:
        Headers by target name, e.g. `linux-default-py312`; ``{}`` for no folder.
    """
    headers: dict[str, LockHeader] = {}
    try:
        files = sorted(lock_dir.glob("*.txt"))
    except OSError:
        return headers
    for path in files:
        header = read_header(path)
        if header is not None and path.name == header.target.filename:
            headers[header.target.name] = header
    return headers


_TARGET_NAME = re.compile(r"^(?P<platform>[a-z]+)-(?P<variant>[a-z0-9]+)-py(?P<python>[0-9]+)$")


def lock_problems(lock_dir: Path) -> dict[str, str]:
    """Say what is wrong with each lock file of ``lock_dir`` that cannot be used, by target name.

    A file named like a lock (`linux-default-py312.txt`) must be one: its header must
    parse and name that target, and it must hold as many entries in each section as its
    header's `counts` line says (a lock cut short, or edited, fails that check). A lock
    that passes is not listed; files named otherwise are not looked at.

    Args:
        lock_dir: The folder of lock files (the shipped `locks/` or `--lock-dir`).

    Returns:
        ``{target name: "PATH: what is wrong"}``; ``{}`` when every lock is whole.
    """
    problems: dict[str, str] = {}
    try:
        files = sorted(lock_dir.glob("*.txt"))
    except OSError:
        return problems
    for path in files:
        if _TARGET_NAME.match(path.stem) is None:
            continue
        why = _lock_problem(path)
        if why is not None:
            problems[path.stem] = f"{path}: {why}"
    return problems


def _lock_problem(path: Path) -> str | None:
    """What makes the lock at ``path`` unusable, or None when it is whole."""
    header = read_header(path)
    if header is None:
        return "not a comfy-install lock (its first line is not a lock header, or it is not text)"
    if header.target.name != path.stem:
        return f"its header is for the target {header.target.name!r}, not {path.stem!r}"
    counts = header.values.get("counts")
    if counts is None:
        return "its header has no counts line (it was edited or cut short)"
    try:
        expected = {
            name: int(number)
            for name, number in (part.strip().split(" ") for part in counts.split(","))
        }
        found = {name: len(entries) for name, entries in parse_lock(path).sections.items()}
    except (ValueError, OSError, StepFailedError):
        return f"its counts line ({counts!r}) or its entries cannot be read"
    wrong = [
        f"{name}: {found.get(name, 0)} entries, the header says {number}"
        for name, number in expected.items()
        if found.get(name, 0) != number
    ]
    if wrong:
        return "it is incomplete or was edited (" + "; ".join(wrong) + ")"
    return None


def find_lock(lock_dir: Path, target: LockTarget) -> LockHeader | None:
    """Read the header of the lock for ``target`` in ``lock_dir`` (None: no such lock).

    Args:
        lock_dir: The folder of lock files.
        target: The lock target; the file's header must name the same one.
    """
    header = read_header(lock_dir / target.filename)
    if header is None or header.target != target:
        return None
    return header


def lock_choice(
    deps: Dependencies, platform: str, variant: str, python: str, lock_dir: Path
) -> LockChoice:
    """Find the lock for a target in ``lock_dir`` and say whether it fits ``deps``.

    Args:
        deps: The configuration.
        platform: Target OS.
        variant: Torch variant (`default`: uv's default index).
        python: Python version (`3.12`).
        lock_dir: Where the lock files are.
    """
    minor = python_minor(python)
    headers: dict[str, LockHeader] = {}
    if minor is not None and platform in PYTHON_PLATFORMS:
        target = LockTarget(platform, variant, minor)
        header = find_lock(lock_dir, target)
        if header is not None:
            headers[target.name] = header
    return choose_lock(
        deps,
        platform=platform,
        variant=variant,
        python=python,
        headers=headers,
        comfyui_commit=deps.comfyui.commit,
    )


def write_lock(lock_dir: Path, target: LockTarget, text: str) -> LockWrite:
    """Write a lock file atomically; say whether its content changed.

    Args:
        lock_dir: The folder the lock goes in (created when missing).
        target: The lock target; it names the file.
        text: The whole lock file, from [`render_lock`][installer.core.lockfile.render_lock].

    Raises:
        EnvironmentUnsupportedError: The folder is not writable.
    """
    path = lock_dir / target.filename
    try:
        old = path.read_text(encoding="utf-8")
    except OSError:
        old = None
    if old != text:
        atomic_write_text(path, text)
        # A lock is a shipped, shared file: readable by all (atomic writes create 0600 files).
        path.chmod(0o644)
    header = read_header(path)
    lock = parse_lock(path)
    return LockWrite(
        target=target,
        path=path,
        changed=old != text,
        packages={name: len(entries) for name, entries in lock.sections.items()},
        size=len(text.encode("utf-8")),
        inputs_sha256=header.inputs_sha256 if header else "",
    )
