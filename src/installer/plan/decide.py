"""Each step's action: `run`, `skip` or `done`, with the reason, from drafts and records.

A step is `done` when it finished before with the same inputs (its fingerprint),
nothing it depends on changed since, and its outputs are still there; otherwise it
runs, and so does every step that depends on it (a step that is itself up to date
runs as a *cascade*: the executor skips it when its dependencies' outputs did not
change). `--only`, `--skip` and `--force` are applied here.
"""

from __future__ import annotations

from typing import Any

from installer.core.errors import PlanError
from installer.core.facts import InstallProbe
from installer.core.records import fingerprint
from installer.plan.drafts import StepDraft
from installer.plan.records import DEPENDS, STEPS, Action, PlannedStep


def decide_steps(
    drafts: dict[str, StepDraft],
    probe: InstallProbe,
    only: tuple[str, ...],
    skip: tuple[str, ...],
    force: tuple[str, ...],
) -> list[PlannedStep]:
    """Decide each step's action and reason, applying `--only`, `--skip` and `--force`.

    Args:
        drafts: The drafts by step id (from [`draft_steps`][installer.plan.drafts.draft_steps]).
        probe: What the install directory already holds (its state records).
        only: Steps selected by `--only`.
        skip: Steps skipped by `--skip`.
        force: Steps forced by `--force`.

    Returns:
        The planned steps in order.

    Raises:
        PlanError: A selected step needs one that is neither done nor selected.
    """
    state = probe.state
    actions: dict[str, Action] = {}
    steps: list[PlannedStep] = []
    for number, (step_id, title) in enumerate(STEPS, start=1):
        draft = drafts[step_id]
        depends = DEPENDS[step_id]
        if step_id == "verify":
            draft.inputs = {dep: drafts[dep].inputs for dep in depends}
        fp = fingerprint(draft.inputs)
        record = state.steps.get(step_id) if state else None
        action, reason = _natural_action(step_id, draft, fp, record, depends, actions, state, force)
        selected = (not only or step_id in only) and step_id not in skip
        if not selected and action == "run":
            action, reason = (
                "skip",
                ("not selected by --only" if only and step_id not in only else "skipped by --skip"),
            )
        actions[step_id] = action
        steps.append(
            PlannedStep(
                number=number,
                id=step_id,
                title=title,
                action=action,
                reason=reason.removesuffix(CASCADE),
                cascade=action == "run" and reason.endswith(CASCADE),
                details=draft.details,
                inputs=draft.inputs,
                fingerprint=fp,
                depends_on=list(depends),
            )
        )
    preflight = steps[0]
    if preflight.action == "run" and not force and all(step.action != "run" for step in steps[1:]):
        preflight.action, preflight.reason = "done", "up to date (nothing to check: no step runs)"
    _check_dependencies(steps, actions, drafts, probe)
    return steps


def _natural_action(
    step_id: str,
    draft: StepDraft,
    fp: str,
    record: Any,
    depends: tuple[str, ...],
    actions: dict[str, Action],
    state: Any,
    force: tuple[str, ...],
) -> tuple[Action, str]:
    if draft.not_applicable:
        return "skip", draft.not_applicable
    if step_id in force:
        return "run", "forced by --force"
    if draft.always:
        return "run", draft.always
    running = [dep for dep in depends if actions.get(dep) == "run"]
    if running:
        own, _ = _own_action(draft, fp, record, depends, state)
        # A step that is itself up to date runs only if a dependency's outputs change;
        # the executor skips it when they do not ("cascade").
        return "run", f"{', '.join(running)} will run first" + (CASCADE if own == "done" else "")
    return _own_action(draft, fp, record, depends, state)


CASCADE = " (if its outputs change)"


def _own_action(
    draft: StepDraft, fp: str, record: Any, depends: tuple[str, ...], state: Any
) -> tuple[Action, str]:
    """The action a step needs by its own record, inputs and outputs (dependencies aside)."""
    if record is None:
        return "run", "not done yet"
    if record.status == "running":
        return "run", "did not finish last time (the process stopped mid-step); redoing it"
    if record.status == "interrupted":
        return "run", "was interrupted last time; redoing it"
    if record.status == "failed":
        return "run", "failed last time"
    if record.status != "done":
        return "run", "not done yet"
    if record.fingerprint != fp:
        changed = sorted(
            key
            for key in set(draft.inputs) | set(record.inputs)
            if draft.inputs.get(key) != record.inputs.get(key)
        )
        return "run", f"inputs changed ({', '.join(changed) or 'format'})"
    newer = [
        dep
        for dep in depends
        if state.done(dep) is not None and state.steps[dep].seq > record.current_as_of
    ]
    if newer:
        return "run", f"{', '.join(newer)} changed since it ran"
    ok, why = draft.outputs_ok
    if not ok:
        return "run", why
    return "done", "up to date"


def _check_dependencies(
    steps: list[PlannedStep],
    actions: dict[str, Action],
    drafts: dict[str, StepDraft],
    probe: InstallProbe,
) -> None:
    state = probe.state
    for step in steps:
        if step.action != "run":
            continue
        for dep in step.depends_on:
            if actions[dep] != "skip" or drafts[dep].not_applicable:
                continue
            if state is not None and state.done(dep) is not None:
                continue
            if dep == "torch" and probe.torch is not None:
                continue
            raise PlanError(
                f"Step {step.id} needs {dep}, which is neither done nor selected.",
                f"Run without --only/--skip first, or add {dep} to --only.",
            )
