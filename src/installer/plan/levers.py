"""ComfyUI's `--fast` levers, chosen from measurement on this GPU (issue 30).

A lever is a ComfyUI option that may make sampling faster (`--fast autotune`,
`--fast fp16_accumulation`, `--fast fp8_matrix_mult` with fp8 weights, ...). Whether
it does depends on the GPU, the model and ComfyUI's version, so `launch` adds one only
where it was *measured* faster on this GPU, with its output checked: the GPU benchmark
(`bench/gpu/run_workflows.py --levers-out`) runs each workflow with `launch` (the
baseline) and with `launch` plus one lever, and writes the figures to
``DIR/.comfy-install/levers.json`` beside the attention calibration:

```json
{"schema_version": 1, "gpus": {"NVIDIA H100 80GB HBM3": {"levers": {"autotune": {
  "args": ["--fast", "autotune"],
  "workflows": {"sdxl-1024": {"baseline_s_per_step": 0.151, "s_per_step": 0.140,
                              "speedup": 1.079, "distance": 0.005, "distance_ok": true}}}}}}}
```

The rule ([`decide_levers`][installer.plan.levers.decide_levers]): a lever is on when
it was measured on this GPU (by name) on at least one workflow, and on *every* workflow
measured it was at least `LEVER_MARGIN` times as fast as the baseline with its output
within the distance threshold; otherwise it is off, and the plan says why with the
figures. The `--fast` values of the levers that are on go into one `--fast` (ComfyUI's
option takes several values; a second `--fast` would replace the first). A `--fast` of
the user's leaves every lever to them. Pure: the file is read by
[`installer.launch.levers`][installer.launch.levers].
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from installer.core.facts import GpuReport
from installer.plan.launch_settings import find_option
from installer.plan.launch_tunings import Tuning

SCHEMA_VERSION = 1
LEVER_MARGIN = 1.03
"""A lever must measure at least this many times as fast as the baseline (3%: the
spread of one workflow's warm runs on one machine) on every workflow measured."""
FAST = "--fast"


@dataclass(frozen=True)
class LeverFigure:
    """One lever on one workflow: s/step with and without it, and its output check."""

    workflow: str
    baseline_s_per_step: float
    s_per_step: float
    distance: float | None
    distance_ok: bool

    @property
    def speedup(self) -> float:
        """How many times as fast as the baseline."""
        return self.baseline_s_per_step / self.s_per_step

    def describe(self) -> str:
        """E.g. ``1.08× on sdxl-1024 (0.151 → 0.140 s/step, output distance 0.005 ok)``."""
        distance = "" if self.distance is None else f"{self.distance:.3g} "
        verdict = "ok" if self.distance_ok else "over the threshold"
        return (
            f"{self.speedup:.2f}× on {self.workflow} ({self.baseline_s_per_step:.3f} → "
            f"{self.s_per_step:.3f} s/step, output distance {distance}{verdict})"
        )


@dataclass(frozen=True)
class Lever:
    """One lever measured on one GPU: its ComfyUI arguments and its figures."""

    name: str
    args: tuple[str, ...]
    figures: tuple[LeverFigure, ...]


@dataclass(frozen=True)
class LeverRecords:
    """The levers measured on one GPU, as read from levers.json."""

    gpu: str
    levers: tuple[Lever, ...]
    source: str = ""
    other_gpus: tuple[str, ...] = ()
    """GPUs the file has figures for, when none are for this one."""


def parse_levers(document: Mapping[str, Any], gpu_name: str, source: str = "") -> LeverRecords:
    """Read the levers measured on ``gpu_name`` from levers.json's data.

    Args:
        document: The file's JSON data (schema version 1).
        gpu_name: The GPU's name as NVML reports it (`NVIDIA H100 80GB HBM3`).
        source: Where the data came from, for messages.

    Returns:
        The records (no levers, with ``other_gpus`` set, when the file has no
        figures for this GPU).

    Raises:
        ValueError: The data is not levers.json of a known schema.
    """
    try:
        if int(document.get("schema_version", 0)) != SCHEMA_VERSION:
            raise ValueError(f"schema_version {document.get('schema_version')!r} is not 1")
        gpus = dict(document["gpus"])
        found = gpus.get(gpu_name)
        if found is None:
            return LeverRecords(gpu_name, (), source, tuple(sorted(gpus)))
        levers = []
        for name, lever in sorted(dict(found["levers"]).items()):
            figures = tuple(
                LeverFigure(
                    workflow=str(workflow),
                    baseline_s_per_step=float(figure["baseline_s_per_step"]),
                    s_per_step=float(figure["s_per_step"]),
                    distance=None if figure.get("distance") is None else float(figure["distance"]),
                    distance_ok=bool(figure.get("distance_ok")),
                )
                for workflow, figure in sorted(dict(lever["workflows"]).items())
            )
            if any(f.s_per_step <= 0 or f.baseline_s_per_step <= 0 for f in figures):
                raise ValueError(f"lever {name}: a time that is not positive")
            levers.append(Lever(str(name), tuple(str(a) for a in lever["args"]), figures))
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a levers file ({type(exc).__name__}: {exc})") from None
    return LeverRecords(gpu_name, tuple(levers), source)


def _verdict(lever: Lever) -> tuple[bool, str]:
    """Whether the lever goes on, and the figures that say so."""
    if not lever.figures:
        return False, "never measured on a workflow"
    shown = "; ".join(figure.describe() for figure in lever.figures)
    wrong = [f.workflow for f in lever.figures if not f.distance_ok]
    if wrong:
        return False, f"output differs from stock's on {', '.join(wrong)}: {shown}"
    slow = [f.workflow for f in lever.figures if f.speedup < LEVER_MARGIN]
    if slow:
        return False, f"not {LEVER_MARGIN:.2f}× as fast on {', '.join(slow)}: {shown}"
    return True, f"measured faster on this GPU: {shown}"


def decide_levers(
    tune: bool, gpu: GpuReport, records: LeverRecords | None, comfy_args: Sequence[str]
) -> tuple[list[Tuning], list[str]]:
    """Decide which measured levers the launch adds.

    Args:
        tune: Tuning on (False with `--no-tune`: no lever).
        gpu: The GPU report (ComfyUI on the CPU: no lever).
        records: The levers measured on this GPU (None: no levers.json).
        comfy_args: The ComfyUI arguments (the user's `--fast` wins).

    Returns:
        One ``lever-NAME`` tuning per lever in the records (none without records)
        and the ComfyUI arguments to add: one ``--fast`` with every value of the
        levers that are on, then their other arguments.
    """
    if records is None:
        return [], []
    if not records.levers:
        if not records.other_gpus:
            return [], []
        reason = (
            f"{records.source or 'levers.json'} has figures for {', '.join(records.other_gpus)}"
        )
        return [Tuning("levers", "off", f"none measured on this GPU; {reason}")], []
    tunings: list[Tuning] = []
    fast: list[str] = []
    other: list[str] = []
    user_fast = find_option(comfy_args, FAST)[0]
    for lever in records.levers:
        name = f"lever-{lever.name}"
        if not tune:
            tunings.append(Tuning(name, "off", "--no-tune"))
            continue
        if not gpu.has_nvidia:
            tunings.append(Tuning(name, "off", "no NVIDIA GPU for ComfyUI"))
            continue
        if user_fast:
            tunings.append(Tuning(name, "user", f"you gave {FAST}; left to you"))
            continue
        on, why = _verdict(lever)
        if not on:
            tunings.append(Tuning(name, "off", why))
            continue
        values, extra = _split_fast(lever.args)
        fast += [v for v in values if v not in fast]
        other += [a for a in extra if a not in other]
        tunings.append(Tuning(name, "on", f"adds {' '.join(lever.args)}: {why}"))
    return tunings, ([FAST, *fast] if fast else []) + other


def _split_fast(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split a lever's arguments into its `--fast` values and the rest."""
    values: list[str] = []
    rest: list[str] = []
    in_fast = False
    for arg in args:
        if arg == FAST:
            in_fast = True
        elif in_fast and not arg.startswith("-"):
            values.append(arg)
        else:
            in_fast = False
            rest.append(arg)
    return values, rest
