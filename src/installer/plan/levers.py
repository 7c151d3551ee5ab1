"""ComfyUI's `--fast` levers, chosen from measurement on this GPU (issue 30).

A lever is a ComfyUI option that may make sampling faster (`--fast autotune`,
`--fast fp16_accumulation`, `--fast fp8_matrix_mult` with fp8 weights, ...). Whether
it does depends on the GPU, the model and ComfyUI's version, so `launch` adds one only
where it was *measured* faster on this GPU, with its output checked: `comfy-install tune
DIR --workflow FILE` (and the GPU benchmark, `bench/gpu/run_workflows.py --levers-out`)
runs each workflow with `launch` (the baseline, ``tuned``) and with `launch` plus one
lever, and writes the figures to ``DIR/.comfy-install/levers.json`` beside the attention
calibration. Schema 2 (`tune`'s) times whole prompts and adds, per GPU, the end-to-end
verdict of the tuning itself, ``tuned_vs_stock`` (the tuned launch against plain
`main.py`, which [`decide_attention`][installer.plan.launch_attention.decide_attention]
turns routing off by); schema 1 (the benchmark's, s/step) reads the same way:

```json
{"schema_version": 2, "gpus": {"NVIDIA H100 80GB HBM3": {
  "levers": {"autotune": {"args": ["--fast", "autotune"],
    "workflows": {"sdxl-1024": {"metric": "prompt_s", "baseline_s": 4.51, "s": 4.20,
                                "speedup": 1.074, "distance": 0.005, "distance_ok": true}}}},
  "tuned_vs_stock": {"routed": true, "calibration": "2026-12-07T01:02:03+00:00",
    "launch_levers": ["autotune"],
    "workflows": {"sdxl-1024": {"stock_s": 4.36, "tuned_s": 4.51, "speedup": 0.967,
                                "norouting_s": 4.33,
                                "routed_shapes": {"fp16 D=64 N=4096": "cudnn"},
                                "distance": 0.004, "distance_ok": true,
                                "launch_s": 4.18, "launch_norouting_s": 4.16,
                                "launch_routed_shapes": {"fp16 D=64 N=4096": "cudnn"},
                                "launch_distance_ok": true, "launch_error": null}}}}}}
```

``norouting_s`` is the tuned launch with the router off and ``routed_shapes`` the call
shapes its router sent away from SDPA: a band of the routing table that a workflow was
slower through than with the router off is not routed
([`apply_verdict`][installer.plan.launch_attention.apply_verdict]). The ``launch_*``
figures are the second phase's: the launch as decided from the first phase's figures, with
``launch_levers`` on, and it with the router off; they judge the levers together
([`launch_check`][installer.plan.levers.launch_check]) and routing as launched.

A machine without an NVIDIA GPU (or ComfyUI started with `--cpu`) keeps its figures
under [`CPU_KEY`][installer.plan.levers.CPU_KEY].

The rule ([`decide_levers`][installer.plan.levers.decide_levers]): a lever is on when
it was measured on this GPU (by name), its output was within the distance threshold on
*every* workflow measured, it was at least `LEVER_MARGIN` times as fast as the baseline on
at least one, and on none was it measurably slower (under `1 / LEVER_MARGIN`: the same 3%
spread the other way); otherwise it is off, and the plan says why with the figures. A
lever neutral on one workflow and a win on another goes on: on the H100 of 2026-12-07,
`--disable-dynamic-vram` made SDXL 1.51× as fast as the tuned launch and Wan 2.1 0.99×
(bench/results-gpu.json); "faster on every workflow" would have thrown SDXL's gain away
for a Wan figure inside the noise. The `--fast` values of the levers that are on go into
one `--fast` (ComfyUI's option takes several values; a second `--fast` would replace the
first). A `--fast` of the user's leaves every lever to them. Pure: the file is read by
[`installer.launch.levers`][installer.launch.levers].
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from installer.core.facts import GpuReport
from installer.plan.launch_settings import find_option
from installer.plan.launch_tunings import Tuning

SCHEMA_VERSION = 2
"""Written by `tune --workflow` (v2: figures in seconds a prompt, the tuned-vs-stock record);
version 1 files (the GPU benchmark's, figures in s/step) are read the same way."""
READABLE_SCHEMAS = (1, 2)
CPU_KEY = "cpu"
"""The key of the figures measured with ComfyUI on the CPU (no NVIDIA GPU, or `--cpu`)."""
LEVER_MARGIN = 1.03
"""A lever must measure at least this many times as fast as the baseline on one workflow
(3%: the spread of one workflow's warm runs on one machine) and no slower than
``1 / LEVER_MARGIN`` times on any."""
END_TO_END_NOISE = 0.02
"""A launch is "slower" than another on a workflow below ``1 - END_TO_END_NOISE`` times its
speed: 2%, inside the 3% spread of one workflow's warm runs on one machine that
`LEVER_MARGIN` allows, so a loss of 5% (issue 30's) is caught and noise is not."""
FAST = "--fast"
LEVER_PREFIX = "lever-"
"""The name of a lever's tuning is this prefix and the lever's (``lever-nodyn``)."""
UNITS = {"s_per_step": "s/step", "prompt_s": "s a prompt"}


@dataclass(frozen=True)
class LeverFigure:
    """One lever on one workflow: the time with and without it, and its output check."""

    workflow: str
    baseline_s: float
    s: float | None
    distance: float | None
    distance_ok: bool
    unit: str = "s/step"
    """What the times are: ``s/step`` (the GPU benchmark) or ``s a prompt`` (`tune`)."""
    error: str | None = None
    """Why the lever's run failed (then ``s`` is None)."""

    @property
    def speedup(self) -> float:
        """How many times as fast as the baseline (0 when the lever's run failed)."""
        return self.baseline_s / self.s if self.s else 0.0

    def describe(self) -> str:
        """E.g. ``1.08× on sdxl-1024 (0.151 → 0.140 s/step, output distance 0.005 ok)``."""
        if self.error is not None or self.s is None:
            return f"failed on {self.workflow} ({self.error or 'no time'})"
        distance = "" if self.distance is None else f"{self.distance:.3g} "
        verdict = "ok" if self.distance_ok else "over the threshold"
        if self.distance is None and not self.distance_ok:
            verdict = "not compared"
        return (
            f"{self.speedup:.2f}× on {self.workflow} ({self.baseline_s:.3f} → "
            f"{self.s:.3f} {self.unit}, output distance {distance}{verdict})"
        )


@dataclass(frozen=True)
class Lever:
    """One lever measured on one GPU: its ComfyUI arguments and its figures."""

    name: str
    args: tuple[str, ...]
    figures: tuple[LeverFigure, ...]


@dataclass(frozen=True)
class EndToEnd:
    """The tuned launch against stock ComfyUI on one workflow (median warm seconds a prompt)."""

    workflow: str
    stock_s: float
    tuned_s: float | None
    distance: float | None = None
    """Tuned's output against stock's at the same seeds, relative to a new seed's change."""
    distance_ok: bool | None = None
    """None: not measured (no image, or no Pillow in the venv)."""
    error: str | None = None
    """Why the tuned run failed (then ``tuned_s`` is None)."""
    norouting_s: float | None = None
    """The tuned launch with the attention router off (`COMFY_INSTALL_ATTENTION_ROUTES=off`),
    every other tuning the same: what routing itself adds. None: not measured."""
    routed: tuple[tuple[str, str], ...] = ()
    """The call shapes the tuned runs routed away from SDPA, with the backend:
    ``(("fp16 D=64 N=4096", "cudnn"), ...)`` (the router's counters)."""
    launch_s: float | None = None
    """The second phase: the launch as decided from the first phase's figures (the levers
    that went on, the routing the verdict left). None: not run (it was ``tuned``)."""
    launch_norouting_s: float | None = None
    """That launch with the attention router off. None: not run."""
    launch_routed: tuple[tuple[str, str], ...] = ()
    """The call shapes that launch routed away from SDPA, with the backend."""
    launch_error: str | None = None
    """Why that launch's run failed."""
    launch_distance_ok: bool | None = None
    """That launch's output against stock's (None: not compared)."""

    @property
    def speedup(self) -> float:
        """How many times as fast as stock (0 when the tuned run failed)."""
        return self.stock_s / self.tuned_s if self.tuned_s else 0.0

    @property
    def routing_speedup(self) -> float | None:
        """How many times as fast routing made the tuned launch (None: not measured)."""
        if not self.tuned_s or not self.norouting_s:
            return None
        return self.norouting_s / self.tuned_s

    @property
    def launch_speedup(self) -> float | None:
        """How many times as fast as stock the launch as decided was (None: not run; 0: failed)."""
        if self.launch_s is None and self.launch_error is None:
            return None
        return self.stock_s / self.launch_s if self.launch_s else 0.0

    def routing_figures(self) -> list[tuple[float, tuple[tuple[str, str], ...], str]]:
        """Each measured pair of router on against off: its speedup, routed shapes, text.

        The first phase's (``tuned`` against ``tuned-norouting``, no lever) and the second's
        (``launch`` against ``launch-norouting``, the levers on), where measured.
        """
        found = []
        if self.routing_speedup is not None:
            found.append((self.routing_speedup, self.routed, self.describe_routing()))
        if self.launch_s and self.launch_norouting_s:
            speedup = self.launch_norouting_s / self.launch_s
            text = _routing_text(self.workflow + " as launched", self.launch_norouting_s,
                                 self.launch_s)  # fmt: skip
            found.append((speedup, self.launch_routed, text))
        return found

    def describe_launch(self) -> str:
        """E.g. ``the launch as decided 1.31× stock on sdxl (1.201 → 0.917 s a prompt)``."""
        if self.launch_speedup is None:
            return f"the launch as decided was the tuned one on {self.workflow}"
        if not self.launch_s:
            return f"the launch as decided failed on {self.workflow} ({self.launch_error})"
        output = {None: "output not compared", True: "output ok", False: "output differs"}
        return (
            f"the launch as decided {self.launch_speedup:.2f}× stock on {self.workflow} "
            f"({self.stock_s:.3f} → {self.launch_s:.3f} s a prompt, "
            f"{output[self.launch_distance_ok]})"
        )

    def describe_routing(self) -> str:
        """E.g. ``routing 0.96× on sdxl (0.0568 → 0.0591 s a prompt, router off → on)``."""
        if not self.tuned_s or not self.norouting_s:
            return f"routing not measured apart on {self.workflow}"
        return _routing_text(self.workflow, self.norouting_s, self.tuned_s)

    def describe(self) -> str:
        """E.g. ``0.92× stock on sdxl (1.201 → 1.305 s a prompt, output distance 0.01 ok)``."""
        if self.error is not None or self.tuned_s is None:
            return f"the tuned launch failed on {self.workflow} ({self.error or 'no time'})"
        if self.distance_ok is None:
            output = "output not compared"
        else:
            shown = "" if self.distance is None else f"{self.distance:.3g} "
            output = f"output distance {shown}{'ok' if self.distance_ok else 'over the threshold'}"
        return (
            f"{self.speedup:.2f}× stock on {self.workflow} ({self.stock_s:.3f} → "
            f"{self.tuned_s:.3f} s a prompt, {output})"
        )


@dataclass(frozen=True)
class TunedVsStock:
    """`tune --workflow`'s end-to-end verdict on one GPU: the tuned launch against stock."""

    figures: tuple[EndToEnd, ...]
    routed: bool
    """Attention routing was on in the tuned runs (else they say nothing about it)."""
    calibration: str | None = None
    """When the calibration the tuned runs routed by was measured (its ``measured_at``)."""
    measured_at: str | None = None
    launch_levers: tuple[str, ...] = ()
    """The levers the second phase's launch turned on (its figures judge that set only)."""


@dataclass(frozen=True)
class LeverRecords:
    """The levers measured on one GPU, as read from levers.json."""

    gpu: str
    levers: tuple[Lever, ...]
    source: str = ""
    other_gpus: tuple[str, ...] = ()
    """GPUs the file has figures for, when none are for this one."""
    tuned_vs_stock: TunedVsStock | None = None
    """The end-to-end verdict of the tuning on this GPU (schema 2), if measured."""


def _routing_text(where: str, off_s: float, on_s: float) -> str:
    """E.g. ``routing 0.96× on sdxl (0.057 → 0.059 s a prompt, router off → on)``."""
    return (
        f"routing {off_s / on_s:.2f}× on {where} ({off_s:.3f} → {on_s:.3f} s a prompt, "
        "router off → on)"
    )


def _optional(value: Any) -> float | None:
    return None if value is None else float(value)


def _figure(workflow: str, figure: Mapping[str, Any]) -> LeverFigure:
    if "baseline_s_per_step" in figure:  # schema 1: the GPU benchmark's s/step
        base, step, unit = figure["baseline_s_per_step"], figure["s_per_step"], "s/step"
    else:
        base, step = figure["baseline_s"], figure.get("s")
        unit = UNITS.get(str(figure.get("metric", "prompt_s")), "s a prompt")
    error = None if figure.get("error") is None else str(figure["error"])
    found = LeverFigure(
        workflow=workflow,
        baseline_s=float(base),
        s=_optional(step),
        distance=_optional(figure.get("distance")),
        distance_ok=bool(figure.get("distance_ok")),
        unit=unit,
        error=error,
    )
    if found.baseline_s <= 0 or (error is None and (found.s is None or found.s <= 0)):
        raise ValueError(f"{workflow}: a time that is not positive")
    return found


def _tuned_vs_stock(record: Mapping[str, Any]) -> TunedVsStock:
    figures = []
    for workflow, figure in sorted(dict(record["workflows"]).items()):
        ok, launch_ok = figure.get("distance_ok"), figure.get("launch_distance_ok")
        found = EndToEnd(
            workflow=str(workflow),
            stock_s=float(figure["stock_s"]),
            tuned_s=_optional(figure.get("tuned_s")),
            distance=_optional(figure.get("distance")),
            distance_ok=None if ok is None else bool(ok),
            error=None if figure.get("error") is None else str(figure["error"]),
            norouting_s=_optional(figure.get("norouting_s")),
            routed=_shapes(figure.get("routed_shapes")),
            launch_s=_optional(figure.get("launch_s")),
            launch_norouting_s=_optional(figure.get("launch_norouting_s")),
            launch_routed=_shapes(figure.get("launch_routed_shapes")),
            launch_error=_text(figure.get("launch_error")),
            launch_distance_ok=None if launch_ok is None else bool(launch_ok),
        )
        if found.stock_s <= 0 or (found.error is None and not found.tuned_s):
            raise ValueError(f"tuned_vs_stock {workflow}: a time that is not positive")
        figures.append(found)
    calibration = record.get("calibration")
    measured = record.get("measured_at")
    return TunedVsStock(
        figures=tuple(figures),
        routed=bool(record.get("routed")),
        calibration=None if calibration is None else str(calibration),
        measured_at=None if measured is None else str(measured),
        launch_levers=tuple(str(name) for name in record.get("launch_levers") or ()),
    )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _shapes(found: Any) -> tuple[tuple[str, str], ...]:
    """A record's routed shapes (``{shape: backend}``) as sorted pairs."""
    return tuple((str(shape), str(backend)) for shape, backend in sorted(dict(found or {}).items()))


def parse_levers(document: Mapping[str, Any], gpu_name: str, source: str = "") -> LeverRecords:
    """Read the levers measured on ``gpu_name`` from levers.json's data.

    Args:
        document: The file's JSON data (schema version 1 or 2).
        gpu_name: The GPU's name as NVML reports it (`NVIDIA H100 80GB HBM3`), or
            [`CPU_KEY`][installer.plan.levers.CPU_KEY] for ComfyUI on the CPU.
        source: Where the data came from, for messages.

    Returns:
        The records (no levers, with ``other_gpus`` set, when the file has no
        figures for this GPU).

    Raises:
        ValueError: The data is not levers.json of a known schema.
    """
    try:
        if document.get("schema_version") not in READABLE_SCHEMAS:
            raise ValueError(f"schema_version {document.get('schema_version')!r} is not 1 or 2")
        gpus = dict(document["gpus"])
        found = gpus.get(gpu_name)
        if found is None:
            return LeverRecords(gpu_name, (), source, tuple(sorted(gpus)))
        levers = []
        for name, lever in sorted(dict(found.get("levers") or {}).items()):
            figures = tuple(
                _figure(str(workflow), figure)
                for workflow, figure in sorted(dict(lever["workflows"]).items())
            )
            levers.append(Lever(str(name), tuple(str(a) for a in lever["args"]), figures))
        record = found.get("tuned_vs_stock")
        verdict = None if record is None else _tuned_vs_stock(record)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a levers file ({type(exc).__name__}: {exc})") from None
    return LeverRecords(gpu_name, tuple(levers), source, tuned_vs_stock=verdict)


def lever_verdict(lever: Lever) -> tuple[bool, str]:
    """Whether the lever goes on, and the figures that say so.

    Args:
        lever: The lever with its figures on this GPU.
    """
    if not lever.figures:
        return False, "never measured on a workflow"
    shown = "; ".join(figure.describe() for figure in lever.figures)
    failed = [f.workflow for f in lever.figures if f.error is not None or f.s is None]
    if failed:
        return False, f"ComfyUI failed with it on {', '.join(failed)}: {shown}"
    unchecked = [f.workflow for f in lever.figures if not f.distance_ok and f.distance is None]
    if unchecked:
        return False, f"output not compared with stock's on {', '.join(unchecked)}: {shown}"
    wrong = [f.workflow for f in lever.figures if not f.distance_ok]
    if wrong:
        return False, f"output differs from stock's on {', '.join(wrong)}: {shown}"
    slower = [f.workflow for f in lever.figures if f.speedup < 1 / LEVER_MARGIN]
    if slower:
        return False, f"slower on {', '.join(slower)}: {shown}"
    if not any(f.speedup >= LEVER_MARGIN for f in lever.figures):
        best = max(f.speedup for f in lever.figures)
        return False, (
            f"not {LEVER_MARGIN:.2f}× as fast on any workflow (at best {best:.3f}×): {shown}"
        )
    return True, f"measured faster on this GPU: {shown}"


def merge_levers(
    document: Mapping[str, Any] | None, key: str, record: Mapping[str, Any]
) -> dict[str, Any]:
    """Return levers.json's data with ``key``'s record replaced by ``record``.

    The other GPUs' records are kept as they are (a version 1 file's too: its figures
    stay readable); the file becomes version 2.

    Args:
        document: The file's data now (None: no file, or one that could not be read).
        key: The GPU's name, or [`CPU_KEY`][installer.plan.levers.CPU_KEY].
        record: This run's ``{"levers": ..., "tuned_vs_stock": ...}``.
    """
    gpus: dict[str, Any] = {}
    if document is not None and document.get("schema_version") in READABLE_SCHEMAS:
        found = document.get("gpus")
        gpus = dict(found) if isinstance(found, Mapping) else {}
    gpus[key] = dict(record)
    return {"schema_version": SCHEMA_VERSION, "gpus": gpus}


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
        name = f"{LEVER_PREFIX}{lever.name}"
        if not tune:
            tunings.append(Tuning(name, "off", "--no-tune"))
            continue
        if not gpu.has_nvidia and records.gpu != CPU_KEY:
            tunings.append(Tuning(name, "off", "no NVIDIA GPU for ComfyUI"))
            continue
        if user_fast:
            tunings.append(Tuning(name, "user", f"you gave {FAST}; left to you"))
            continue
        on, why = lever_verdict(lever)
        if not on:
            tunings.append(Tuning(name, "off", why))
            continue
        values, extra = _split_fast(lever.args)
        fast += [v for v in values if v not in fast]
        other += [a for a in extra if a not in other]
        tunings.append(Tuning(name, "on", f"adds {' '.join(lever.args)}: {why}"))
    tunings, kept = launch_check(tunings, records.tuned_vs_stock)
    if not kept:
        return tunings, []
    return tunings, ([FAST, *fast] if fast else []) + other


def levers_on(tunings: Sequence[Tuning]) -> tuple[str, ...]:
    """The names of the levers a launch's tunings turn on (``nodyn`` for ``lever-nodyn``).

    Args:
        tunings: A launch's tunings (any others are ignored).
    """
    return tuple(
        t.name.removeprefix(LEVER_PREFIX)
        for t in tunings
        if t.name.startswith(LEVER_PREFIX) and t.status == "on"
    )


def launch_check(
    tunings: Sequence[Tuning], verdict: TunedVsStock | None
) -> tuple[list[Tuning], bool]:
    """Judge the levers that go on together by the launch measured with them end to end.

    Each lever was measured against the tuned launch alone; `tune --workflow`'s second
    phase runs the launch with all of them (and the routing) against stock. Where that
    launch, with exactly these levers on, was slower than stock by more than
    `END_TO_END_NOISE`, failed, or changed the output on a workflow, every lever goes off:
    the tuned launch without them is the one measured not slower (never slower than stock
    comes first). Otherwise the figures join the levers' reasons.

    Args:
        tunings: The ``lever-NAME`` tunings as decided one by one.
        verdict: The end-to-end record on this GPU (None: not measured).

    Returns:
        The tunings, and whether the levers that are on stay on.
    """
    on = [t for t in tunings if t.status == "on"]
    names = sorted(levers_on(tunings))
    if not on or verdict is None:
        return list(tunings), True
    figures = [f for f in verdict.figures if f.launch_speedup is not None]
    if not figures:
        return list(tunings), True
    if sorted(verdict.launch_levers) != names:
        note = (
            f"; end to end, the launch was measured with {', '.join(verdict.launch_levers) or 'no'}"
            " lever, not with these"
        )
        noted = [replace(t, reason=t.reason + note) if t.status == "on" else t for t in tunings]
        return noted, True
    shown = "; ".join(f.describe_launch() for f in figures)
    bad = [
        f
        for f in figures
        if (f.launch_speedup or 0.0) < 1.0 - END_TO_END_NOISE or f.launch_distance_ok is False
    ]
    if not bad:
        return [replace(t, reason=f"{t.reason}; end to end {shown}") if t.status == "on" else t
                for t in tunings], True  # fmt: skip
    why = "; ".join(f.describe_launch() for f in bad)
    off = (
        f"the launch with {', '.join(names)} measured slower than stock (or wrong) end to end: "
        f"{why}; off until `comfy-install tune DIR --workflow FILE` measures again"
    )
    return [Tuning(t.name, "off", off) if t.status == "on" else t for t in tunings], False


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
