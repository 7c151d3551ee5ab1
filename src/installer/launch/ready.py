"""Readiness: wait until ComfyUI answers `GET /object_info`, and say how the wait ended.

[`wait_until_ready`][installer.launch.ready.wait_until_ready] polls ComfyUI's URL
(no proxy) until it answers 200, ComfyUI exits or the timeout passes; the
messages for an early exit, a timeout and a ready ComfyUI are built here.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path

from installer.core.errors import StepFailedError
from installer.core.log import InstallerLogger
from installer.plan.launch import LaunchPlan, LaunchRequest
from installer.plan.launch_settings import WARMUP_ENV


class EarlyExitError(Exception):
    """ComfyUI exited before it answered; ``code`` is its exit code."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class NotReadyError(Exception):
    """ComfyUI did not answer within the timeout."""


def wait_until_ready(
    url: str,
    process: subprocess.Popen[bytes],
    timeout: float,
    log: InstallerLogger | None = None,
    *,
    started: float | None = None,
    interval: float = 0.25,
) -> float:
    """Poll `GET url/object_info` until it answers 200.

    Args:
        url: ComfyUI's base URL.
        process: The ComfyUI process (an exit ends the wait).
        timeout: Seconds to wait at most, counted from ``started``.
        log: Where to say that it is still waiting (every 30 s).
        started: `time.monotonic()` when ComfyUI was started (default: now).
        interval: Seconds between polls.

    Returns:
        Seconds from ``started`` until ComfyUI answered.

    Raises:
        EarlyExitError: ComfyUI exited first.
        NotReadyError: ``timeout`` passed.
    """
    import http.client
    import urllib.request

    start = time.monotonic() if started is None else started
    # No proxy: one from the environment must not see (or block) localhost.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    next_note = 30.0
    while True:
        code = process.poll()
        if code is not None:
            raise EarlyExitError(code)
        remaining = max(1.0, min(30.0, timeout - (time.monotonic() - start)))
        with (
            contextlib.suppress(OSError, http.client.HTTPException),
            opener.open(f"{url}/object_info", timeout=remaining) as answer,
        ):
            if answer.status == 200:
                return time.monotonic() - start
        elapsed = time.monotonic() - start
        if elapsed >= timeout:
            raise NotReadyError
        if log is not None and elapsed >= next_note:
            log.info(f"still waiting for {url}/object_info ({elapsed:.0f} s)")
            next_note += 30.0
        time.sleep(interval)


def early_exit_error(code: int, tail: list[str], log_path: Path, seconds: float) -> StepFailedError:
    """Return the error for a ComfyUI that exited during startup, with its last output.

    Args:
        code: Its exit code.
        tail: Its last output lines.
        log_path: The launch's log file.
        seconds: How long it ran.
    """
    shown = "\n  ".join(tail[-20:])
    message = f"ComfyUI exited during startup with exit code {code} after {seconds:.1f} s"
    message += ":\n  " + shown if shown else " and printed nothing."
    return StepFailedError(message, f"Read its output above; the full log is {log_path}.")


def not_ready_error(
    plan: LaunchPlan, request: LaunchRequest, tail: list[str], log_path: Path
) -> StepFailedError:
    """Return the error for a ComfyUI that did not answer in time (it was stopped).

    Args:
        plan: The launch plan (its URL).
        request: The request (its timeout).
        tail: ComfyUI's last output lines.
        log_path: The launch's log file.
    """
    shown = "\n  ".join(tail[-20:])
    message = (
        f"ComfyUI did not answer {plan.url}/object_info within {request.timeout:.0f} s "
        "and was stopped"
    )
    message += ":\n  " + shown if shown else "."
    return StepFailedError(
        message,
        f"Give it longer with --timeout, or set {WARMUP_ENV}=0 not to wait; log: {log_path}.",
    )


def report_ready(plan: LaunchPlan, seconds: float | None, log: InstallerLogger) -> None:
    """Say that ComfyUI is ready at its URL (or, not waiting, that it is starting).

    Args:
        plan: The launch plan (URL and listen addresses).
        seconds: Seconds until it answered, or None when the launch did not wait.
        log: Where to say it.
    """
    everywhere = any(h in ("0.0.0.0", "::") for h in plan.listen_hosts)  # noqa: S104
    note = " (listening on all interfaces)" if everywhere else ""
    if seconds is None:
        log.success(f"ComfyUI is starting at {plan.url}{note} (not waiting: {WARMUP_ENV}=0)")
    else:
        log.success(f"ComfyUI is ready at {plan.url}{note} after {seconds:.1f} s")
