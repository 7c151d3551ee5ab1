"""Run ComfyUI as planned: in the foreground until it ends, or in the background until it is ready.

[`launch`][installer.launch.run.launch] is the whole `comfy-install launch`: it
gathers the facts ([`installer.launch.facts`][installer.launch.facts]), plans
([`plan_launch`][installer.plan.launch.plan_launch]) and runs
([`run_comfyui`][installer.launch.run.run_comfyui]): refuse a second ComfyUI from
the same DIR and a port in use, install the tuning shim when in-process tuning is
wanted (and write the attention routing table it follows), start ComfyUI in its
own process group with its output teed to
`DIR/.comfy-install/logs/comfyui-<stamp>.log`, wait for `GET /object_info`, and
on Ctrl-C stop it (SIGINT, then terminate, then kill). With `background` it
records `DIR/.comfy-install/comfyui.pid` and returns once ComfyUI is ready;
[`stop_comfyui`][installer.launch.process.stop_comfyui] ends it.
[`BackgroundComfyUI`][installer.launch.run.BackgroundComfyUI] is that pair for the commands
that start one ComfyUI after another to time it (`benchmark --comfyui`, `tune --workflow`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from installer.attention.files import write_routes
from installer.core.errors import (
    InterruptedByUserError,
    StepFailedError,
)
from installer.core.log import InstallerLogger
from installer.edges.state import state_dir as install_state_dir
from installer.launch.facts import gather_facts
from installer.launch.output import Output, file_tail, finish_output, new_log_path, pump
from installer.launch.ports import check_port
from installer.launch.process import (
    refuse_if_running,
    remove_pid_file,
    spawn,
    stop_comfyui,
    stop_process,
    stop_signals_raise,
    write_pid_file,
)
from installer.launch.ready import (
    EarlyExitError,
    NotReadyError,
    early_exit_error,
    not_ready_error,
    report_ready,
    wait_until_ready,
)
from installer.launch.shim import ensure_shim
from installer.plan.launch import (
    SHIM_MODULE,
    LaunchFacts,
    LaunchPlan,
    LaunchRequest,
    describe_machine,
    describe_tunings,
    plan_launch,
    shim_problem,
)

STOPPED = 130
"""The exit code of a foreground launch stopped with Ctrl-C (or SIGTERM) on purpose."""


@dataclass(frozen=True)
class LaunchOutcome:
    """How a launch ended (foreground) or what is running now (background)."""

    pid: int
    url: str
    log_path: Path
    seconds_to_ready: float | None
    background: bool
    exit_code: int | None = None

    def as_data(self) -> dict[str, Any]:
        """Return the outcome as JSON-ready data."""
        return {
            "pid": self.pid,
            "url": self.url,
            "log": str(self.log_path),
            "seconds_to_ready": self.seconds_to_ready,
            "background": self.background,
            "exit_code": self.exit_code,
        }


def log_plan(plan: LaunchPlan, facts: LaunchFacts, log: InstallerLogger) -> None:
    """Log the machine, torch and every tuning decision (off ones with `--verbose`).

    Args:
        plan: The launch plan.
        facts: The launch facts.
        log: Where to say it.
    """
    for line in describe_machine(facts):
        log.info(line)
    for status, line in describe_tunings(plan):
        (log.debug if status == "off" else log.info)(f"tuning {line}")
    if plan.attention is not None and plan.attention.warning:
        log.warn(plan.attention.warning)
    log.debug(f"$ {plan.command_line()}")


def run_comfyui(
    plan: LaunchPlan,
    facts: LaunchFacts,
    request: LaunchRequest,
    log: InstallerLogger,
    *,
    environ: Mapping[str, str] | None = None,
    terminal: IO[str] | None = None,
) -> LaunchOutcome:
    """Start ComfyUI as planned and wait until it answers; in the foreground, until it ends.

    Args:
        plan: The launch plan.
        facts: The launch facts.
        request: The request (timeout, background).
        log: Where the launcher's own messages go; its log file is attached to
            `DIR/.comfy-install/logs/comfyui-<stamp>.log`, which gets ComfyUI's
            output too.
        environ: The user's environment (default: this process's).
        terminal: Where ComfyUI's output is shown in the foreground (default: stderr).

    Returns:
        The outcome: in the background once ComfyUI is ready; in the
        foreground once ComfyUI has exited by itself with code 0, or was stopped on
        purpose with Ctrl-C or SIGTERM (`exit_code` is then `STOPPED`, 130).

    Raises:
        EnvironmentUnsupportedError: The port is in use, or a ComfyUI launched
            from DIR is still running.
        StepFailedError: ComfyUI exited during startup, did not answer within
            the timeout, or (foreground) exited with an error later.
        InterruptedByUserError: Ctrl-C (or SIGTERM) in the background launch's wait for
            ComfyUI to be ready; ComfyUI was stopped.
    """
    home = plan.home or facts.comfyui_dir.parent
    state_dir = install_state_dir(home)
    refuse_if_running(home)
    check_port(plan)
    problem = shim_problem(facts.shim, facts.site_packages)
    if request.tune and problem is not None:
        log.warn(f"TF32, cuDNN and torch.compile tuning is skipped: {problem}.")
    if plan.needs_shim and facts.site_packages is not None:
        status = ensure_shim(facts.site_packages)
        if status != "current":
            log.warn(f"in-process tuning is skipped: the tuning shim is {status}")
        elif facts.shim != "current":
            log.debug(f"wrote the tuning shim ({SHIM_MODULE}.py/.pth) to {facts.site_packages}")
    attention = plan.attention
    if attention is not None and attention.routes is not None and attention.routes_path:
        Path(attention.routes["counts_file"]).unlink(missing_ok=True)
        write_routes(attention.routes_path, attention.routes)
        log.debug(f"wrote the attention routing table to {attention.routes_path}")
    log_path = new_log_path(state_dir)
    log.attach_file(log_path)
    log_plan(plan, facts, log)
    env = plan.environment(os.environ if environ is None else environ)
    if request.background:
        return _run_background(plan, request, log, env, log_path)
    return _run_foreground(plan, request, log, env, log_path, terminal or sys.stderr)


def _run_background(
    plan: LaunchPlan,
    request: LaunchRequest,
    log: InstallerLogger,
    env: Mapping[str, str],
    log_path: Path,
) -> LaunchOutcome:
    state_dir = install_state_dir(plan.home or plan.cwd.parent)
    with log_path.open("ab") as sink:
        offset = sink.seek(0, os.SEEK_END)
        process = spawn(plan, env, sink, background=True)
    start = time.monotonic()
    try:
        write_pid_file(state_dir, plan, process.pid, log_path, "background")
    except BaseException:
        stop_process(process.pid, process=process)
        raise
    log.info(f"ComfyUI started in the background (pid {process.pid}); log: {log_path}")
    try:
        if plan.warmup:
            seconds: float | None = wait_until_ready(
                plan.url, process, request.timeout, log, started=start
            )
        else:
            time.sleep(0.5)
            code = process.poll()
            if code is not None:
                raise EarlyExitError(code)
            seconds = None
    except EarlyExitError as exc:
        remove_pid_file(state_dir, process.pid)
        raise early_exit_error(
            exc.code, file_tail(log_path, offset), log_path, time.monotonic() - start
        ) from None
    except NotReadyError:
        stop_process(process.pid, process=process)
        remove_pid_file(state_dir, process.pid)
        raise not_ready_error(plan, request, file_tail(log_path, offset), log_path) from None
    except KeyboardInterrupt:
        stop_process(process.pid, process=process)
        remove_pid_file(state_dir, process.pid)
        raise InterruptedByUserError(
            "Interrupted: ComfyUI was stopped before it was ready.",
            "Launch it again when you are ready.",
        ) from None
    report_ready(plan, seconds, log)
    return LaunchOutcome(process.pid, plan.url, log_path, seconds, background=True)


def _run_foreground(
    plan: LaunchPlan,
    request: LaunchRequest,
    log: InstallerLogger,
    env: Mapping[str, str],
    log_path: Path,
    terminal: IO[str],
) -> LaunchOutcome:
    state_dir = install_state_dir(plan.home or plan.cwd.parent)
    output = Output()
    with log_path.open("a", encoding="utf-8") as log_file, stop_signals_raise():
        process = spawn(plan, env, subprocess.PIPE, background=False)
        start = time.monotonic()
        assert process.stdout is not None
        output.thread = threading.Thread(
            target=pump, args=(process.stdout, log_file, terminal, output), daemon=True
        )
        output.thread.start()
        try:
            write_pid_file(state_dir, plan, process.pid, log_path, "foreground")
            seconds: float | None = None
            try:
                if plan.warmup:
                    seconds = wait_until_ready(plan.url, process, request.timeout, started=start)
                report_ready(plan, seconds, log)
            except EarlyExitError as exc:
                finish_output(output)
                raise early_exit_error(
                    exc.code, list(output.tail), log_path, time.monotonic() - start
                ) from None
            except NotReadyError:
                stop_process(process.pid, process=process)
                finish_output(output)
                raise not_ready_error(plan, request, list(output.tail), log_path) from None
            code = _wait_for_exit(process)
            finish_output(output)
        except KeyboardInterrupt:
            # Ctrl-C is how a foreground ComfyUI is meant to be stopped: not an error. The
            # exit code stays 130 (128 + SIGINT) so a shell or script sees it was stopped.
            log.info(f"stopping ComfyUI (pid {process.pid})...")
            forced = stop_process(process.pid, process=process)
            finish_output(output)
            log.info(
                f"ComfyUI was stopped{' (it had to be killed)' if forced else ''}. "
                f"Start it again with `comfy-install launch {plan.cwd.parent}`."
            )
            return LaunchOutcome(
                process.pid, plan.url, log_path, None, background=False, exit_code=STOPPED
            )
        finally:
            if process.poll() is None:
                stop_process(process.pid, process=process)
            remove_pid_file(state_dir, process.pid)
    if code != 0:
        shown = "\n  ".join(list(output.tail)[-20:])
        raise StepFailedError(
            f"ComfyUI exited with code {code}" + (":\n  " + shown if shown else "."),
            f"Read its output above; the full log is {log_path}.",
        )
    log.info("ComfyUI exited.")
    return LaunchOutcome(process.pid, plan.url, log_path, seconds, background=False, exit_code=0)


def _wait_for_exit(process: subprocess.Popen[bytes]) -> int:
    while True:
        try:
            return process.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            continue


def launch(
    request: LaunchRequest,
    log: InstallerLogger,
    environ: Mapping[str, str] | None = None,
) -> LaunchOutcome:
    """Gather the facts, plan, and run ComfyUI (the whole `comfy-install launch`).

    Args:
        request: The command-line request.
        log: Where to say what happens.
        environ: The user's environment (default: this process's).

    Returns:
        The outcome (see [`run_comfyui`][installer.launch.run.run_comfyui]).

    Raises:
        InstallerError: Any failure, with its message, hint and exit code.
    """
    env = os.environ if environ is None else environ
    facts = gather_facts(request, environ=env)
    plan = plan_launch(request, facts, env)
    return run_comfyui(plan, facts, request, log, environ=env)


class BackgroundComfyUI:
    """A ComfyUI started in the background to be timed, and stopped after.

    `benchmark --comfyui` and `tune --workflow` start one such ComfyUI per variant. The
    launch ([`run_comfyui`][installer.launch.run.run_comfyui]) attaches the launcher's log
    file to the logger, so the caller's own log file is attached again as soon as the launch
    returns or fails, before the caller says how it went, and again when ComfyUI is stopped:

        comfyui = BackgroundComfyUI(install_dir, log, own_log)
        try:
            outcome = comfyui.start(lambda: launch(request, log))
            ...
        except InstallerError as exc:
            log.warn(...)  # in the caller's own log, also when ComfyUI did not start
        finally:
            comfyui.stop()
    """

    def __init__(self, install_dir: Path, log: InstallerLogger, own_log: Path | None) -> None:
        """Prepare to start one ComfyUI of ``install_dir``.

        Args:
            install_dir: The install that ComfyUI is launched from (its pid file is there).
            log: The logger the launch writes to.
            own_log: The caller's log file, attached again after the launch (None: none).
        """
        self.install_dir = install_dir
        self.log = log
        self.own_log = own_log
        self.started = False

    def start(self, launching: Callable[[], LaunchOutcome]) -> LaunchOutcome:
        """Start ComfyUI with ``launching``, then attach the caller's log file again.

        Args:
            launching: The background launch (it attaches the launcher's log file).

        Returns:
            What the launch returned.

        Raises:
            InstallerError: ComfyUI did not start (the launch's error, raised as it is, once
                the caller's log file is attached again).
        """
        try:
            outcome = launching()
        finally:
            self._own_log_again()
        self.started = True
        return outcome

    def stop(self) -> None:
        """Stop ComfyUI if it started, and attach the caller's log file again."""
        if self.started:
            stop_comfyui(self.install_dir, self.log)
        self._own_log_again()

    def _own_log_again(self) -> None:
        if self.own_log is not None and self.log.log_path != self.own_log:
            self.log.attach_file(self.own_log)
