"""Comparing two benchmark runs cell by cell: which got slower, faster, broke or were fixed.

A cell (backend × shape × dtype) whose median time grew by more than the
threshold (10% by default), or one that stopped working, is a regression.
No I/O.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from installer.attention.measure.results import BenchmarkRun, Measurement, RecordModel

REGRESSION_THRESHOLD = 0.10
"""A cell whose median time grew by more than this fraction is a regression."""

Verdict = Literal["slower", "faster", "unchanged", "broken", "fixed", "new", "removed"]
REGRESSION_VERDICTS: tuple[Verdict, ...] = ("slower", "broken")


class Change(RecordModel):
    """How one backend × shape × dtype changed between two runs."""

    backend: str
    shape: str
    dtype: str
    verdict: Verdict
    previous_ms: float | None = None
    current_ms: float | None = None
    previous_status: str | None = None
    current_status: str | None = None

    @property
    def ratio(self) -> float | None:
        """Current median over previous median (1.25: 25% slower)."""
        if self.previous_ms and self.current_ms is not None:
            return self.current_ms / self.previous_ms
        return None

    @property
    def is_regression(self) -> bool:
        """True for a cell that got slower or stopped working."""
        return self.verdict in REGRESSION_VERDICTS


class Comparison(RecordModel):
    """The changes from a previous run to this one."""

    previous_created_at: str
    previous_path: str | None = None
    threshold: float = REGRESSION_THRESHOLD
    changes: list[Change] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    @property
    def regressions(self) -> list[Change]:
        """The changes that count as regressions."""
        return [change for change in self.changes if change.is_regression]

    def counts(self) -> dict[str, int]:
        """How many cells got each verdict."""
        found: dict[str, int] = {}
        for change in self.changes:
            found[change.verdict] = found.get(change.verdict, 0) + 1
        return found


def compare_runs(
    current: BenchmarkRun,
    previous: BenchmarkRun,
    threshold: float = REGRESSION_THRESHOLD,
    previous_path: Path | None = None,
) -> Comparison:
    """Compare two runs cell by cell (backend × shape × dtype).

    Args:
        current: This run.
        previous: The run to compare with.
        threshold: Fraction of slowdown of the median that counts as a
            regression (0.10: more than 10% slower).
        previous_path: Where ``previous`` was read from (for the report).

    Returns:
        One change per cell that is in either run: `slower` (a regression),
        `faster`, `unchanged`, `broken` (worked before, not now: a
        regression), `fixed`, `new` or `removed`, with notes when the runs
        are not comparable (another GPU, another torch).
    """
    before = {m.key: m for m in previous.measurements}
    after = {m.key: m for m in current.measurements}
    changes: list[Change] = []
    for key in [*after, *(key for key in before if key not in after)]:
        old, new = before.get(key), after.get(key)
        change = Change(
            backend=key[0],
            shape=key[1],
            dtype=key[2],
            verdict=_verdict(old, new, threshold),
            previous_ms=old.stats.median_ms if old and old.stats else None,
            current_ms=new.stats.median_ms if new and new.stats else None,
            previous_status=old.status if old else None,
            current_status=new.status if new else None,
        )
        changes.append(change)
    return Comparison(
        previous_created_at=previous.created_at,
        previous_path=str(previous_path) if previous_path else None,
        threshold=threshold,
        changes=changes,
        notes=_comparability_notes(current, previous),
    )


def _verdict(old: Measurement | None, new: Measurement | None, threshold: float) -> Verdict:
    if old is None:
        return "new"
    if new is None:
        return "removed"
    was_ok, is_ok = old.status == "ok", new.status == "ok"
    if was_ok and not is_ok:
        return "broken"
    if is_ok and not was_ok:
        return "fixed"
    if not (is_ok and old.stats and new.stats and old.stats.median_ms > 0):
        return "unchanged"
    ratio = new.stats.median_ms / old.stats.median_ms
    if ratio > 1 + threshold:
        return "slower"
    if ratio < 1 - threshold:
        return "faster"
    return "unchanged"


def _comparability_notes(current: BenchmarkRun, previous: BenchmarkRun) -> list[str]:
    notes = []
    if (current.device.kind, current.device.name) != (previous.device.kind, previous.device.name):
        notes.append(
            f"the previous run was on {previous.device.name} ({previous.device.kind}), this one "
            f"on {current.device.name} ({current.device.kind}): the times are not comparable"
        )
    if current.torch.version != previous.torch.version:
        notes.append(f"torch changed: {previous.torch.version} → {current.torch.version}")
    for name in sorted(set(current.packages) | set(previous.packages)):
        old, new = previous.packages.get(name), current.packages.get(name)
        if name != "torch" and old != new:
            notes.append(f"{name} changed: {old or 'absent'} → {new or 'absent'}")
    if current.device.driver_version != previous.device.driver_version:
        old_driver = previous.device.driver_version or "unknown"
        notes.append(f"driver changed: {old_driver} → {current.device.driver_version or 'unknown'}")
    return notes
