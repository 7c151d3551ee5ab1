"""The ComfyUI process: starting it in its own group, its pid file, and stopping it.

ComfyUI is started in a process group (a session on POSIX) of its own, so the
terminal's Ctrl-C reaches only the launcher, which forwards one SIGINT, and a
background ComfyUI outlives the terminal. `DIR/.comfy-install/comfyui.pid` records
what runs; [`stop_process`][installer.launch.process.stop_process] ends the group
(SIGINT, then terminate, then kill) and
[`stop_comfyui`][installer.launch.process.stop_comfyui] is `comfy-install stop`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from installer.core.errors import EnvironmentUnsupportedError
from installer.core.log import InstallerLogger
from installer.core.records import now_iso
from installer.edges.environment import current_platform, pid_alive
from installer.edges.probe import layout
from installer.edges.state import atomic_write_text
from installer.plan.fleet import FLEET_DIR
from installer.plan.launch import LaunchPlan

PID_FILENAME = "comfyui.pid"


@dataclass(frozen=True)
class PidRecord:
    """The content of `DIR/.comfy-install/comfyui.pid`."""

    pid: int
    port: int
    url: str
    started_at: str
    log: str
    argv: list[str] = field(default_factory=list)
    mode: str = "background"


@dataclass(frozen=True)
class StopOutcome:
    """What `stop` found and did."""

    was_running: bool
    pid: int | None = None
    stale: bool = False
    forced: bool = False
    message: str = ""

    def as_data(self) -> dict[str, Any]:
        """Return the outcome as JSON-ready data."""
        return asdict(self)


def command_of(pid: int) -> str | None:
    """Return the command line of ``pid`` (Linux `/proc`, at most 200 characters), or None.

    Args:
        pid: The process id.
    """
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    words = [w.decode(errors="replace") for w in raw.split(b"\0") if w]
    text = " ".join(words)
    return text[:200] + ("..." if len(text) > 200 else "") if text else None


def pid_file(state_dir: Path) -> Path:
    """Return `DIR/.comfy-install/comfyui.pid`.

    Args:
        state_dir: The install's state folder, `DIR/.comfy-install`.
    """
    return state_dir / PID_FILENAME


def read_pid_file(state_dir: Path) -> PidRecord | None:
    """Read the pid file; None when there is none or it cannot be used.

    Args:
        state_dir: The install's state folder, `DIR/.comfy-install`.

    Returns:
        The recorded process, or None when the file is missing, not JSON, or lacks the record's
        fields.
    """
    try:
        data = json.loads(pid_file(state_dir).read_text(encoding="utf-8"))
        return PidRecord(**data)
    except (OSError, ValueError, TypeError):
        return None


def remove_pid_file(state_dir: Path, pid: int) -> None:
    """Remove the pid file when it records ``pid`` (or cannot be read).

    Args:
        state_dir: The install's state folder, `DIR/.comfy-install`.
        pid: The process that ended.
    """
    record = read_pid_file(state_dir)
    if record is None or record.pid == pid:
        with contextlib.suppress(FileNotFoundError):
            pid_file(state_dir).unlink()


def process_running(pid: int) -> bool:
    """Return True when ``pid`` is a live process (a zombie waiting to be reaped is not).

    Args:
        pid: The process id.

    Returns:
        Whether it runs.
    """
    if not pid_alive(pid):
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return True  # no /proc (Windows) or it vanished just now: pid_alive said yes
    state = stat.rsplit(")", 1)[-1].split()[:1]
    return state not in (["Z"], ["X"])


def is_recorded_comfyui(record: PidRecord) -> bool:
    """Return True when the recorded pid still runs the recorded command (not a reused pid).

    Args:
        record: The content of the pid file.
    """
    if not process_running(record.pid):
        return False
    command = command_of(record.pid)
    if command is None or not record.argv:
        return True
    main = next((a for a in record.argv if a.endswith("main.py")), None)
    return main is None or main in command


def _popen_options(platform: str, background: bool) -> dict[str, Any]:
    if platform == "windows":
        flags = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
        if background:
            flags |= getattr(subprocess, "DETACHED_PROCESS", 0)
        return {"creationflags": flags}
    # Its own session: the terminal's Ctrl-C reaches only the launcher, which
    # forwards one SIGINT; a background ComfyUI outlives the terminal.
    return {"start_new_session": True}


def _signal_group(pid: int, sig: int) -> None:
    """Send ``sig`` to ``pid``'s process group when it leads one of its own, else to ``pid``."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.name == "nt":
            os.kill(pid, sig)
            return
        pgid = os.getpgid(pid)
        if pgid == pid and pgid != os.getpgrp():
            os.killpg(pgid, sig)
        else:
            os.kill(pid, sig)


def _interrupt_signal() -> int:
    # A child in its own process group on Windows only hears CTRL_BREAK.
    if os.name == "nt":
        return int(getattr(signal, "CTRL_BREAK_EVENT", signal.SIGINT))
    return int(signal.SIGINT)


def _terminate_signal() -> int:
    return int(signal.SIGTERM)


def _kill_signal() -> int:
    return int(getattr(signal, "SIGKILL", signal.SIGTERM))


def _wait_gone(pid: int, seconds: float, process: subprocess.Popen[bytes] | None) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None:
            if process.poll() is not None:
                return True
        elif not process_running(pid):
            return True
        time.sleep(0.05)
    return process.poll() is not None if process is not None else not process_running(pid)


def stop_process(
    pid: int,
    *,
    process: subprocess.Popen[bytes] | None = None,
    grace: float = 10.0,
    terminate_grace: float = 5.0,
) -> bool:
    """Stop ComfyUI and its process group: SIGINT, then terminate, then kill.

    Args:
        pid: The process (leader of its own group on POSIX).
        process: The Popen object when this process started it (to reap it).
        grace: Seconds to wait after SIGINT (ComfyUI shuts down cleanly on it).
        terminate_grace: Seconds to wait after terminate before killing.

    Returns:
        True when it had to be killed.
    """
    with _sigint_ignored():
        return _stop_process(pid, process, grace, terminate_grace)


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Keep a second Ctrl-C from cutting the shutdown of ComfyUI short."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: nothing to protect
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _stop_process(
    pid: int, process: subprocess.Popen[bytes] | None, grace: float, terminate_grace: float
) -> bool:
    forced = False
    for sig, wait in (
        (_interrupt_signal(), grace),
        (_terminate_signal(), terminate_grace),
        (_kill_signal(), terminate_grace),
    ):
        _signal_group(pid, sig)
        if _wait_gone(pid, wait, process):
            break
        forced = True
    if os.name != "nt":
        # Children ComfyUI left in its group (compile workers) go with it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if pid != os.getpgrp():
                os.killpg(pid, _kill_signal())
    return forced


@contextlib.contextmanager
def stop_signals_raise() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into KeyboardInterrupt while ComfyUI runs in the foreground."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous: dict[int, Any] = {}
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is None:
            continue
        with contextlib.suppress(ValueError, OSError):
            previous[int(sig)] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig_number, old in previous.items():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(sig_number, old)


def spawn(
    plan: LaunchPlan, env: Mapping[str, str], stdout: IO[bytes] | int, background: bool
) -> subprocess.Popen[bytes]:
    """Start ComfyUI as planned, in a process group of its own.

    Args:
        plan: The launch plan (command, folder, platform).
        env: ComfyUI's full environment.
        stdout: Where its output goes (stderr is merged into it).
        background: Detach it from the console (Windows).

    Returns:
        The started process.

    Raises:
        EnvironmentUnsupportedError: The venv's Python could not be started.
    """
    try:
        return subprocess.Popen(
            list(plan.argv),
            cwd=plan.cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.STDOUT,
            **_popen_options(plan.platform, background),
        )
    except OSError as exc:
        raise EnvironmentUnsupportedError(
            f"ComfyUI could not be started: {plan.argv[0]}: {exc.strerror or exc}.",
            "Check the venv (`comfy-install doctor DIR`), or reinstall with "
            "`comfy-install install DIR --force venv`.",
        ) from exc


def write_pid_file(state_dir: Path, plan: LaunchPlan, pid: int, log_path: Path, mode: str) -> None:
    """Record the started ComfyUI in `DIR/.comfy-install/comfyui.pid` (atomically).

    Args:
        state_dir: The install's state folder, `DIR/.comfy-install`.
        plan: The launch plan (port, URL, command).
        pid: ComfyUI's process id.
        log_path: The launch's log file.
        mode: `background` or `foreground`.
    """
    record = PidRecord(
        pid=pid,
        port=plan.port,
        url=plan.url,
        started_at=now_iso(),
        log=str(log_path),
        argv=list(plan.argv),
        mode=mode,
    )
    atomic_write_text(pid_file(state_dir), json.dumps(asdict(record), indent=2) + "\n")


def running_launches(install_dir: Path) -> list[tuple[int | None, PidRecord]]:
    """Return every ComfyUI launched from DIR that still runs, with its GPU (None: plain launch).

    A plain `launch` records its pid file in `DIR/.comfy-install/`, each member of a
    `launch --gpus` set in `DIR/.comfy-install/fleet/gpu-N/`; a stale file is not listed.

    Args:
        install_dir: DIR, the install directory.
    """
    state = layout(install_dir, current_platform())["state_dir"]
    found: list[tuple[int | None, PidRecord]] = []
    single = read_pid_file(state)
    if single is not None and is_recorded_comfyui(single):
        found.append((None, single))
    for folder in sorted((state / FLEET_DIR).glob("gpu-*")):
        index = folder.name.removeprefix("gpu-")
        record = read_pid_file(folder) if index.isdigit() else None
        if record is not None and is_recorded_comfyui(record):
            found.append((int(index), record))
    return found


def refuse_if_running(install_dir: Path) -> None:
    """Refuse a second launch while any ComfyUI launched from DIR runs (one, or a set).

    Args:
        install_dir: DIR, the install directory.

    Raises:
        EnvironmentUnsupportedError: One is running: what runs where, and how to stop it.
    """
    running = running_launches(install_dir)
    if not running:
        return
    shown = ", ".join(
        ("" if gpu is None else f"GPU {gpu}: ")
        + f"pid {record.pid} at {record.url}, since {record.started_at}"
        for gpu, record in running
    )
    raise EnvironmentUnsupportedError(
        f"ComfyUI launched from {install_dir} is already running ({shown}).",
        f"Stop it with `comfy-install stop {install_dir}` first.",
    )


def stop_comfyui(install_dir: Path, log: InstallerLogger, grace: float = 10.0) -> StopOutcome:
    """Stop the ComfyUI that `comfy-install launch` started from ``install_dir``.

    Args:
        install_dir: The install directory.
        log: Where to say what happened.
        grace: Seconds ComfyUI gets to stop after SIGINT before it is terminated.

    Returns:
        What was found and done; a missing or stale pid file is not an error
        (the stale file is removed).
    """
    state_dir = layout(install_dir, current_platform())["state_dir"]
    record = read_pid_file(state_dir)
    if record is None:
        message = f"ComfyUI is not running from {install_dir} (no pid file)."
        log.info(message)
        return StopOutcome(was_running=False, message=message)
    if not is_recorded_comfyui(record):
        remove_pid_file(state_dir, record.pid)
        message = f"ComfyUI (pid {record.pid}) was not running; removed the stale pid file."
        log.info(message)
        return StopOutcome(was_running=False, pid=record.pid, stale=True, message=message)
    log.info(f"stopping ComfyUI (pid {record.pid}, {record.url})...")
    forced = stop_process(record.pid, grace=grace)
    remove_pid_file(state_dir, record.pid)
    message = f"ComfyUI (pid {record.pid}) stopped" + (" (it had to be killed)." if forced else ".")
    log.success(message)
    return StopOutcome(was_running=True, pid=record.pid, forced=forced, message=message)
