"""What step 10 reports for each package: installed, skipped or failed, and why."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from installer.plan.optimizations import PlannedOptimization

Status = Literal["installed", "skipped", "failed"]


@dataclass(frozen=True)
class OptimizationOutcome:
    """How one package of step 10 ended."""

    name: str
    kind: str
    status: Status
    reason: str
    requirement: str | None = None
    import_name: str | None = None
    version: str | None = None
    sha256: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        """Return the outcome as a plain dict (for state.json and JSON output)."""
        return asdict(self)


def skipped_outcome(entry: PlannedOptimization, reason: str) -> OptimizationOutcome:
    """Return the outcome of an entry the step does not install.

    Args:
        entry: The planned entry.
        reason: Why it is skipped.
    """
    return outcome_of(entry, "skipped", reason)


def outcome_of(
    entry: PlannedOptimization, status: Status, reason: str, version: str | None = None
) -> OptimizationOutcome:
    """Return how a planned entry ended.

    Args:
        entry: The planned entry.
        status: Installed, skipped or failed.
        reason: Why.
        version: The installed version, when known.
    """
    return OptimizationOutcome(
        entry.name,
        entry.kind,
        status,
        reason,
        entry.requirement,
        entry.import_name,
        version,
        entry.wheel.sha256 if entry.wheel else None,
    )
