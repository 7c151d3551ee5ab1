"""Running a plan: the lock, the state, step headers, interruption and the result of each step.

[`execute`][installer.commands.executor.execute] prepares DIR (created if missing), opens
the log file under `DIR/.comfy-install/logs/`, takes the install lock, builds
the plan *under the lock* (so two processes never act on one plan), and runs
each step the plan marks `run`, in order, with a `[n/13] step` header. Before a
step starts it is recorded as `running`; when it finishes, as `done` with its
fingerprint, outputs and time. A failure is recorded as `failed` and stops the
run; Ctrl-C or SIGTERM is recorded as `interrupted` and exits 130 with the step
named. Either way the next run of the same command continues from that step.
Every run ends by handing its result to the caller's `on_summary` (the CLI prints the
summary table, [`render_summary`][installer.cli.render.render_summary]); nothing here prints tables.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from installer import __version__
from installer.commands.planning import PlanContext, inputs_to_record, make_plan, replan
from installer.core.errors import (
    EnvironmentUnsupportedError,
    InstallerError,
    InterruptedByUserError,
)
from installer.core.log import InstallerLogger
from installer.core.records import InstallState, StepRecord, now_iso
from installer.edges.probe import layout
from installer.edges.state import InstallLock, set_aside_state, state_dir, write_state
from installer.edges.uv import Uv
from installer.plan.preflight import blocking_error
from installer.plan.records import STEP_IDS, InstallOptions, Plan

OnSummary = Callable[["ExecutionResult"], None]
"""Shows the summary of a run (the CLI's table): called once the steps end, however they end."""


@dataclass(frozen=True)
class StepOutcome:
    """How one step ended in this run."""

    number: int
    step_id: str
    result: str
    seconds: float | None = None
    note: str = ""


@dataclass
class ExecutionResult:
    """The outcome of a whole run."""

    plan: Plan | None
    outcomes: list[StepOutcome] = field(default_factory=list)
    error: InstallerError | None = None
    log_path: Path | None = None
    next_command: str = ""
    """What to run next: `comfy-install launch DIR`, or the same command again after a failure."""

    @property
    def exit_code(self) -> int:
        """0 on success, else the error's exit code."""
        return int(self.error.exit_code) if self.error else 0

    def as_data(self) -> dict[str, Any]:
        """Return the result as the `data` of the JSON envelope."""
        return {
            "install_dir": self.plan.install_dir if self.plan else None,
            "steps": [
                {
                    "number": o.number,
                    "id": o.step_id,
                    "result": o.result,
                    "seconds": o.seconds,
                    "note": o.note,
                }
                for o in self.outcomes
            ],
            "log": str(self.log_path) if self.log_path else None,
        }


def prepare_install_dir(install_dir: Path) -> None:
    """Create DIR (and its state folder) or explain why it cannot be used.

    Args:
        install_dir: DIR, the install directory (created with its parents).

    Raises:
        EnvironmentUnsupportedError: DIR is a file, or cannot be created/written.
    """
    if install_dir.exists() and not install_dir.is_dir():
        raise EnvironmentUnsupportedError(
            f"{install_dir} exists and is not a directory.",
            "Choose another DIR, or move that file away.",
        )
    try:
        state_dir(install_dir).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EnvironmentUnsupportedError(
            f"Cannot create {install_dir}: {exc.strerror or exc}.",
            "Choose a DIR you can write to, or fix the permissions.",
        ) from exc
    from installer.steps.preflight import check_writable

    check_writable(state_dir(install_dir))


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C while steps run, so state is recorded the same way."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (tests calling execute from a worker)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def execute(
    options: InstallOptions,
    log: InstallerLogger,
    on_summary: OnSummary | None = None,
    *,
    before_step: Callable[[str], None] | None = None,
    planned: PlanContext | None = None,
) -> ExecutionResult:
    """Plan under the install lock and run the plan.

    Args:
        options: The command-line options (not a dry run).
        log: Terminal and log-file output.
        on_summary: Shows the summary once the steps end (see
            [`run_plan`][installer.commands.executor.run_plan]).
        before_step: Called with a step's id just before the step runs (a generation build
            shares the previous venv's bytecode before verify).
        planned: The plan the caller already made of these options (`snapshot restore`
            checks it before it runs): it is not made again before the lock, only re-probed
            under it.

    Returns:
        The result; ``result.error`` holds the error a failed run ended with
        (the summary has been printed by then).

    Raises:
        InstallerError: Before any step ran (bad config, lock held).
        EnvironmentUnsupportedError: The plan is blocked (DIR unusable, too little disk,
            no git, an unsupported OS); nothing was written.
        InterruptedByUserError: Ctrl-C or SIGTERM (exit code 130), after the
            interrupted step was recorded.
    """
    # Plan first: a bad config, bad options or an unusable DIR must stop before anything is
    # written (the dry run of the same command shows the same problem and exit code).
    first = planned if planned is not None else make_plan(options)
    if first.plan.blocking:
        raise blocking_error(first.plan.blocking, options.typed_command())
    install_dir = options.install_dir
    prepare_install_dir(install_dir)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    try:
        log.attach_file(state_dir(install_dir) / "logs" / f"install-{stamp}.log")
    except OSError as exc:
        raise EnvironmentUnsupportedError(
            f"Cannot write the log in {state_dir(install_dir)}: {exc.strerror or exc}.",
            "Free disk space or fix the folder's permissions, then run again.",
        ) from exc
    lock = InstallLock(install_dir, command="install")
    with lock.held(log):
        context = replan(first)
        if context.probe.state is None and context.probe.state_problem:
            moved = set_aside_state(install_dir)
            if moved is not None:
                log.warn(f"moved the unusable state file aside to {moved} (kept for you to read)")
        with _sigterm_as_interrupt():
            return run_plan(context, log, on_summary, before_step=before_step)


def run_plan(
    context: PlanContext,
    log: InstallerLogger,
    on_summary: OnSummary | None = None,
    *,
    before_step: Callable[[str], None] | None = None,
) -> ExecutionResult:
    """Run the steps of an already built plan (the lock must be held).

    Args:
        context: The plan and everything it was made from (from
            [`make_plan`][installer.commands.planning.make_plan] or
            [`replan`][installer.commands.planning.replan]).
        log: The run's logger: step headers and subprocess output.
        on_summary: Called with the result when a step fails or is interrupted, and after the
            last step unless the logger is quiet (the CLI prints the summary table).
        before_step: Called with a step's id just before the step runs.

    Returns:
        Each step's outcome. A step that fails sets the result's `error` (the steps after it are
        `not run`) instead of raising; the state is saved either way.

    Raises:
        InterruptedByUserError: Ctrl-C or SIGTERM during a step.
    """
    from installer.edges.environment import find_uv_binary
    from installer.steps import runners
    from installer.steps.context import StepContext

    plan = context.plan
    install_dir = Path(plan.install_dir)
    state = context.probe.state or InstallState(tool_version=__version__)
    state.tool_version = __version__
    state.inputs = inputs_to_record(context.options)
    paths = layout(install_dir, plan.platform)
    uv = Uv(binary=context.env.uv.path or find_uv_binary() or "uv", index=plan.index, log=log)
    ctx = StepContext(
        plan=plan,
        deps=context.deps,
        manifest=context.manifest,
        env=context.env,
        gpu=context.gpu,
        options=context.options,
        log=log,
        uv=uv,
        state=state,
        paths=paths,
    )
    for warning in plan.warnings:
        log.warn(warning)
    table = runners()
    result = ExecutionResult(plan=plan, log_path=log.log_path)
    changed: set[str] = set()
    total = len(STEP_IDS)
    for step in plan.steps:
        log.step(step.number, total, f"{step.id} — {step.title}")
        if step.action == "done":
            log.info("up to date")
            result.outcomes.append(StepOutcome(step.number, step.id, "up to date"))
            continue
        if step.action == "skip":
            log.info(f"skipped: {step.reason}")
            previous = state.steps.get(step.id)
            if previous is None or previous.status != "done":
                state.steps[step.id] = StepRecord(
                    status="skipped",
                    fingerprint=step.fingerprint,
                    inputs=step.inputs,
                    message=step.reason,
                    finished_at=now_iso(),
                )
            result.outcomes.append(StepOutcome(step.number, step.id, "skipped", note=step.reason))
            continue
        if step.cascade and not changed.intersection(step.depends_on):
            log.info("up to date (the steps it depends on ran again without changes)")
            result.outcomes.append(StepOutcome(step.number, step.id, "up to date"))
            continue
        log.debug(f"running: {step.reason}")
        previous = state.steps.get(step.id)
        before = previous.known_outputs if previous else None
        record = StepRecord(
            status="running",
            fingerprint=step.fingerprint,
            inputs=step.inputs,
            started_at=now_iso(),
            seq=previous.seq if previous else 0,
            ran_seq=previous.ran_seq if previous else 0,
            last_done_outputs=before,
        )
        state.steps[step.id] = record
        write_state(install_dir, state)
        started = time.monotonic()
        try:
            if before_step is not None:
                before_step(step.id)
            outputs = table[step.id](ctx, step)
        except KeyboardInterrupt:
            record.status, record.message = "interrupted", "interrupted by the user"
            record.seconds = time.monotonic() - started
            with contextlib.suppress(InstallerError):
                write_state(install_dir, state)
            result.outcomes.append(StepOutcome(step.number, step.id, "interrupted", record.seconds))
            _not_run(plan, step.number, result)
            result.next_command = _rerun_hint(context.options)
            if on_summary is not None:
                with contextlib.suppress(Exception):
                    on_summary(result)
            raise InterruptedByUserError(
                f"Interrupted during step {step.id}; run the same command to continue."
            ) from None
        except InstallerError as error:
            record.status, record.message = "failed", error.message
            record.seconds = time.monotonic() - started
            record.finished_at = now_iso()
            with contextlib.suppress(InstallerError):
                write_state(install_dir, state)
            result.outcomes.append(
                StepOutcome(
                    step.number, step.id, "failed", record.seconds, error.message.splitlines()[0]
                )
            )
            _not_run(plan, step.number, result)
            result.next_command = _rerun_hint(context.options)
            if on_summary is not None:
                on_summary(result)
            error.message = f"Step {step.number} ({step.id}) failed: {error.message}"
            result.error = error
            return result
        record.status, record.outputs = "done", outputs
        record.last_done_outputs = None
        record.seconds = round(time.monotonic() - started, 3)
        record.finished_at = now_iso()
        # Only a step whose outputs changed makes the steps after it that depend on it
        # run again (now, or in a later run through the sequence numbers).
        if before is None or _comparable(outputs) != _comparable(before) or record.seq == 0:
            record.seq = state.next_seq()
            changed.add(step.id)
        # Unchanged outputs or not, the step has now seen every dependency as it is.
        record.ran_seq = state.seq
        write_state(install_dir, state)
        result.outcomes.append(
            StepOutcome(step.number, step.id, "done", record.seconds, _note(step.id, outputs))
        )
    write_state(install_dir, state)
    import shlex

    result.next_command = context.options.next_command or (
        f"comfy-install launch {shlex.quote(plan.install_dir)}"
    )
    if on_summary is not None and log.verbosity >= 0:
        on_summary(result)
    return result


def _comparable(outputs: dict[str, Any]) -> str:
    """Outputs as canonical JSON (what state.json would hold), for comparing runs."""
    import json

    from installer.core.log import redact

    return redact(json.dumps(outputs, sort_keys=True, default=str))


def _not_run(plan: Plan, after: int, result: ExecutionResult) -> None:
    for step in plan.steps:
        if step.number > after:
            result.outcomes.append(StepOutcome(step.number, step.id, "not run"))


def _rerun_hint(options: InstallOptions) -> str:
    """The command to run again after a failure: the user's own, quoted for a shell.

    The inputs this run reused from the install's record are added, so the command
    repeats this run wherever it is read (a bare re-run would reuse them too).
    """
    from installer.core.log import command_text
    from installer.plan.inputs import input_arguments

    words = list(options.command_line) or ["install", str(options.install_dir)]
    words += input_arguments(inputs_to_record(options), only=sorted(options.recorded))
    return command_text(words) + " (finished steps are kept)"


def _note(step_id: str, outputs: dict[str, Any]) -> str:
    if step_id == "torch":
        build = f"CUDA {outputs['cuda']}" if outputs.get("cuda") else "CPU"
        return f"torch {outputs.get('torch')} ({build})"
    if step_id == "comfyui":
        return f"{outputs.get('ref')} @ {str(outputs.get('commit'))[:12]}"
    if step_id == "optimizations":
        return (
            f"{outputs.get('installed', 0)} installed, {outputs.get('skipped', 0)} skipped, "
            f"{outputs.get('failed', 0)} failed" + _proof_note(outputs)
        )
    if step_id == "verify":
        return _proof_note(outputs).removeprefix("; ")
    if step_id == "python":
        return f"Python {outputs.get('version')}"
    return ""


def _proof_note(outputs: dict[str, Any]) -> str:
    """The accelerator proof's line for the summary (nothing when the step recorded none)."""
    from installer.core.proof import proof_from_outputs
    from installer.plan.proof import summary_line

    proof = proof_from_outputs(outputs)
    return "" if proof is None else f"; {summary_line(proof)}"
