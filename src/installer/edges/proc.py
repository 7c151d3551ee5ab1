"""Running external programs (uv, git, the venv's Python) with their output logged.

[`run_command`][installer.edges.proc.run_command] starts a program without a shell,
streams its combined output line by line into the log (the terminal shows it
with `--verbose`), remembers the last lines for the failure message, and makes
sure the child does not outlive an interrupted installer.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from installer.core.errors import CommandFailedError, EnvironmentUnsupportedError
from installer.core.log import InstallerLogger, redact


@dataclass(frozen=True)
class CommandResult:
    """How a finished command ended."""

    args: tuple[str, ...]
    returncode: int
    output: str
    seconds: float


def format_command(args: Sequence[str]) -> str:
    """Return a command as a copy-pasteable, redacted line for logs and plans.

    Args:
        args: The program and its arguments; each is quoted for a POSIX shell.
    """
    import shlex

    return redact(" ".join(shlex.quote(str(arg)) for arg in args))


def run_command(
    args: Sequence[str | Path],
    *,
    log: InstallerLogger,
    what: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float | None = None,
    hint: str | None = None,
    on_line: Callable[[str], None] | None = None,
    process_group: bool = False,
    spinner: bool = True,
) -> CommandResult:
    """Run a program, log its output, and return how it ended.

    Args:
        args: The program and its arguments (never run through a shell).
        log: Where the output goes.
        what: Human name of the action for messages, e.g. "uv pip install".
        cwd: Working directory.
        env: Full environment for the child (default: inherit).
        check: Raise on a non-zero exit code.
        timeout: Seconds before the program is stopped.
        hint: What to tell the user if it fails.
        on_line: Called with each output line as it arrives (e.g. to follow progress).
        process_group: Start the program in a process group of its own, and stop the whole
            group (every compiler it started) when it is interrupted or times out.
        spinner: Show the activity spinner on the terminal (off when the caller shows its own
            progress line).

    Raises:
        CommandFailedError: The program exited non-zero and ``check`` is set.
        EnvironmentUnsupportedError: The program could not be started at all.
    """
    argv = [str(arg) for arg in args]
    log.debug(f"$ {format_command(argv)}")
    log.clear_tail()
    start = time.monotonic()
    group: dict[str, Any] = {}
    if process_group:
        if os.name == "nt":
            group["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
        else:
            group["start_new_session"] = True
    try:
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            **group,
        )
    except OSError as exc:
        raise EnvironmentUnsupportedError(
            f"{what}: {argv[0]} could not be started ({exc.strerror or exc}).",
            f"Check that {Path(argv[0]).name} is installed and runs.",
        ) from exc
    lines: list[str] = []
    stop = _stop_group if process_group else _stop
    timer = threading.Timer(timeout, stop, (process,)) if timeout is not None else None
    activity = log.activity(what) if spinner else contextlib.nullcontext()
    try:
        if timer is not None:
            timer.daemon = True
            timer.start()
        assert process.stdout is not None
        with activity:
            for line in process.stdout:
                lines.append(line)
                log.output(line)
                if on_line is not None:
                    on_line(line)
            returncode = process.wait()
    except BaseException:
        stop(process)
        raise
    finally:
        if timer is not None:
            timer.cancel()
    if timeout is not None and time.monotonic() - start >= timeout and returncode != 0:
        lines.append(f"(stopped after {timeout:.0f} s without finishing)\n")
    result = CommandResult(tuple(argv), returncode, "".join(lines), time.monotonic() - start)
    log.debug(f"  exit {returncode} after {result.seconds:.1f}s")
    if check and returncode != 0:
        raise CommandFailedError(what, result.returncode, result.output, hint)
    return result


def _stop_group(process: subprocess.Popen[str], grace: float = 5.0) -> None:
    """Stop a child started in a group of its own, and everything it started.

    POSIX: SIGTERM to the group, then SIGKILL to whatever of it is left (compilers that
    outlive their parent too). Windows: `taskkill /T /F` ends the process tree.
    """
    if os.name == "nt":
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                ["taskkill", "/T", "/F", "/PID", str(process.pid)],
                capture_output=True,
                timeout=30,
                check=False,
            )
        _stop(process, grace)
        return
    with contextlib.suppress(OSError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    with contextlib.suppress(OSError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)


def _stop(process: subprocess.Popen[str], grace: float = 5.0) -> None:
    """Stop a child: SIGINT (it may be stopping already), then terminate, then kill."""
    if process.poll() is not None:
        return
    with contextlib.suppress(OSError):
        if os.name == "nt":
            process.terminate()
        else:
            process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=grace)
        return
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(OSError):
        process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
