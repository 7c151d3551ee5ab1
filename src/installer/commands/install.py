"""`comfy-install install`: plan the install of DIR, run it, and measure attention at its end.

[`plan_install`][installer.commands.install.plan_install] is the whole of `--dry-run`;
[`install`][installer.commands.install.install] runs the plan under the install lock
(through [`installer.commands.executor`][installer.commands.executor]) and then does
what the plan's `tune` says. Both return data; the CLI renders it.

After an `update` (or a snapshot restore) both act on DIR's current generation
([`on_current_generation`][installer.commands.generations.on_current_generation]): a re-run
continues or repairs that generation's venv and checkout, under DIR's lock (so it never
races an update or a rollback), and never touches the user's folders in `DIR/ComfyUI`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from installer.commands.executor import ExecutionResult, OnSummary
    from installer.core.log import InstallerLogger
    from installer.plan.records import InstallOptions, Plan


@dataclass(frozen=True)
class InstallOutcome:
    """What a run of `install` did: the steps, and the measuring of attention at its end."""

    result: ExecutionResult
    tune: dict[str, Any] | None = None
    """The `tune` entry of `install --json`; None when the install failed before it."""

    def as_data(self) -> dict[str, Any]:
        """Return the outcome as the `data` of the JSON envelope."""
        data = self.result.as_data()
        return data if self.tune is None else {**data, "tune": self.tune}


def plan_install(options: InstallOptions) -> Plan:
    """Return the plan `install` would run with these options (`--dry-run`): nothing changes.

    Args:
        options: What the user asked for.

    Raises:
        ConfigError: A configuration file is invalid (exit code 2).
        UsageError: Contradictory options (exit code 2).
        PlanError: No plan fits (exit code 2).
    """
    from installer.commands.generations import on_current_generation
    from installer.commands.planning import make_plan

    return make_plan(on_current_generation(options)).plan


def install(
    options: InstallOptions, log: InstallerLogger, on_summary: OnSummary | None = None
) -> InstallOutcome:
    """Run the install, then measure attention if the plan says so (never failing the install).

    Args:
        options: What the user asked for (not a dry run).
        log: Terminal and log-file output.
        on_summary: Shows the summary of the steps, before attention is measured (the CLI's
            table; see [`run_plan`][installer.commands.executor.run_plan]).

    Returns:
        The outcome; ``outcome.result.error`` holds the error a failed run ended with (nothing is
        measured then).

    Raises:
        InstallerError: Before any step ran (bad config, lock held, a blocked plan).
        InterruptedByUserError: Ctrl-C or SIGTERM (exit code 130).
    """
    from installer.commands.executor import execute
    from installer.commands.generations import on_current_generation

    target = on_current_generation(options)
    if target.install_dir == options.install_dir:
        result = execute(options, log, on_summary)
    else:
        result = _on_generation(options, log, on_summary)
    if result.error is not None:
        return InstallOutcome(result)
    tune = None if result.plan is None else result.plan.tune
    if tune is None or tune.action == "skip":
        reason = "not planned" if tune is None else tune.reason
        return InstallOutcome(result, {"status": "skipped", "reason": reason})
    from installer.attention.measure.tune import (
        tune_after_install,  # heavy: only when it may measure
    )

    measured = tune_after_install(options.install_dir, options.gpu, options.only, log)
    return InstallOutcome(result, measured)


def _on_generation(
    options: InstallOptions, log: InstallerLogger, on_summary: OnSummary | None
) -> ExecutionResult:
    """Run the install on DIR's current (later) generation, DIR's lock held throughout."""
    from pathlib import Path

    from installer.commands.executor import execute
    from installer.commands.generations import on_current_generation, worktree_repair
    from installer.core.errors import StepFailedError
    from installer.edges.state import InstallLock

    with InstallLock(options.install_dir, command="install").held(log):
        target = on_current_generation(options)  # again, now that nothing can switch it
        if target.install_dir == options.install_dir:
            raise StepFailedError(
                f"{options.install_dir}'s current generation changed while this run started "
                "(a rollback ran); nothing was done.",
                "Run the same command again.",
            )
        root = Path(target.install_dir)
        log.info(f"working on the current generation, {root}")
        # Before the plan is made, so it reads the checkout's requirements as the build did.
        worktree_repair(options.install_dir, root, log)
        return execute(target, log, on_summary)
