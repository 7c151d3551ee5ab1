"""Carry out `tune --workflow`'s plan: every variant in a fresh ComfyUI, every run timed.

For each workflow, for each variant of the
[`CheckPlan`][installer.plan.workflow_check.CheckPlan] (stock first), ComfyUI is planned
exactly as `launch` plans it ([`plan_launch`][installer.plan.launch.plan_launch]: stock
with `--no-tune`, the others tuned, with no levers.json figures, so neither an earlier
verdict nor a lever of an earlier check is in them), started in the background on a free
127.0.0.1 port with its outputs in a scratch folder, given one cold run and the warm runs,
and stopped. After every workflow ran every variant, the figures are read as `launch` will read
them from levers.json, the launch is planned from them, and where it is not the ``tuned``
variant (a lever went on, or the verdict changed the routing) it runs on every workflow as
``launch`` and, where it routes, ``launch-norouting``: the levers judged together, and routing
judged as launched. A variant that would start after the budget is spent (by the time stock took
on that workflow) is skipped. Stock must run: a workflow that fails there, or a stock
ComfyUI that does not start, stops the check with the node and ComfyUI's message and
nothing is written. Any other variant that fails is recorded with its error (a tuned launch
or a lever that breaks a workflow is then judged by that). Ctrl-C stops ComfyUI first.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Literal

import httpx

from installer.attention.shim.routes import COMFYUI_CALLS, ROUTES_ENV, ROUTES_OFF
from installer.core.errors import InstallerError, InterruptedByUserError, StepFailedError
from installer.core.log import InstallerLogger
from installer.launch.facts import gather_facts
from installer.launch.ports import free_port
from installer.launch.run import BackgroundComfyUI, run_comfyui
from installer.plan.launch import LaunchFacts, LaunchPlan, LaunchRequest, plan_launch
from installer.plan.launch_settings import MARKER_ENV, WARMUP_ENV
from installer.plan.levers import CPU_KEY, LeverRecords, levers_on, merge_levers, parse_levers
from installer.plan.workflow_check import CheckPlan, Variant, Workflow, launch_variants
from installer.workflows.client import ComfyClient, WorkflowError
from installer.workflows.distance import distances
from installer.workflows.results import (
    CheckOutcome,
    RunResult,
    VariantResult,
    WorkflowResult,
    levers_record,
)

STARTUP_TIMEOUT_S = 600.0
DRY_RUN_PORT = 8188


def check_facts(
    install_dir: Path, comfy_args: Sequence[str], environ: Mapping[str, str]
) -> LaunchFacts:
    """Read what the variants' launches depend on, once, without levers.json's figures.

    Args:
        install_dir: DIR.
        comfy_args: The ComfyUI arguments every variant gets.
        environ: The user's environment.
    """
    request = LaunchRequest(install_dir=install_dir, extra_args=tuple(comfy_args))
    return replace(gather_facts(request, environ=environ), levers=None)


def variant_request(
    install_dir: Path,
    variant: Variant,
    comfy_args: Sequence[str],
    output: Path | str,
    port: int,
) -> LaunchRequest:
    """Return the launch request of one variant: stock untuned, the others tuned, plus its lever.

    Args:
        install_dir: DIR.
        variant: The variant.
        comfy_args: The ComfyUI arguments every variant gets.
        output: ComfyUI's output folder for it (a scratch folder, not DIR's output/).
        port: The port it listens on.
    """
    return LaunchRequest(
        install_dir=install_dir,
        port=port,
        tune=variant.tune,
        timeout=STARTUP_TIMEOUT_S,
        background=True,
        extra_args=(*comfy_args, *variant.lever_args, "--output-directory", str(output)),
    )


def variant_environ(variant: Variant, environ: Mapping[str, str]) -> dict[str, str]:
    """Return the environment of one variant's ComfyUI (stock: none of comfy-install's).

    Args:
        variant: The variant.
        environ: The user's environment.
    """
    dropped = {WARMUP_ENV} | ({MARKER_ENV, ROUTES_ENV} if not variant.tune else set())
    env = {key: value for key, value in environ.items() if key not in dropped}
    if variant.router_off:
        env[ROUTES_ENV] = ROUTES_OFF[0]  # the router off, every other tuning the same
    return env


def routed_shapes(counts_file: Path) -> dict[str, str]:
    """Read the router's counters after a run: each shape sent away from SDPA, and where.

    Args:
        counts_file: The file the routing table names (``counts_file``).

    Returns:
        ``{"fp16 D=64 N=4096": "cudnn"}``: per call shape, the backend that took most of its
        calls, where that is not SDPA (or ComfyUI's own); empty when the router wrote nothing.
    """
    try:
        document = json.loads(counts_file.read_text(encoding="utf-8"))
        shapes = dict(document.get("shapes") or {})
    except (OSError, ValueError, AttributeError, TypeError):
        return {}
    found: dict[str, str] = {}
    for shape, backends in shapes.items():
        calls = {str(b): int(n) for b, n in dict(backends).items() if int(n) > 0}
        if calls:
            backend = max(sorted(calls), key=lambda name: calls[name])
            if backend not in ("sdpa", COMFYUI_CALLS):
                found[str(shape)] = backend
    return found


def variant_plans(
    check: CheckPlan,
    facts: LaunchFacts,
    install_dir: Path,
    comfy_args: Sequence[str],
    environ: Mapping[str, str],
    port: int = DRY_RUN_PORT,
) -> dict[str, LaunchPlan]:
    """Plan every variant's launch (for the dry run, and to know what the tuned one routes).

    Args:
        check: The check's plan.
        facts: The launch facts, without levers.json's figures.
        install_dir: DIR.
        comfy_args: The ComfyUI arguments every variant gets.
        environ: The user's environment.
        port: The port shown (a free one is chosen for each run).
    """
    return {
        variant.name: plan_variant(variant, facts, install_dir, comfy_args, environ, port)
        for variant in check.variants
    }


def plan_variant(
    variant: Variant,
    facts: LaunchFacts,
    install_dir: Path,
    comfy_args: Sequence[str],
    environ: Mapping[str, str],
    port: int = DRY_RUN_PORT,
    output: Path | str | None = None,
) -> LaunchPlan:
    """Plan one variant's launch exactly as `launch` plans it.

    Args:
        variant: The variant.
        facts: The launch facts it is planned from (the second phase's carry the first
            phase's figures as levers.json's).
        install_dir: DIR.
        comfy_args: The ComfyUI arguments every variant gets.
        environ: The user's environment.
        port: Its port.
        output: Its output folder (default: a placeholder named after the variant).
    """
    folder = "<scratch>/" + variant.name if output is None else output
    request = variant_request(install_dir, variant, comfy_args, folder, port)
    return plan_launch(request, facts, variant_environ(variant, environ))


def launch_differs(tuned: LaunchPlan, launch: LaunchPlan) -> bool:
    """Whether the launch as decided from the first phase's figures is not ``tuned``'s.

    The same command and variables and the same routing table: the second phase would
    measure ``tuned`` again, so it does not run.

    Args:
        tuned: The ``tuned`` variant's plan.
        launch: The ``launch`` variant's plan (the same port and output folder).
    """

    def routes(plan: LaunchPlan) -> object:
        return plan.attention.routes if plan.routes_attention and plan.attention else None

    return (tuned.argv, tuned.env_set, routes(tuned)) != (
        launch.argv,
        launch.env_set,
        routes(launch),
    )


def first_phase_records(outcome: CheckOutcome) -> LeverRecords:
    """Read the first phase's figures as `launch` will read them from levers.json.

    Args:
        outcome: The check so far (stock, tuned, the router off, each lever).
    """
    document = merge_levers(None, outcome.key, levers_record(outcome))
    return parse_levers(document, outcome.key, "this check's first phase")


def device_key(facts: LaunchFacts, tuned: LaunchPlan) -> str:
    """Return levers.json's key for this check: the GPU's name, or ``cpu``.

    Args:
        facts: The launch facts.
        tuned: The tuned variant's plan (`--cpu` in it: ComfyUI ran on the CPU).
    """
    if not facts.gpu.gpus or "--cpu" in tuned.argv:
        return CPU_KEY
    return facts.gpu.gpus[0].name


def run_check(
    check: CheckPlan,
    install_dir: Path,
    comfy_args: Sequence[str],
    log: InstallerLogger,
    environ: Mapping[str, str] | None = None,
    facts: LaunchFacts | None = None,
) -> CheckOutcome:
    """Run every workflow in every variant and compare the outputs with stock's.

    Args:
        check: The plan.
        install_dir: DIR (absolute).
        comfy_args: The ComfyUI arguments every variant gets.
        log: Progress lines; ComfyUI's output goes to DIR/.comfy-install/logs/.
        environ: The user's environment (default: this process's).
        facts: The launch facts without levers (read here when None).

    Returns:
        The figures (nothing is written here).

    Raises:
        StepFailedError: A workflow failed in stock ComfyUI, or stock ComfyUI did not start.
        InterruptedByUserError: Ctrl-C (ComfyUI is stopped first).
    """
    env = dict(os.environ if environ is None else environ)
    facts = facts or check_facts(install_dir, comfy_args, env)
    plans = variant_plans(check, facts, install_dir, comfy_args, env)
    tuned = plans["tuned"]
    read = facts.calibration
    outcome = CheckOutcome(
        key=device_key(facts, tuned),
        routed=tuned.routes_attention,
        calibration=read.calibration.measured_on.measured_at
        if read is not None and read.calibration is not None
        else None,
        lever_args={v.lever: v.lever_args for v in check.variants if v.lever},
        measured_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )
    clock = _Budget(check.budget_s)
    with tempfile.TemporaryDirectory(prefix="comfy-install-tune-workflows-") as tmp:
        scratch = Path(tmp)

        def run(workflow: Workflow, variant: Variant, planned_from: LaunchFacts) -> VariantResult:
            return _run_variant(check, workflow, variant, install_dir, comfy_args, planned_from,
                                env, scratch, log)  # fmt: skip

        for workflow in check.workflows:
            result = WorkflowResult(workflow.name, workflow.path)
            outcome.workflows.append(result)
            clock.run(run, log, workflow, check.variants, facts, result)
            _compare(result, facts, scratch / workflow.name)
        second = _second_phase(outcome, facts, install_dir, comfy_args, env, tuned, log)
        if second is not None:
            decided, variants = second
            for workflow, result in zip(check.workflows, outcome.workflows, strict=True):
                clock.run(run, log, workflow, variants, decided, result)
                _compare(result, facts, scratch / workflow.name, {v.name for v in variants})
    outcome.took_s = clock.elapsed()
    return outcome


def _second_phase(
    outcome: CheckOutcome,
    facts: LaunchFacts,
    install_dir: Path,
    comfy_args: Sequence[str],
    environ: Mapping[str, str],
    tuned: LaunchPlan,
    log: InstallerLogger,
) -> tuple[LaunchFacts, tuple[Variant, ...]] | None:
    """The launch as decided from the first phase's figures, when it is not ``tuned``.

    ``tuned`` is the tuned variant's plan made by
    [`variant_plans`][installer.workflows.run.variant_plans]; the launch is planned with
    its port and output placeholder, so the two compare.
    """
    try:
        records = first_phase_records(outcome)
    except ValueError as exc:  # a figure levers.json could not hold: nothing to plan from
        log.warn(f"second phase not run: the first phase's figures do not read back ({exc})")
        return None
    decided = replace(facts, levers=records)
    (launch,) = launch_variants(False)
    planned = plan_variant(
        launch, decided, install_dir, comfy_args, environ, output="<scratch>/tuned"
    )
    outcome.launch_levers = levers_on(planned.tunings)
    if not launch_differs(tuned, planned):
        log.info("the launch as decided from these figures is the tuned variant's: measured")
        return None
    variants = launch_variants(planned.routes_attention)
    log.info(
        "second phase: the launch as decided from these figures"
        f" ({', '.join(outcome.launch_levers) or 'no lever'}"
        f"{', routed' if planned.routes_attention else ''}): {', '.join(v.name for v in variants)}"
    )
    return decided, variants


class _Budget:
    """The check's seconds: a variant that would start after they are spent is skipped."""

    def __init__(self, budget_s: float) -> None:
        self.budget_s = budget_s
        self.start = time.monotonic()
        self.stock_times: list[float] = []

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def run(
        self,
        runner: Callable[[Workflow, Variant, LaunchFacts], VariantResult],
        log: InstallerLogger,
        workflow: Workflow,
        variants: Sequence[Variant],
        facts: LaunchFacts,
        result: WorkflowResult,
    ) -> None:
        """Run ``variants`` on ``workflow`` into ``result``, each while the budget lasts."""
        times = self.stock_times
        estimate = sum(times) / len(times) if times else 0.0
        for variant in variants:
            left = self.budget_s - self.elapsed()
            if times and left < estimate:
                result.variants[variant.name] = VariantResult(
                    variant.name,
                    "skipped",
                    reason=f"the budget ({self.budget_s:g} s) would run out: "
                    f"{max(left, 0):.0f} s left, a variant took {estimate:.0f} s",
                )
                log.warn(f"{workflow.name}: {variant.name} skipped (budget)")
                continue
            began = time.monotonic()
            result.variants[variant.name] = runner(workflow, variant, facts)
            if variant.kind == "stock":
                times.append(time.monotonic() - began)
                estimate = times[-1]


def _compare(
    result: WorkflowResult, facts: LaunchFacts, scratch: Path, only: set[str] | None = None
) -> None:
    """Set each variant's output distance to stock's (``only``: those variants)."""
    stock = result.variants["stock"].images()
    others = {
        name: found.images()
        for name, found in result.variants.items()
        if name != "stock" and found.status == "ok" and (only is None or name in only)
    }
    if not others:
        return
    scratch.mkdir(parents=True, exist_ok=True)
    for name, distance in distances(facts.venv_python, stock, others, scratch).items():
        result.variants[name].distance = distance


def _run_variant(
    check: CheckPlan,
    workflow: Workflow,
    variant: Variant,
    install_dir: Path,
    comfy_args: Sequence[str],
    facts: LaunchFacts,
    environ: Mapping[str, str],
    scratch: Path,
    log: InstallerLogger,
) -> VariantResult:
    folder = scratch / workflow.name / variant.name
    request = variant_request(install_dir, variant, comfy_args, folder / "output", free_port())
    env = variant_environ(variant, environ)
    plan = plan_launch(request, facts, env)
    found = VariantResult(variant.name, "ok", command=plan.command_line())
    comfyui = BackgroundComfyUI(install_dir, log, log.log_path)
    log.info(f"{workflow.name}: {variant.name} ({' '.join(variant.lever_args) or 'no lever'})")
    try:
        launched = comfyui.start(lambda: run_comfyui(plan, facts, request, log, environ=env))
        found.startup_s = launched.seconds_to_ready
        with ComfyClient(launched.url) as client:
            for index, seed in enumerate(check.seeds(workflow)):
                run = client.run(workflow.with_seed(seed), folder / f"seed-{seed}")
                kind: Literal["cold", "warm"] = "cold" if index == 0 else "warm"
                found.runs.append(RunResult(seed, kind, run.wall_s, run.image))
                log.info(f"  {kind} run (seed {seed}): {run.wall_s:.3f} s")
    except (KeyboardInterrupt, InterruptedByUserError):
        raise InterruptedByUserError(
            "Interrupted: ComfyUI was stopped and nothing was written.",
            f"Run `comfy-install tune {install_dir} --workflow ...` again when you are ready.",
        ) from None
    except WorkflowError as exc:
        if variant.kind == "stock":
            raise StepFailedError(
                f"{workflow.path} failed in stock ComfyUI (plain main.py) at "
                f"{'node ' + exc.node if exc.node else 'a node'}: {exc.message}. "
                "Nothing was written.",
                "Fix the workflow in ComfyUI until it runs there, then tune again.",
            ) from None
        found.status, found.reason = "failed", str(exc)
        log.warn(f"{workflow.name}: {variant.name} failed: {exc}")
    except (httpx.HTTPError, TimeoutError, OSError, ValueError, KeyError) as exc:
        if variant.kind == "stock":
            raise StepFailedError(
                f"Stock ComfyUI stopped answering while running {workflow.path} ({exc}). "
                "Nothing was written.",
                f"Read ComfyUI's log in {install_dir / '.comfy-install' / 'logs'}.",
            ) from None
        found.status, found.reason = "failed", f"ComfyUI stopped answering ({exc})"
        log.warn(f"{workflow.name}: {variant.name} failed: {found.reason}")
    except InstallerError as exc:
        if variant.kind == "stock":
            raise StepFailedError(
                f"Stock ComfyUI (plain main.py) did not start: {exc.message} Nothing was written.",
                exc.hint,
            ) from None
        found.status, found.reason = "failed", f"ComfyUI did not start: {exc.message}"
        log.warn(f"{workflow.name}: {variant.name} failed: {found.reason}")
    finally:
        comfyui.stop()
    routes = plan.attention.routes if plan.attention is not None else None
    if variant.kind in ("tuned", "launch") and routes and routes.get("counts_file"):
        found.routed_shapes = routed_shapes(Path(routes["counts_file"]))
    return found
