"""Showing plans and reports to people: rich tables on the terminal.

The JSON forms live with the data (`Plan.model_dump`, the envelope); this
module only turns the same data into tables for `install --dry-run`, the
summary after an install, `status` and `doctor`, and shows download progress as bars.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from installer.commands.doctor import Check
    from installer.commands.executor import StepOutcome
    from installer.core.downloads import DownloadRequest
    from installer.plan.records import Plan


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
    if plan.tune is not None:
        style = _ACTION_STYLE[plan.tune.action]
        console.print(
            f"after the steps: measure attention ([{style}]{plan.tune.action}[/]) — "
            f"{escape(plan.tune.reason)}"
        )
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


def render_summary(outcomes: Sequence[StepOutcome], console: Console, next_command: str) -> None:
    """Print the table shown after an install: each step, its result and time.

    Args:
        outcomes: Each step's outcome, in step order.
        console: Where to print.
        next_command: The command shown after `Next:`, e.g. `comfy-install launch DIR`.
    """
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="Summary")
    table.add_column("#", justify="right")
    table.add_column("step")
    table.add_column("result")
    table.add_column("time", justify="right")
    table.add_column("note")
    styles = {
        "done": "green",
        "up to date": "dim",
        "skipped": "yellow",
        "failed": "bold red",
        "interrupted": "bold red",
        "not run": "dim",
    }
    for outcome in outcomes:
        seconds = f"{outcome.seconds:.1f}s" if outcome.seconds is not None else ""
        style = styles.get(outcome.result, "")
        table.add_row(
            str(outcome.number),
            outcome.step_id,
            f"[{style}]{outcome.result}[/]",
            seconds,
            escape(outcome.note),
        )
    console.print(table)
    console.print(f"Next: [bold]{escape(next_command)}[/]")


def render_status(report: dict[str, Any], console: Console) -> None:
    """Print a status report as a short header and a table of steps.

    Args:
        report: A report from [`install_status`][installer.commands.status.install_status].
        console: Where to print.
    """
    from rich.markup import escape
    from rich.table import Table

    from installer.commands.status import proof_lines

    summary = report["summary"]
    console.print(f"[bold]{escape(report['install_dir'])}[/] (updated {report['updated_at']})")
    console.print(
        escape(
            f"ComfyUI {summary['comfyui_ref']} @ {summary['comfyui_commit']}; torch "
            f"{summary['torch']} ({summary['torch_variant']}, CUDA {summary['torch_cuda']}); "
            f"Python {summary['python']}"
        )
    )
    table = Table()
    for column in ("#", "step", "status", "finished", "time"):
        table.add_column(column)
    styles = {
        "done": "green",
        "failed": "bold red",
        "interrupted": "bold red",
        "running": "yellow",
        "not run": "dim",
        "skipped": "yellow",
    }
    for step in report["steps"]:
        seconds = f"{step['seconds']:.1f}s" if step["seconds"] is not None else ""
        style = styles.get(step["status"], "")
        table.add_row(
            str(step["number"]),
            step["id"],
            f"[{style}]{step['status']}[/]",
            step["finished_at"] or "",
            seconds,
        )
    console.print(table)
    for package in summary["optimizations"]:
        console.print(escape(f"  {package['name']}: {package['status']} ({package['reason']})"))
    for line in proof_lines(summary.get("accelerators")):
        console.print(escape(line))
    fleet = report.get("fleet") or []
    if fleet:
        members = Table(title="ComfyUI per GPU (launch --gpus)")
        for column in ("GPU", "name", "port", "pid", "ready"):
            members.add_column(column)
        for m in fleet:
            ready = (
                "[green]ready[/]"
                if m["ready"]
                else ("[yellow]running[/]" if m["running"] else "[dim]stopped[/]")
            )
            members.add_row(
                str(m["gpu"]), escape(str(m["name"] or "")), str(m["port"] or ""),
                str(m["pid"] or ""), ready,
            )  # fmt: skip
        console.print(members)
    generations = report.get("generations") or []
    if generations:
        listing = Table(title="generations")
        for column in ("", "#", "ComfyUI", "torch", "created", "verified"):
            listing.add_column(column)
        for item in generations:
            full = item.get("comfyui_commit") or ""
            commit, ref = full[:12], item.get("comfyui_ref") or ""
            listing.add_row(
                "*" if item["current"] else "",
                str(item["id"]),
                escape(
                    f"{ref} @ {commit}" if ref and ref != item.get("comfyui_commit") else commit
                ),
                escape(str(item.get("torch") or "")),
                escape(str(item.get("created_at") or "")),
                "yes" if item["verified"] else escape(f"no ({item['status']})"),
            )
        console.print(listing)
    calibration = report.get("calibration")
    if calibration:
        hint = f" — {calibration['hint']}" if calibration.get("hint") else ""
        style = {"fresh": "green", "stale": "yellow", "unreadable": "yellow"}.get(
            calibration["status"], "dim"
        )
        console.print(
            f"attention calibration: [{style}]{calibration['status']}[/] "
            + escape(f"({calibration['detail']}){hint}")
        )


class TransferBars:
    """Download progress on the terminal: one bar per active file and a total with rate and ETA.

    It implements [`ProgressSink`][installer.edges.download.progress.ProgressSink];
    [`make_logger`][installer.cli.common.make_logger] hands it to the downloads as the
    logger's `transfer_display`.
    """

    def __init__(self, console: Console, requests: Sequence[DownloadRequest]) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._progress: Progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self._lock = threading.Lock()
        self._expected: dict[DownloadRequest, int] = {r: r.size or 0 for r in requests}
        self._done: dict[DownloadRequest, int] = dict.fromkeys(requests, 0)
        self._tasks: dict[DownloadRequest, TaskID] = {}
        self._total = self._progress.add_task("total", total=self._sum_expected())

    def __enter__(self) -> TransferBars:
        self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._progress.stop()

    def _sum_expected(self) -> int | None:
        return sum(self._expected.values()) or None

    def started(self, request: DownloadRequest, name: str, total: int | None, done: int) -> None:
        """Show (or reset) the bar of ``request``.

        Args:
            request: The file being fetched.
            name: The file name shown for it.
            total: The file's full size in bytes, None when unknown.
            done: Bytes already on disk from an earlier try.
        """
        with self._lock:
            task = self._tasks.get(request)
            if task is None:
                self._tasks[request] = self._progress.add_task(name, total=total, completed=done)
            else:
                self._progress.update(task, total=total, completed=done)
            self._expected[request] = total or request.size or 0
            self._done[request] = done
            self._progress.update(
                self._total, total=self._sum_expected(), completed=sum(self._done.values())
            )

    def advanced(self, request: DownloadRequest, amount: int) -> None:
        """Move the bar of ``request`` and the total.

        Args:
            request: The file being fetched.
            amount: The bytes received since the last call.
        """
        with self._lock:
            self._done[request] = self._done.get(request, 0) + amount
            task = self._tasks.get(request)
            if task is not None:
                self._progress.advance(task, amount)
            self._progress.advance(self._total, amount)

    def finished(self, request: DownloadRequest) -> None:
        """Remove the bar of ``request``; a skipped file leaves the total.

        Args:
            request: The file whose transfer ended.
        """
        with self._lock:
            task = self._tasks.pop(request, None)
            if task is None:
                self._expected[request] = 0
            else:
                self._progress.remove_task(task)
            self._progress.update(
                self._total, total=self._sum_expected(), completed=sum(self._done.values())
            )
