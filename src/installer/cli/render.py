"""Showing plans and reports to people: rich tables on the terminal.

The JSON forms live with the data (`Plan.model_dump`, the envelope); this
module only turns the same data into tables for `install --dry-run`, the
summary after an install, `status` and `doctor`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from installer.commands.doctor import Check
    from installer.plan.model import Plan


def stdout_console(*, soft_wrap: bool = False) -> Console:
    """A console on stdout (for requested output such as the plan), colours as for stderr.

    Colours are on only for a terminal and when `NO_COLOR` is not set.

    Args:
        soft_wrap: Print each line of text whole, never broken at the width (reports that
            are grepped or saved: `status`, `doctor`); tables still fit the width.
    """
    import os
    import sys

    from rich.console import Console

    color = sys.stdout.isatty() and "NO_COLOR" not in os.environ
    return Console(file=sys.stdout, no_color=not color, highlight=False, soft_wrap=soft_wrap)


_ACTION_STYLE = {"run": "bold green", "skip": "yellow", "done": "dim"}
_STATUS_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red", "info": "cyan"}


def render_plan(plan: Plan, console: Console) -> None:
    """Print a plan as a header and a table of the 13 steps with their details.

    Args:
        plan: The plan to show.
        console: Where to print.
    """
    from rich.markup import escape
    from rich.table import Table

    gpu = plan.gpu
    gpus = ", ".join(f"{g.name} (cc {g.cc})" for g in gpu.gpus) or "none"
    console.print(
        f"[bold]Plan for {escape(plan.install_dir)}[/] ({plan.platform}, "
        f"Python {escape(plan.python)})"
    )
    console.print(escape(f"GPU: {gpus} — {gpu.reason}"))
    where = plan.torch.index_url or "uv's default index"
    console.print(escape(f"torch: {plan.torch.variant} from {where} — {plan.torch.reason}"))
    if plan.inputs:
        shown = [
            f"{item.option}{' ' + item.value if item.value else ''} ({item.source})"
            for item in plan.inputs
        ]
        note = (
            " [dim](recorded: reused from this install; pass the option to change it)[/]"
            if any(item.source == "recorded" for item in plan.inputs)
            else ""
        )
        console.print(escape("inputs: " + ", ".join(shown)) + note)
    table = Table(show_lines=False, expand=False)
    table.add_column("#", justify="right")
    table.add_column("step")
    table.add_column("action")
    table.add_column("why / what")
    for step in plan.steps:
        style = _ACTION_STYLE[step.action]
        body = step.reason
        if step.action != "done" and step.details:
            body += "\n" + "\n".join(f"• {line}" for line in step.details)
        table.add_row(str(step.number), step.id, f"[{style}]{step.action}[/]", escape(body))
    console.print(table)
    for warning in plan.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}")
    if plan.blocking:
        for blocker in plan.blocking:
            # Unwrapped: the message holds paths to copy.
            console.print(f"[bold red]blocked:[/] {escape(blocker.message)}", soft_wrap=True)
            console.print(f"  {escape(blocker.hint)}", soft_wrap=True)
        console.print(
            f"The install cannot start: {len(plan.blocking)} problem(s) above "
            f"(exit code {plan.blocking[0].exit_code})."
        )
        return
    runs = len(plan.to_run)
    console.print(f"{runs} step(s) to run, " if runs else "Nothing to do: ", end="")
    console.print("the rest are done or skipped." if runs else "the install is up to date.")


def render_checks(checks: Sequence[Check], console: Console, title: str) -> None:
    """Print doctor-style checks: status, subject, finding and hint.

    Args:
        checks: The checks, in the order shown.
        console: Where to print.
        title: The table's title.
    """
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title)
    table.add_column("status")
    table.add_column("check")
    table.add_column("finding")
    table.add_column("hint")
    for check in checks:
        style = _STATUS_STYLE.get(check.status, "")
        table.add_row(
            f"[{style}]{check.status}[/]",
            escape(check.name),
            escape(check.detail),
            escape(check.hint or ""),
        )
    console.print(table)
