"""What `comfy-install tune` does: measure attention on this GPU, then check the tuning end to end.

The attention measuring is [`installer.attention.measure.tune`][installer.attention.measure.tune]
(DIR's calibration). With `--workflow FILE` (issue 30) the tuning is then checked on the
user's own workflows: the plan ([`installer.plan.workflow_check`][installer.plan.workflow_check]:
stock, tuned and tuned plus each candidate lever, the seeds, the budget) is carried out by
[`installer.workflows.run`][installer.workflows.run], and levers.json gets this GPU's
figures at the end, in one atomic write (an interrupted or failed check writes nothing).
`launch` then adds a lever only where it measured faster, and turns the attention routing
off where the tuned launch measured slower than stock. This module opens the run's log
file in DIR and orchestrates; the CLI shows the progress, the tables and the decisions.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from installer.core.errors import EnvironmentUnsupportedError, UsageError

if TYPE_CHECKING:
    from installer.attention.measure.tune import TuneOutcome
    from installer.core.log import InstallerLogger
    from installer.plan.launch_tunings import Tuning
    from installer.plan.workflow_check import CheckPlan
    from installer.workflows.results import CheckOutcome

DEFAULT_BUDGET_S = 60.0


@dataclass(frozen=True)
class TuneRequest:
    """What `comfy-install tune` was asked to do."""

    install_dir: Path
    budget: float = DEFAULT_BUDGET_S
    """Seconds of attention measuring."""
    workflow: tuple[Path, ...] = ()
    """API-format workflows to check the tuning on."""
    workflow_only: bool = False
    """Check the workflows only (keep the calibration as it is)."""
    levers: str | None = None
    """Comma-separated levers to measure (None: every one that applies; "": none)."""
    runs: int = 3
    """Warm runs per variant."""
    workflow_budget: float = 600.0
    """Seconds for the whole workflow check."""
    dry_run: bool = False
    comfy_args: tuple[str, ...] = ()
    """ComfyUI arguments every variant gets (after `--`)."""


@dataclass
class TuneResult:
    """What `tune` did: the calibration, the check's plan and figures, launch's decisions now."""

    attention: TuneOutcome | None = None
    plan: CheckPlan | None = None
    commands: dict[str, str] = field(default_factory=dict)
    """The command line of each variant (the port and scratch folder are chosen per run)."""
    check: CheckOutcome | None = None
    decisions: list[Tuning] = field(default_factory=list)
    """`launch`'s attention and lever decisions from the new figures."""
    dry_run: bool = False

    def as_data(self) -> dict[str, Any]:
        """Return the `data` of `tune --json`."""
        data: dict[str, Any] = self.attention.as_data() if self.attention else {}
        if self.plan is not None:
            data["workflow_check"] = {
                "dry_run": self.dry_run,
                "plan": self.plan.as_data(),
                "commands": self.commands,
                "result": self.check.as_data() if self.check else None,
                "launch": [
                    {"name": t.name, "status": t.status, "reason": t.reason} for t in self.decisions
                ],
            }
        return data


def tune(
    request: TuneRequest,
    log: InstallerLogger,
    on_progress: Callable[[str], None] | None = None,
    environ: Mapping[str, str] | None = None,
) -> TuneResult:
    """Measure attention on this GPU, then check the tuning on the request's workflows.

    Args:
        request: The request (DIR is made absolute here).
        log: Progress and warnings; once DIR has a venv, also a log file in DIR.
        on_progress: Called with each progress line of the attention measurement (a bar).
        environ: The user's environment (default: this process's).

    Returns:
        The calibration (unless `--workflow-only`), the check's plan, its figures and where
        they were written (unless `--dry-run`), and what `launch` decides from them.

    Raises:
        UsageError: DIR has no venv, a bad budget, a workflow file that is not an
            API-format workflow, `--workflow-only` without a workflow, an unknown lever.
        EnvironmentUnsupportedError: No NVIDIA GPU for the attention measuring (nothing is
            written; `--workflow-only` needs none).
        StepFailedError: A workflow failed in stock ComfyUI, or stock ComfyUI did not start
            (nothing is written).
    """
    import datetime as dt

    from installer.edges.state import state_dir

    env = dict(os.environ if environ is None else environ)
    target = request.install_dir.expanduser().absolute()
    if request.workflow_only and not request.workflow:
        raise UsageError(
            "--workflow-only needs a workflow to check.", "Give one with --workflow FILE."
        )
    workflows = _read_workflows(request.workflow)
    if (target / "venv").exists() and not request.dry_run:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        log.attach_file(state_dir(target) / "logs" / f"tune-{stamp}.log")
    result = TuneResult(dry_run=request.dry_run)
    if not request.workflow_only and not request.dry_run:
        from installer.attention.measure.tune import TuneOptions, run_tune

        options = TuneOptions(install_dir=target, budget_s=request.budget)
        try:
            result.attention = run_tune(options, log, on_progress=on_progress)
        except EnvironmentUnsupportedError as error:
            if not workflows:
                raise
            raise EnvironmentUnsupportedError(
                error.message,
                f"{error.hint} To check the workflows without measuring attention, add "
                "--workflow-only.",
            ) from None
    if not workflows:
        return result
    _check(request, target, workflows, result, log, env)
    return result


def _read_workflows(paths: tuple[Path, ...]) -> list[Any]:
    from installer.plan.workflow_check import EXPORT_HINT, parse_workflow, workflow_names

    names = workflow_names([str(p) for p in paths])
    found = []
    for path, name in zip(paths, names, strict=True):
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(
                f"{path} cannot be read ({exc.strerror or exc}).", EXPORT_HINT
            ) from None
        found.append(parse_workflow(text, str(path), name))
    return found


def _check(
    request: TuneRequest,
    target: Path,
    workflows: list[Any],
    result: TuneResult,
    log: InstallerLogger,
    env: Mapping[str, str],
) -> None:
    """Plan the workflow check, run it (unless a dry run), write levers.json, decide."""
    from installer.edges.environment import current_platform
    from installer.edges.probe import installed_distributions
    from installer.launch.levers import write_levers
    from installer.plan.launch_settings import EXTRA_ARGS_ENV, split_extra_args
    from installer.plan.workflow_check import choose_levers, comfyui_options, plan_check
    from installer.workflows.results import levers_record
    from installer.workflows.run import check_facts, run_check, variant_plans

    platform = current_platform()
    comfy_args = request.comfy_args
    facts = check_facts(target, comfy_args, env)
    try:
        cli_args = (facts.comfyui_dir / "comfy" / "cli_args.py").read_text(encoding="utf-8")
        options = comfyui_options(cli_args)
    except OSError:
        options = None
    packages = frozenset(installed_distributions(facts.venv_python.parent.parent, platform))
    every = (*split_extra_args(env.get(EXTRA_ARGS_ENV, ""), platform), *comfy_args)
    asked = (
        None
        if request.levers is None
        else [n.strip() for n in request.levers.split(",") if n.strip()]
    )
    probe = plan_check(workflows, [], request.runs, request.workflow_budget)
    tuned = variant_plans(probe, facts, target, comfy_args, env)["tuned"]
    on_cpu = ("--cpu",) if "--cpu" in tuned.argv else ()
    levers = choose_levers(asked, facts.gpu, facts.torch, options, packages, (*every, *on_cpu))
    plan = plan_check(
        workflows, levers, request.runs, request.workflow_budget, routed=tuned.routes_attention
    )
    result.plan = plan
    result.commands = {
        name: launch.command_line()
        for name, launch in variant_plans(plan, facts, target, comfy_args, env).items()
    }
    if request.dry_run:
        return
    check = run_check(plan, target, comfy_args, log, env, facts)
    check.path = write_levers(target, check.key, levers_record(check))
    log.info(f"figures written to {check.path}")
    result.check = check
    result.decisions = _decisions(target, env)


def _decisions(target: Path, env: Mapping[str, str]) -> list[Tuning]:
    """What `launch` decides now from the new figures: its attention and lever tunings."""
    from installer.launch.facts import gather_facts
    from installer.plan.launch import LaunchRequest, plan_launch

    request = LaunchRequest(install_dir=target)
    launch = plan_launch(request, gather_facts(request, environ=env), env)
    return [t for t in launch.tunings if t.name == "attention" or t.name.startswith("lever")]
