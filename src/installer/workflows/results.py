"""What `tune --workflow` measured, and the record of it that goes into levers.json.

Per workflow and variant the runs (seed, seconds, image), the median of the warm runs
(the figure), and each variant's output distance to stock's;
[`levers_record`][installer.workflows.results.levers_record] turns them into this GPU's
record of levers.json (schema 2 of [`installer.plan.levers`][installer.plan.levers]):
each lever against ``tuned``, and ``tuned`` against ``stock`` and against itself with the
attention router off (``tuned-norouting``), with the shapes its router sent away from SDPA;
where the second phase ran, the same for ``launch`` (what `launch` starts with the first
phase's figures: the levers that went on) and ``launch-norouting``.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from installer.plan.workflow_check import LAUNCH, LAUNCH_NOROUTING, NOROUTING

VariantStatus = Literal["ok", "failed", "skipped"]


@dataclass(frozen=True)
class RunResult:
    """One prompt: its seed, cold or warm, seconds from the POST to the history, its image."""

    seed: int
    kind: Literal["cold", "warm"]
    wall_s: float
    image: Path | None


@dataclass
class VariantResult:
    """One variant on one workflow."""

    variant: str
    status: VariantStatus
    command: str = ""
    runs: list[RunResult] = field(default_factory=list)
    reason: str | None = None
    """Why it failed or was skipped."""
    startup_s: float | None = None
    distance: dict[str, Any] | None = None
    """Its output against stock's (``relative``, ``ok``, ...), or ``{"reason"}``."""
    routed_shapes: dict[str, str] = field(default_factory=dict)
    """The call shapes the attention router sent away from SDPA, with the backend that took
    most of them (``{"fp16 D=64 N=4096": "cudnn"}``; read from its counters)."""

    @property
    def warm_s(self) -> float | None:
        """The median seconds of the warm runs (the figure), None without one."""
        warm = [run.wall_s for run in self.runs if run.kind == "warm"]
        return statistics.median(warm) if warm and self.status == "ok" else None

    @property
    def cold_s(self) -> float | None:
        """The cold run's seconds (model loading included)."""
        return next((run.wall_s for run in self.runs if run.kind == "cold"), None)

    def images(self) -> dict[int, Path]:
        """The image of each run, by seed."""
        return {run.seed: run.image for run in self.runs if run.image is not None}

    def as_data(self) -> dict[str, Any]:
        """Return the variant as JSON-ready data."""
        return {
            "variant": self.variant,
            "status": self.status,
            "command": self.command,
            "reason": self.reason,
            "startup_s": _round(self.startup_s),
            "cold_s": _round(self.cold_s),
            "warm_s": _round(self.warm_s),
            "runs": [
                {"seed": r.seed, "kind": r.kind, "wall_s": round(r.wall_s, 4)} for r in self.runs
            ],
            "distance": self.distance,
            "routed_shapes": self.routed_shapes,
        }


@dataclass
class WorkflowResult:
    """Every variant on one workflow, stock first."""

    name: str
    path: str
    variants: dict[str, VariantResult] = field(default_factory=dict)

    def as_data(self) -> dict[str, Any]:
        """Return the workflow's results as JSON-ready data."""
        return {
            "name": self.name,
            "path": self.path,
            "variants": [v.as_data() for v in self.variants.values()],
        }


@dataclass
class CheckOutcome:
    """The whole check: where ComfyUI ran, what the tuned launch routed, every workflow."""

    key: str
    """levers.json's key: the GPU's name, or ``cpu``."""
    routed: bool
    calibration: str | None
    lever_args: dict[str, tuple[str, ...]]
    workflows: list[WorkflowResult] = field(default_factory=list)
    launch_levers: tuple[str, ...] = ()
    """The levers the launch as decided from the first phase's figures turns on."""
    measured_at: str = ""
    took_s: float = 0.0
    path: Path | None = None
    """Where levers.json was written."""

    def as_data(self) -> dict[str, Any]:
        """Return the check as JSON-ready data (`tune --json`'s ``workflows``)."""
        return {
            "device": self.key,
            "routed": self.routed,
            "calibration": self.calibration,
            "measured_at": self.measured_at,
            "took_s": round(self.took_s, 2),
            "launch_levers": list(self.launch_levers),
            "levers_file": str(self.path) if self.path else None,
            "workflows": [w.as_data() for w in self.workflows],
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _distance_fields(distance: dict[str, Any] | None) -> dict[str, Any]:
    distance = distance or {}
    known = "ok" in distance
    return {
        "distance": distance.get("relative"),
        "distance_threshold": distance.get("threshold_relative"),
        "distance_ok": bool(distance.get("ok")) if known else None,
        **({} if known else {"distance_reason": distance.get("reason")}),
    }


def levers_record(outcome: CheckOutcome) -> dict[str, Any]:
    """Return this GPU's record of levers.json: the levers against tuned, tuned against stock.

    A variant that was skipped leaves no figure; one that failed leaves its error. A
    workflow whose stock or tuned run has no figure leaves no verdict of its own.

    Args:
        outcome: The check.
    """
    levers: dict[str, Any] = {}
    verdict: dict[str, Any] = {}
    for workflow in outcome.workflows:
        stock = workflow.variants.get("stock")
        tuned = workflow.variants.get("tuned")
        stock_s = stock.warm_s if stock else None
        if stock_s and tuned is not None and tuned.status != "skipped":
            tuned_s = tuned.warm_s
            norouting = workflow.variants.get(NOROUTING)
            verdict[workflow.name] = {
                "stock_s": round(stock_s, 4),
                "tuned_s": _round(tuned_s),
                "speedup": round(stock_s / tuned_s, 4) if tuned_s else None,
                "error": tuned.reason if tuned.status == "failed" else None,
                **_distance_fields(tuned.distance),
                "norouting_s": _round(norouting.warm_s) if norouting else None,
                "routed_shapes": dict(sorted(tuned.routed_shapes.items())),
                **_launch_fields(workflow),
            }
        base = tuned.warm_s if tuned else None
        if not base:
            continue
        for name, args in outcome.lever_args.items():
            result = workflow.variants.get(f"tuned+{name}")
            if result is None or result.status == "skipped":
                continue
            lever = levers.setdefault(name, {"args": list(args), "workflows": {}})
            step = result.warm_s
            fields = _distance_fields(result.distance)
            fields["distance_ok"] = bool(fields["distance_ok"])
            lever["workflows"][workflow.name] = {
                "metric": "prompt_s",
                "baseline_s": round(base, 4),
                "s": _round(step),
                "speedup": round(base / step, 4) if step else None,
                "error": result.reason if result.status == "failed" else None,
                "measured": outcome.measured_at,
                **fields,
            }
    return {
        "measured_at": outcome.measured_at,
        "levers": levers,
        "tuned_vs_stock": {
            "routed": outcome.routed,
            "calibration": outcome.calibration,
            "measured_at": outcome.measured_at,
            "launch_levers": list(outcome.launch_levers),
            "workflows": verdict,
        },
    }


def _launch_fields(workflow: WorkflowResult) -> dict[str, Any]:
    """The second phase's figures on one workflow (none where it did not run)."""
    launch = workflow.variants.get(LAUNCH)
    if launch is None or launch.status == "skipped":
        return {}
    norouting = workflow.variants.get(LAUNCH_NOROUTING)
    fields = _distance_fields(launch.distance)
    return {
        "launch_s": _round(launch.warm_s),
        "launch_error": launch.reason if launch.status == "failed" else None,
        "launch_distance_ok": fields["distance_ok"],
        "launch_norouting_s": _round(norouting.warm_s) if norouting else None,
        "launch_routed_shapes": dict(sorted(launch.routed_shapes.items())),
    }
