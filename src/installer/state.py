"""The install's memory: `DIR/.comfy-install/state.json`, fingerprints and the lock.

Each step that finishes is recorded with the fingerprint of its inputs, its
outputs, its timings and a sequence number; a step that starts is first
recorded as `running`, so a run killed mid-step (SIGKILL, power loss) leaves a
trace that the next run sees as incomplete and redoes. Every write goes to a
temporary file that is fsynced and renamed over the old one, so the file is
always either the old state or the new one, never half of each.

[`InstallLock`][installer.state.InstallLock] keeps two processes from working
on one DIR: the lock file holds pid, host and start time; a lock whose process
is gone is taken over with a warning, a live one stops the second process
with exit code 3.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from installer.environment import pid_alive
from installer.errors import EnvironmentUnsupportedError, LockHeldError

STATE_DIRNAME = ".comfy-install"
STATE_SCHEMA_VERSION = 1
StepStatus = Literal["running", "done", "failed", "interrupted", "skipped"]


def now_iso() -> str:
    """Return the current UTC time as an ISO-8601 string (seconds)."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def fingerprint(inputs: Any) -> str:
    """Return a short stable hash of JSON-serialisable step inputs."""
    text = json.dumps(inputs, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class StepRecord(BaseModel):
    """What is known about one step of an install."""

    model_config = ConfigDict(extra="ignore")

    status: StepStatus
    fingerprint: str = ""
    inputs: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, Any] = Field(default_factory=dict)
    started_at: str | None = None
    finished_at: str | None = None
    seconds: float | None = None
    seq: int = 0
    message: str = ""


class InstallState(BaseModel):
    """The whole `state.json`."""

    model_config = ConfigDict(extra="ignore")

    schema_version: int = STATE_SCHEMA_VERSION
    tool_version: str = ""
    created_at: str = Field(default_factory=now_iso)
    updated_at: str = Field(default_factory=now_iso)
    seq: int = 0
    steps: dict[str, StepRecord] = Field(default_factory=dict)

    def done(self, step_id: str) -> StepRecord | None:
        """Return the record of ``step_id`` if that step finished, else None."""
        record = self.steps.get(step_id)
        return record if record is not None and record.status == "done" else None

    def next_seq(self) -> int:
        """Advance and return the sequence counter (orders step completions)."""
        self.seq += 1
        return self.seq


def state_dir(install_dir: Path) -> Path:
    """Return `DIR/.comfy-install`."""
    return install_dir / STATE_DIRNAME


def state_path(install_dir: Path) -> Path:
    """Return `DIR/.comfy-install/state.json`."""
    return state_dir(install_dir) / "state.json"


def read_state(install_dir: Path) -> tuple[InstallState | None, str | None]:
    """Read the state of an install.

    Returns:
        ``(state, problem)``: the state (None when there is none or it is
        unreadable) and, when the file exists but cannot be used, why. An
        unreadable state only costs a re-check of every step, so it is reported
        as a warning, not an error.
    """
    path = state_path(install_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"{path} cannot be read ({exc}); every step will be checked again"
    try:
        return InstallState.model_validate_json(text), None
    except ValidationError:
        return None, f"{path} is damaged; every step will be checked again"


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically: temp file, fsync, rename.

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
    """Save ``state`` atomically to `DIR/.comfy-install/state.json`."""
    state.updated_at = now_iso()
    atomic_write_text(state_path(install_dir), state.model_dump_json(indent=2) + "\n")


class LockInfo(BaseModel):
    """Who holds the lock."""

    pid: int
    host: str
    started_at: str
    command: str = ""


class InstallLock:
    """An exclusive lock on an install directory (`DIR/.comfy-install/lock`)."""

    def __init__(self, install_dir: Path, command: str = "install") -> None:
        """Prepare (but do not take) the lock of ``install_dir``."""
        self.path = state_dir(install_dir) / "lock"
        self.command = command
        self.taken_over: LockInfo | None = None
        self._held = False

    def _info(self) -> LockInfo:
        return LockInfo(
            pid=os.getpid(), host=socket.gethostname(), started_at=now_iso(), command=self.command
        )

    def _read(self) -> LockInfo | None:
        try:
            return LockInfo.model_validate_json(self.path.read_text(encoding="utf-8"))
        except (OSError, ValidationError):
            return None

    def acquire(self) -> None:
        """Take the lock, taking over a stale one.

        Raises:
            LockHeldError: A live process holds it (exit code 3).
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._read()
                if holder is not None and holder.pid == os.getpid():
                    raise LockHeldError(f"{self.path} is already held by this process.") from None
                if holder is not None and self._alive(holder):
                    raise LockHeldError(
                        f"Another comfy-install ({holder.command}, pid {holder.pid} on "
                        f"{holder.host}, since {holder.started_at}) is working on this "
                        "directory.",
                        f"Wait for pid {holder.pid} to finish, then run the command again.",
                    ) from None
                self.taken_over = holder
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(self._info().model_dump_json())
            self._held = True
            return
        raise LockHeldError(f"Could not take {self.path}: it keeps being re-created.")

    @staticmethod
    def _alive(holder: LockInfo) -> bool:
        if holder.host != socket.gethostname():
            # Another host (a shared drive): its pid means nothing here, so only a
            # person can say the lock is stale.
            return True
        return pid_alive(holder.pid)

    def release(self) -> None:
        """Give the lock back (only if this process holds it)."""
        if self._held:
            holder = self._read()
            if holder is None or holder.pid == os.getpid():
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
            self._held = False

    @contextlib.contextmanager
    def held(self) -> Iterator[InstallLock]:
        """Hold the lock for the duration of a ``with`` block."""
        self.acquire()
        try:
            yield self
        finally:
            self.release()
