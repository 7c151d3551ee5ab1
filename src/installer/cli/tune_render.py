"""`comfy-install tune` for people: a progress bar while it measures, then the calibration table.

[`TuneProgress`][installer.cli.tune_render.TuneProgress] turns the measuring
module's progress lines (``... (3/34)``) into a rich progress bar on a terminal;
[`render_check_plan`][installer.cli.tune_render.render_check_plan] and
[`render_check`][installer.cli.tune_render.render_check] show the workflow check's plan
(`--dry-run`) and its figures with `launch`'s decisions;
[`render_calibration`][installer.cli.tune_render.render_calibration] prints
what was measured on what, one table row per backend, head dim and dtype with
SDPA's time and every other backend's speedup over it at each sequence length,
the backend chosen at each length, the decision in words, and the backends that
are broken or the shapes that the budget left out.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from installer.attention.rules.records import (
    BACKEND_LABELS,
    METHOD_TEXT,
    Calibration,
    CalibrationPoint,
    backend_label,
)
from installer.attention.rules.tables import describe_table, tokens_text
from installer.benchmark.render import SHORT_NAMES
from installer.plan.workflow_check import LAUNCH, LAUNCH_NOROUTING, SECOND_PHASE

if TYPE_CHECKING:
    from types import TracebackType

    from rich.console import Console
    from rich.progress import Progress, TaskID

    from installer.plan.launch_tunings import Tuning
    from installer.plan.workflow_check import CheckPlan
    from installer.workflows.results import CheckOutcome

_COUNT = re.compile(r"\((\d+)/(\d+)\)$")
_STATUS_TEXT = {"wrong": "[bold red]WRONG[/]", "error": "[yellow]error[/]", "oom": "[yellow]OOM[/]"}


class TuneProgress:
    """A progress bar over the shapes measured (a context manager and a progress callback)."""

    def __init__(self, console: Console, budget_s: float) -> None:
        """Create the bar (shown on entering).

        Args:
            console: Where to draw it.
            budget_s: The time budget, shown in the description.
        """
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self._progress: Progress = Progress(
            "{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self._task: TaskID = self._progress.add_task(
            f"measuring attention (budget {budget_s:g} s)", total=None
        )

    def __enter__(self) -> TuneProgress:
        """Show the bar."""
        self._progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Take the bar off the screen."""
        self._progress.stop()

    def __call__(self, line: str) -> None:
        """Advance the bar on a module line that ends with ``(done/total)``.

        Args:
            line: A progress line of the measuring module.
        """
        match = _COUNT.search(line)
        if match:
            done, total = int(match.group(1)), int(match.group(2))
            self._progress.update(self._task, completed=done, total=total)


def _cell(point: CalibrationPoint | None, chosen: bool) -> str:
    if point is None:
        return "[dim]—[/]"
    if point.status != "ok":
        return _STATUS_TEXT.get(point.status, point.status)
    if point.backend == "sdpa":
        return f"{point.median_ms:.3g}" if point.median_ms is not None else "?"
    if point.speedup is None:
        return "?"
    text = f"{point.speedup:.2f}×"
    return f"[bold green]{text}[/]" if chosen else text


def render_calibration(calibration: Calibration, console: Console) -> None:
    """Print the calibration: where measured, the table, the decision, what failed.

    Args:
        calibration: What `tune` measured.
        console: Where to print.
    """
    from rich.markup import escape
    from rich.table import Table

    on = calibration.measured_on
    console.print(
        escape(
            f"Measured on {on.gpu_name} (cc {on.gpu_cc}), driver {on.driver}, torch {on.torch}, "
            f"{on.measured_at[:16].replace('T', ' ')} UTC, in {on.took_s or 0:.0f} s "
            f"(budget {on.budget_s:g} s), {METHOD_TEXT[calibration.method]}"
            + (f" ({calibration.method_reason})" if calibration.method_reason else "")
        )
    )
    console.print(
        "backends: "
        + escape(
            ", ".join(
                f"{backend_label(b.name, b.version)} ({b.status})" for b in calibration.backends
            )
        )
    )
    lengths = sorted({p.tokens for p in calibration.points})
    sdpa = "attention_pytorch" if calibration.method == "comfyui" else "SDPA"
    table = Table(
        title=f"Measured {METHOD_TEXT[calibration.method]}: {sdpa}'s ms per call; the others' "
        "speedup over it; → the one chosen"
    )
    table.add_column("D dtype")
    table.add_column("backend")
    for tokens in lengths:
        table.add_column(tokens_text(tokens), justify="right")
    for route in calibration.tables:
        key = (route.head_dim, route.dtype)
        here = [p for p in calibration.points if (p.head_dim, p.dtype) == key]
        names = [name for name in BACKEND_LABELS if any(p.backend == name for p in here)]
        for index, name in enumerate(names):
            cells = {p.tokens: p for p in here if p.backend == name}
            row = [
                _cell(cells.get(n), route.backend_for(n) == name and n in cells) for n in lengths
            ]
            shape = f"{route.head_dim} {route.dtype}" if index == 0 else ""
            table.add_row(shape, SHORT_NAMES.get(name, name), *row)
        measured = {p.tokens for p in here}
        chosen = [
            SHORT_NAMES.get(route.backend_for(n), "?") if n in measured else "" for n in lengths
        ]
        table.add_row("", "[bold]→[/]", *chosen, end_section=True)
    console.print(table)
    for route in calibration.tables:
        console.print(
            escape(f"D={route.head_dim} {route.dtype}: {describe_table(route, calibration)}")
        )
    console.print(
        f"A backend is chosen only where it was correct and at least {calibration.margin:g}× "
        "as fast as SDPA; every other call stays on SDPA."
    )
    for record in calibration.backends:
        if record.status == "broken":
            console.print(
                "[yellow]broken:[/] "
                + escape(f"{backend_label(record.name, record.version)}: "
                         f"{record.reason or 'it failed'}; never routed to")
            )  # fmt: skip
    for item in calibration.skipped:
        console.print("[yellow]skipped:[/] " + escape(item))


def render_check_plan(plan: CheckPlan, commands: dict[str, str], console: Console) -> None:
    """Print the workflow check's plan: the workflows, the variants and their commands.

    Args:
        plan: The check's plan.
        commands: Each variant's command line.
        console: Where to print.
    """
    from rich.markup import escape

    console.print(
        f"Workflow check (budget {plan.budget_s:g} s): each variant in a fresh ComfyUI, "
        f"1 cold + {plan.runs} warm runs, seed +1 each run"
    )
    for workflow in plan.workflows:
        seeds = ", ".join(str(s) for s in plan.seeds(workflow))
        inputs = ", ".join(f"{node}.{name}" for node, name in workflow.seed_inputs)
        console.print(escape(f"  {workflow.name} ({workflow.path}): seeds {seeds} in {inputs}"))
    for variant in plan.variants:
        console.print(escape(f"  {variant.name}: {commands.get(variant.name, '')}"))
    for lever in plan.levers:
        if not lever.runs:
            console.print(escape(f"  lever {lever.name} not measured: {lever.reason}"))
    console.print(escape(f"  then: {SECOND_PHASE}"))
    console.print("(each run gets a free port and a scratch output folder)")


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def render_check(check: CheckOutcome, decisions: list[Tuning], console: Console) -> None:
    """Print the workflow check's figures per workflow, then what `launch` decides from them.

    Args:
        check: The figures.
        decisions: `launch`'s attention and lever tunings from the new levers.json.
        console: Where to print.
    """
    from rich.markup import escape
    from rich.table import Table

    for workflow in check.workflows:
        table = Table(title=escape(f"{workflow.name} on {check.key}: seconds a prompt"))
        for column in ("variant", "cold", "warm (median)", "×", "output", "status"):
            table.add_column(column, justify="left" if column in ("variant", "status") else "right")
        stock = workflow.variants.get("stock")
        tuned = workflow.variants.get("tuned")
        launch = workflow.variants.get(LAUNCH)
        for name, found in workflow.variants.items():
            base = {"stock": stock, "tuned": stock, LAUNCH: stock, LAUNCH_NOROUTING: launch}.get(
                name, tuned
            )
            ratio = (
                f"{base.warm_s / found.warm_s:.2f}×"
                if base is not None and base.warm_s and found.warm_s
                else "—"
            )
            distance = found.distance or {}
            output = (
                f"{distance.get('relative')} {'ok' if distance.get('ok') else 'DIFFERS'}"
                if "ok" in distance
                else ("" if name == "stock" else str(distance.get("reason", "—")))
            )
            status = found.status + (f": {found.reason}" if found.reason else "")
            table.add_row(
                name, _seconds(found.cold_s), _seconds(found.warm_s), ratio,
                escape(output), escape(status),
            )  # fmt: skip
        console.print(table)
    console.print(
        "× : tuned and launch against stock, tuned-norouting and each lever against tuned, "
        "launch-norouting against launch; output: distance to stock's image at the same seed, "
        "relative to a new seed's change (≤ 0.1 ok)"
    )
    if check.launch_levers or any(LAUNCH in w.variants for w in check.workflows):
        console.print(
            escape(
                "launch: the launch as decided from the first phase's figures (levers on: "
                f"{', '.join(check.launch_levers) or 'none'})"
            )
        )
    for tuning in decisions:
        console.print(escape(f"launch: {tuning.name} {tuning.status} ({tuning.reason})"))
