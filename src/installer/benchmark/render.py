"""The rich report of a benchmark: attention table, ComfyUI timings, changes, headline."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from installer.attention.measure.results import BenchmarkRun
from installer.attention.rules.records import BACKEND_LABELS
from installer.benchmark.compare import Comparison
from installer.benchmark.headline import headline

if TYPE_CHECKING:
    from rich.console import Console

    from installer.benchmark.run import BenchmarkOutcome


SHORT_NAMES = {
    "sdpa": "SDPA",
    "cudnn": "cuDNN",
    "flash": "flash",
    "efficient": "mem-eff",
    "xformers": "xformers",
    "sageattention": "Sage",
    "sage_per_warp": "Sage pw",
    "sageattn3": "Sage3",
    "comfy_kitchen_int8": "CK int8",
}
"""Backend names in the report's table (the header line gives full names and versions)."""

_STATUS_STYLE = {"ok": "green", "wrong": "bold red", "error": "yellow", "oom": "yellow"}
_VERDICT_STYLE = {
    "slower": "bold red",
    "broken": "bold red",
    "faster": "green",
    "fixed": "green",
    "new": "cyan",
    "removed": "yellow",
    "unchanged": "dim",
}


def _ms(value: float | None) -> str:
    """Milliseconds to three significant digits (0.0123, 1.23, 123)."""
    if value is None:
        return ""
    for limit, decimals in ((100, 0), (10, 1), (1, 2), (0.01, 3)):
        if value >= limit:
            return f"{value:.{decimals}f}"
    return f"{value:.4f}"


def _when(created_at: str) -> str:
    try:
        stamp = dt.datetime.fromisoformat(created_at).astimezone(dt.timezone.utc)
    except ValueError:
        return created_at
    return stamp.strftime("%Y-%m-%d %H:%M UTC")


def _mib(value: int | None) -> str:
    return "" if value is None else f"{value / 2**20:,.0f}"


def render_report(outcome: BenchmarkOutcome, console: Console) -> None:
    """Print a benchmark outcome: the attention table, ComfyUI timings, changes, headline.

    Args:
        outcome: What [`run_benchmark`][installer.benchmark.run.run_benchmark] returned.
        console: The rich console to print on.
    """
    from rich.markup import escape

    run = outcome.run
    if run is None:
        console.print(f"[yellow]Nothing measured:[/] {escape(outcome.reason or '')}")
        return
    _render_header(run, console)
    _render_measurements(run, console)
    if run.comfyui:
        _render_comfyui(run, console)
    if outcome.comparison is not None:
        render_comparison(outcome.comparison, console)
    elif outcome.compare_note:
        console.print(f"[yellow]compare:[/] {escape(outcome.compare_note)}")
    line = headline(run)
    if line:
        console.print(f"[bold]Headline:[/] {escape(line)}")
    if outcome.saved_to:
        console.print(f"Saved to {escape(str(outcome.saved_to))}")


def _render_header(run: BenchmarkRun, console: Console) -> None:
    from rich.markup import escape

    device = run.device
    if device.kind == "cuda":
        memory = (
            f", {device.total_memory_bytes / 2**30:.0f} GiB" if device.total_memory_bytes else ""
        )
        driver = f", driver {device.driver_version}" if device.driver_version else ""
        where = f"{device.name} (cc {device.cc}{memory}{driver})"
    else:
        cpu = device.name or "unknown"
        where = f"the CPU ({cpu}), a test run: CPU timings say nothing about a GPU"
    console.print(f"[bold]Attention benchmark on {escape(where)}[/]")
    cuda = f" (CUDA {run.torch.cuda})" if run.torch.cuda else " (CPU build)"
    backends = ", ".join(
        info.label
        if info.available
        else f"{BACKEND_LABELS.get(info.name, info.name)}: {info.reason or 'unavailable'}"
        for info in run.backends
    )
    console.print(escape(f"torch {run.torch.version}{cuda}; backends: {backends}"))
    settings = run.settings
    console.print(
        escape(
            f"median of up to {settings.iterations} calls after {settings.warmup} warmup "
            f"({settings.timer}, at most {settings.budget_s:g} s per cell)"
        )
    )


def _render_measurements(run: BenchmarkRun, console: Console) -> None:
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    # Compact (no vertical rules, errors as notes below) so it fits 80 columns.
    table = Table(
        title="Attention: median ms per call, speedup over SDPA, max error vs SDPA",
        box=box.SIMPLE,
        pad_edge=False,
        collapse_padding=True,
    )
    for name, justify in (
        ("shape", "left"), ("dtype", "left"), ("backend", "left"), ("ms", "right"),
        ("IQR", "right"), ("×SDPA", "right"), ("+MiB", "right"), ("error", "right"),
        ("", "left"),
    ):  # fmt: skip
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    problems: dict[tuple[str, str], list[str]] = {}
    previous_shape = None
    for m in run.measurements:
        if previous_shape is not None and m.shape != previous_shape:
            table.add_section()
        stats = m.stats
        if m.status != "ok":
            what = f"{m.status.upper() if m.status == 'wrong' else m.status}: {m.error or ''}"
            problems.setdefault((m.backend, what), []).append(f"{m.shape} {m.dtype}")
        status = {"ok": "", "wrong": "WRONG"}.get(m.status, m.status)
        table.add_row(
            escape(m.shape) if m.shape != previous_shape else "",
            m.dtype,
            escape(SHORT_NAMES.get(m.backend, m.backend)),
            _ms(stats.median_ms) if stats else "",
            _ms(stats.iqr_ms) if stats else "",
            f"{m.speedup:.2f}" if m.speedup is not None else "",
            _mib(m.extra_memory_bytes),
            "" if m.max_abs_error is None else f"{m.max_abs_error:.2g}",
            f"[{_STATUS_STYLE[m.status]}]{status}[/]",
        )
        previous_shape = m.shape
    console.print(table)
    for (backend, what), cells in problems.items():
        style = _STATUS_STYLE["wrong" if what.startswith("WRONG") else "error"]
        every = len(cells) == sum(m.backend == backend for m in run.measurements)
        where = "at every shape and dtype" if every and len(cells) > 1 else ", ".join(cells)
        console.print(
            f"[{style}]{escape(run.backend(backend).label)}[/] {escape(what.rstrip(': '))} "
            f"({escape(where)})"
        )
    legend = Table(title="Shapes (batch × heads × sequence × head dim)", box=box.SIMPLE)
    for column in ("shape", "model", "B×H×N×D", "what"):
        legend.add_column(column)
    for shape in run.shapes:
        legend.add_row(escape(shape.id), escape(shape.model), shape.dims, escape(shape.label))
    console.print(legend)


def _render_comfyui(run: BenchmarkRun, console: Console) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="ComfyUI" + (f" with {run.workflow}" if run.workflow else ""))
    table.add_column("attention")
    table.add_column("start-up s", justify="right")
    table.add_column("workflow s", justify="right")
    table.add_column("again s", justify="right")
    table.add_column("note")

    def seconds(value: float | None) -> str:
        return "" if value is None else f"{value:.2f}"

    for timing in run.comfyui:
        table.add_row(
            escape(timing.variant + (f" ({' '.join(timing.flags)})" if timing.flags else "")),
            seconds(timing.startup_s),
            seconds(timing.workflow_s),
            seconds(timing.workflow_warm_s),
            escape(timing.error or ""),
        )
    console.print(table)


def render_comparison(comparison: Comparison, console: Console) -> None:
    """Print the changes since the previous run (unchanged cells are only counted).

    Args:
        comparison: The comparison of this run with the previous one.
        console: The rich console to print on.
    """
    from rich.markup import escape
    from rich.table import Table

    source = comparison.previous_path or comparison.previous_created_at
    shown = [change for change in comparison.changes if change.verdict != "unchanged"]
    table = Table(
        title=f"Changes since the run of {_when(comparison.previous_created_at)} "
        f"(threshold {comparison.threshold:.0%})"
    )
    for name, justify in (
        ("backend", "left"), ("shape", "left"), ("dtype", "left"), ("before ms", "right"),
        ("now ms", "right"), ("change", "right"), ("verdict", "left"),
    ):  # fmt: skip
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for change in shown:
        ratio = change.ratio
        delta = f"{(ratio - 1) * 100:+.0f}%" if ratio is not None else ""
        if change.verdict in ("broken", "fixed"):
            delta = f"{change.previous_status} → {change.current_status}"
        style = _VERDICT_STYLE[change.verdict]
        table.add_row(
            escape(BACKEND_LABELS.get(change.backend, change.backend)),
            escape(change.shape),
            change.dtype,
            _ms(change.previous_ms),
            _ms(change.current_ms),
            escape(delta),
            f"[{style}]{change.verdict}[/]",
        )
    if shown:
        console.print(table)
    counts = comparison.counts()
    summary = ", ".join(f"{count} {verdict}" for verdict, count in sorted(counts.items()))
    regressions = len(comparison.regressions)
    style = "bold red" if regressions else "green"
    console.print(
        f"[{style}]{regressions} regression(s)[/] against {escape(source)} ({escape(summary)})"
    )
    for note in comparison.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
