"""Step 8 from a lock: install its `requirements` section, every file hash-checked, none resolved.

uv installs the section with `--require-hashes --no-deps`; a file that does not match its
locked sha256 stops the step with an IntegrityError (exit code 4) before anything is installed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from installer.core.config import RetryOptions
from installer.core.errors import InstallerError, StepFailedError
from installer.core.lockfile import parse_lock
from installer.core.log import InstallerLogger
from installer.edges.probe import venv_version
from installer.edges.state import atomic_write_text
from installer.edges.uv import Uv
from installer.edges.uv_output import integrity_error
from installer.plan.lock import python_minor


@dataclass(frozen=True)
class LockInstall:
    """What installing a lock's `requirements` section did."""

    path: Path
    packages: int
    seconds: float


def install_from_lock(
    uv: Uv,
    python_exe: Path,
    lock_path: Path,
    constraints_path: Path,
    log: InstallerLogger,
) -> LockInstall:
    """Install a lock's `requirements` section: every file hash-checked, nothing resolved.

    Runs `uv pip install --require-hashes --no-deps -r SECTION -c CONSTRAINTS`
    with the index view the lock was made with (its torch index, if any, as a
    priority extra index). uv downloads and checks every file before it
    installs any, so a hash mismatch leaves the venv as it was. Distributions
    already in the venv at the locked version are kept (uv does not re-hash
    installed files).

    Args:
        uv: uv, bound to the plan's index options.
        python_exe: The venv's interpreter.
        lock_path: The lock file.
        constraints_path: The torch constraints file (the installed trio); it
            makes uv refuse, never replace, a locked torch that differs.
        log: Logger.

    Returns:
        The lock, the number of packages in the section and the seconds taken.

    Raises:
        IntegrityError: A file does not match its locked sha256 (exit code 4).
        StepFailedError: The lock is unreadable, made for another Python, or
            uv failed otherwise.
        NetworkError: The index could not be reached.
    """
    lock = parse_lock(lock_path)
    venv_python = venv_version(python_exe.parent.parent)
    if venv_python is not None and python_minor(venv_python) != lock.header.target.python:
        raise StepFailedError(
            f"{lock_path.name} is for Python {lock.header.target.python}, the venv has "
            f"Python {venv_python}.",
            "Install with --no-lock, or make a lock for this Python with "
            f"`comfy-install lock --python {python_minor(venv_python)}`.",
        )
    entries = lock.sections.get("requirements", [])
    start = time.monotonic()
    if not entries:
        log.info(f"{lock_path.name}: no packages in its requirements section")
        return LockInstall(lock_path, 0, 0.0)
    section = constraints_path.parent / "locked-requirements.txt"
    atomic_write_text(
        section,
        f"# The requirements section of {lock_path.name} (inputs-sha256="
        f"{lock.header.inputs_sha256}).\n" + "\n".join(e.render() for e in entries) + "\n",
    )
    extra = [lock.header.torch_index_url] if lock.header.torch_index_url else []
    what = f"install the locked requirements ({lock_path.name})"
    try:
        uv.pip_install(
            python_exe,
            requirement_files=[section],
            constraints=[constraints_path] if constraints_path.is_file() else [],
            options=["--require-hashes", "--no-deps"],
            extra_index_urls=extra,
            what=what,
            # uv retries requests itself; a second attempt here would only repeat a hash mismatch.
            retry=RetryOptions(attempts=1, backoff_seconds=0),
        )
    except InstallerError as exc:
        mismatch = integrity_error(exc, lock_path)
        if mismatch is not None:
            raise mismatch from exc
        raise
    seconds = time.monotonic() - start
    log.info(f"{len(entries)} locked packages from {lock_path.name}, hashes checked")
    return LockInstall(lock_path, len(entries), seconds)
