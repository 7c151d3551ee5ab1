"""Is a lock still right: against the configuration now, and against an install's checkout.

[`check_lock`][installer.lock.check.check_lock] is what `comfy-install lock --check`
reports for each file; [`lock_sources_mismatch`][installer.lock.check.lock_sources_mismatch]
is what step 8 asks before it installs from a lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from installer.core.config import Dependencies
from installer.core.errors import InstallerError, UsageError
from installer.core.lockfile import (
    LOCK_FORMAT,
    PYTHON_PLATFORMS,
    LockHeader,
    LockSources,
    LockTarget,
    read_header,
    requirements_sha256,
)
from installer.lock.sources import node_requirements_text
from installer.plan.lock import changed_inputs, lock_inputs


@dataclass(frozen=True)
class LockCheck:
    """The result of checking one lock file against the configuration."""

    target: LockTarget
    path: Path
    ok: bool
    reason: str


def check_lock(header: LockHeader, deps: Dependencies, sources: LockSources) -> LockCheck:
    """Compare a lock's recorded inputs hash with the one the configuration gives now.

    Args:
        header: The lock's header.
        deps: The configuration now.
        sources: The requirement files now.
    """
    target = header.target
    if header.format != LOCK_FORMAT:
        return LockCheck(target, header.path, False, f"lock format v{header.format}")
    if target.platform not in PYTHON_PLATFORMS:
        return LockCheck(target, header.path, False, f"unknown platform {target.platform!r}")
    if not deps.python.supported_contains(target.python):
        return LockCheck(
            target,
            header.path,
            False,
            f"Python {target.python} is outside python.supported ({deps.python.supported}); "
            "delete the file",
        )
    try:
        inputs = lock_inputs(deps, target)
    except UsageError:
        return LockCheck(
            target,
            header.path,
            False,
            f"torch variant {target.variant} is no longer configured for {target.platform}; "
            "delete the file",
        )
    if header.inputs_sha256 == inputs.inputs_hash(sources):
        return LockCheck(target, header.path, True, "up to date")
    changed = changed_inputs(header, inputs)
    if header.comfyui_requirements_sha256 != sources.comfyui_sha256:
        changed.append("ComfyUI's requirements.txt")
    if header.custom_node_requirements != {name: sha for name, sha in sources.node_sha256s.items()}:
        changed.append("custom node requirements")
    what = ", ".join(changed) or "its inputs"
    return LockCheck(target, header.path, False, f"{what} changed since it was made")


def lock_sources_mismatch(
    lock_path: Path, comfyui_dir: Path, custom_nodes_dir: Path | None = None
) -> str | None:
    """Compare the requirement files of an install with those a lock was made from.

    Step 8 calls this before installing from a lock: the plan matched the pins,
    this checks the files themselves.

    Args:
        lock_path: The lock.
        comfyui_dir: The ComfyUI checkout.
        custom_nodes_dir: Its `custom_nodes` folder (default: inside ``comfyui_dir``).

    Returns:
        None when they match, else what differs (then resolve live, with a warning).
    """
    header = read_header(lock_path)
    if header is None:
        return f"{lock_path} is not a comfy-install lock file"
    try:
        text = (comfyui_dir / "requirements.txt").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return f"{comfyui_dir / 'requirements.txt'} cannot be read"
    if requirements_sha256(text) != header.comfyui_requirements_sha256:
        return f"ComfyUI's requirements.txt differs from the one {lock_path.name} was made from"
    nodes_dir = custom_nodes_dir or comfyui_dir / "custom_nodes"
    for name, recorded in header.custom_node_requirements.items():
        if recorded is None or not (nodes_dir / name).is_dir():
            continue
        try:
            lines = node_requirements_text(nodes_dir / name)
        except InstallerError:
            return f"custom node {name}'s requirement files cannot be read"
        if lines is None or requirements_sha256(lines) != recorded:
            return f"custom node {name}'s requirements differ from the locked ones"
    return None
