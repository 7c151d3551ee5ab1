"""The install's memory: `DIR/.comfy-install/state.json`, fingerprints and the lock.

Each step that finishes is recorded with the fingerprint of its inputs, its
outputs, its timings and a sequence number; a step that starts is first
recorded as `running`, so a run killed mid-step (SIGKILL, power loss) leaves a
trace that the next run sees as incomplete and redoes. Every write goes to a
temporary file that is fsynced and renamed over the old one, so the file is
always either the old state or the new one, never half of each.

[`InstallLock`][installer.edges.state.InstallLock] keeps two processes from working
on one DIR: the lock file holds pid, host and start time; a lock whose process
is gone is taken over with a warning, a live one stops the second process
with exit code 3.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from installer import __version__
from installer.core.errors import EnvironmentUnsupportedError, LockHeldError, StateTooNewError
from installer.core.records import STATE_SCHEMA_VERSION, InstallState, now_iso

if TYPE_CHECKING:
    from installer.core.log import InstallerLogger

STATE_DIRNAME = ".comfy-install"


def state_dir(install_dir: Path) -> Path:
    """Return `DIR/.comfy-install`.

    Args:
        install_dir: DIR, the install directory.
    """
    return install_dir / STATE_DIRNAME


def state_path(install_dir: Path) -> Path:
    """Return `DIR/.comfy-install/state.json`.

    Args:
        install_dir: DIR, the install directory.
    """
    return state_dir(install_dir) / "state.json"


def read_state(install_dir: Path) -> tuple[InstallState | None, str | None]:
    """Read the state of an install.

    Args:
        install_dir: DIR, the install directory.

    Returns:
        ``(state, problem)``: the state (None when there is none or it is
        unusable) and, when the file exists but cannot be used, why. An
        unusable state costs nothing but a check of every step against what DIR
        holds (a working venv and a clone at its commit are kept), so it is a
        warning, not an error; `install` moves the file aside
        ([`set_aside_state`][installer.edges.state.set_aside_state]).

    Raises:
        StateTooNewError: The file was written by a newer comfy-install (a
            `schema_version` above this one's); nothing may act on it.
    """
    path = state_path(install_dir)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, (
            f"{path} cannot be read ({exc.strerror or exc}); every step will be checked "
            "against what DIR holds"
        )
    why = _damage(raw)
    if why is None:
        data = json.loads(raw.decode("utf-8"))
        _refuse_newer(path, data)
        try:
            return InstallState.model_validate(data), None
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "top level"
            why = f"{where}: {first['msg']}"
    return None, (
        f"{path} is damaged ({why}); every step will be checked against what DIR holds "
        "(a working venv and a clone at its commit are kept). The options the install "
        "recorded are lost with it: give them again if it was made with any "
        "(--comfyui-url, --comfyui-ref, --torch-index, --config ...)"
    )


def _refuse_newer(path: Path, data: dict[str, Any]) -> None:
    """Raise StateTooNewError when ``data`` names a state schema newer than this one's."""
    version = data.get("schema_version")
    if isinstance(version, str) and version.strip().isdigit():
        version = int(version)  # as pydantic would read it
    if isinstance(version, float) and version.is_integer():
        version = int(version)
    if not isinstance(version, int) or isinstance(version, bool):
        return
    if version <= STATE_SCHEMA_VERSION:
        return
    writer = data.get("tool_version")
    raise StateTooNewError(
        f"{path} was written by a newer comfy-install"
        + (f" ({writer})" if isinstance(writer, str) and writer else "")
        + f": state schema {version}, while this one ({__version__}) knows schema "
        f"{STATE_SCHEMA_VERSION}. Nothing was changed.",
        "Upgrade comfy-install (`uv tool upgrade comfy-install` or `pip install -U "
        "comfy-install`), then run the command again.",
    )


def _damage(raw: bytes) -> str | None:
    """Why ``raw`` is not a state file's JSON object, or None when it is one."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "not UTF-8 text"
    if not text.strip():
        return "empty"
    try:
        data = json.loads(text)
    except ValueError as exc:
        return f"not valid JSON: {exc}"
    if not isinstance(data, dict):
        return f"a JSON {type(data).__name__}, not an object"
    return None


def set_aside_state(install_dir: Path) -> Path | None:
    """Move an unusable `state.json` aside (never delete it) and return where it went.

    Called by `install` under the install lock when the state cannot be used: the
    file is kept for a person to look at, under `state.json.damaged-STAMP`, and a
    fresh state is written in its place as the steps are checked.

    Args:
        install_dir: DIR, the install directory.

    Returns:
        The new path, or None when there was no file to move.

    Raises:
        EnvironmentUnsupportedError: The file cannot be moved (permissions).
    """
    path = state_path(install_dir)
    if not path.exists() and not path.is_symlink():
        return None
    stamp = now_iso().replace(":", "").replace("+0000", "Z")
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    counter = 1
    while target.exists():
        counter += 1
        target = path.with_name(f"{path.name}.damaged-{stamp}-{counter}")
    try:
        path.rename(target)
    except OSError as exc:
        raise EnvironmentUnsupportedError(
            f"{path} is damaged and could not be moved aside: {exc.strerror or exc}.",
            f"Fix the permissions of {path.parent}, or move the file away yourself, then run "
            "again.",
        ) from exc
    return target


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically: temp file, fsync, rename.

    Args:
        path: The file to write; its folder is created, and the temp file is made next to it.
        text: The content, written as UTF-8.

    Raises:
        EnvironmentUnsupportedError: The disk is full or the folder is not writable.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            Path(tmp).unlink()
        raise EnvironmentUnsupportedError(
            f"Could not write {path}: {exc.strerror or exc}.",
            "Free disk space or fix the folder's permissions, then run again.",
        ) from exc


def write_state(install_dir: Path, state: InstallState) -> None:
    """Save ``state`` atomically to `DIR/.comfy-install/state.json`.

    Args:
        install_dir: DIR, the install directory.
        state: The state to save; its `updated_at` is set to now.

    Raises:
        EnvironmentUnsupportedError: The disk is full or the folder is not writable.
    """
    from installer.core.log import redact

    state.updated_at = now_iso()
    # Inputs can hold index URLs with credentials: the file on disk never keeps them.
    atomic_write_text(state_path(install_dir), redact(state.model_dump_json(indent=2)) + "\n")


class LockInfo(BaseModel):
    """Who holds the lock."""

    pid: int
    host: str
    started_at: str
    command: str = ""


class InstallLock:
    """An exclusive lock on an install directory (`DIR/.comfy-install/lock`).

    The exclusion itself is an OS file lock (`flock`, or `msvcrt.locking` on
    Windows), which the kernel drops when the process ends however it ends, so
    two processes can never both hold it. The file's content (pid, host, start
    time) is for people: it names the holder, and a holder that is gone is
    reported as a stale lock taken over.
    """

    def __init__(self, install_dir: Path, command: str = "install") -> None:
        """Prepare (but do not take) the lock of ``install_dir``.

        Args:
            install_dir: The install directory.
            command: The command taking it, recorded for the message another
                process shows.
        """
        self.path = state_dir(install_dir) / "lock"
        self.command = command
        self.taken_over: LockInfo | None = None
        self._fd: int | None = None

    def _info(self) -> LockInfo:
        return LockInfo(
            pid=os.getpid(), host=socket.gethostname(), started_at=now_iso(), command=self.command
        )

    def _read(self) -> LockInfo | None:
        try:
            return LockInfo.model_validate_json(self.path.read_bytes())
        except (OSError, ValueError):
            return None

    def _held_by(self, holder: LockInfo | None) -> LockHeldError:
        if holder is None:
            return LockHeldError(
                f"Another comfy-install is working on this directory ({self.path} is locked).",
                "Wait for it to finish, then run the command again.",
            )
        return LockHeldError(
            f"Another comfy-install ({holder.command}, pid {holder.pid} on {holder.host}, "
            f"since {holder.started_at}) is working on this directory.",
            f"Wait for pid {holder.pid} to finish, then run the command again.",
        )

    def acquire(self) -> None:
        """Take the lock; a lock left by a process that is gone is taken over.

        Raises:
            LockHeldError: A live process holds it, or a process on another host
                wrote it (exit code 3).
            EnvironmentUnsupportedError: The lock file cannot be written (disk
                full, read-only folder).
        """
        from installer.edges.environment import try_lock_file, unlock_file

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            for _ in range(5):
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
                if not try_lock_file(fd):
                    os.close(fd)
                    raise self._held_by(self._read())
                # The file may have been removed (released) between open and lock; then
                # this lock is on a name-less file and must be taken again.
                if not self._same_file(fd):
                    unlock_file(fd)
                    os.close(fd)
                    continue
                try:
                    self._claim(fd)
                except BaseException:
                    # A lock file left empty (the write failed: disk full) names nobody:
                    # remove it while still holding the lock.
                    with contextlib.suppress(OSError):
                        if os.fstat(fd).st_size == 0:
                            self.path.unlink()
                    unlock_file(fd)
                    os.close(fd)
                    raise
                self._fd = fd
                return
        except OSError as exc:
            raise EnvironmentUnsupportedError(
                f"Could not take the lock {self.path}: {exc.strerror or exc}.",
                "Free disk space or fix the folder's permissions, then run again.",
            ) from exc
        raise LockHeldError(f"Could not take {self.path}: it keeps being removed and re-created.")

    def _same_file(self, fd: int) -> bool:
        try:
            return os.path.samestat(os.fstat(fd), self.path.stat())
        except FileNotFoundError:
            return False

    def _claim(self, fd: int) -> None:
        """Read what a previous holder left, then write who holds the lock now."""
        from installer.edges.environment import pid_alive

        previous_text = os.read(fd, 65536).decode("utf-8", "replace").strip()
        if previous_text:
            try:
                previous = LockInfo.model_validate_json(previous_text)
            except ValidationError:
                previous = None
            if previous is not None and previous.host != socket.gethostname():
                # A shared drive: the other host's lock is not ours to judge by its pid.
                raise LockHeldError(
                    f"{self.path} was written by comfy-install pid {previous.pid} on host "
                    f"{previous.host} (since {previous.started_at}).",
                    f"If no comfy-install is running on {previous.host} any more, delete "
                    f"{self.path} and run again.",
                )
            if previous is not None and previous.pid != os.getpid() and pid_alive(previous.pid):
                # Its OS lock is gone but the process lives: an older comfy-install, or
                # a reused pid. Only a person can tell which.
                error = self._held_by(previous)
                error.hint += f" If pid {previous.pid} is not comfy-install, delete {self.path}."
                raise error
            self.taken_over = previous
        data = self._info().model_dump_json().encode()
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, data)
        os.fsync(fd)

    def release(self) -> None:
        """Give the lock back and remove the lock file (only if this process holds it)."""
        from installer.edges.environment import unlock_file

        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        if os.name == "nt":
            unlock_file(fd)
            os.close(fd)
            with contextlib.suppress(OSError):
                self.path.unlink()
            return
        # Remove the name while still holding the lock: a process that opened the file
        # meanwhile sees it is no longer the lock file and opens the new one.
        with contextlib.suppress(OSError):
            self.path.unlink()
        unlock_file(fd)
        os.close(fd)

    @contextlib.contextmanager
    def held(self, log: InstallerLogger | None = None) -> Iterator[InstallLock]:
        """Hold the lock for the duration of a ``with`` block.

        Args:
            log: Where to warn when the lock taken was a dead process's (a stale lock taken
                over); every command that changes DIR passes its logger.
        """
        self.acquire()
        try:
            if log is not None and self.taken_over is not None:
                gone = self.taken_over
                log.warn(
                    f"took over a stale lock of pid {gone.pid} on {gone.host} "
                    f"(since {gone.started_at}); that process is gone"
                )
            yield self
        finally:
            self.release()
