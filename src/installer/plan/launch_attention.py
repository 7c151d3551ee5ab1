"""The attention decision of a launch: measured routing, never a rule.

An attention kernel is used only where `comfy-install tune` measured it
correct and faster than SDPA on this GPU, per call shape. With a calibration
that still describes the machine
([`usable_calibration`][installer.attention.rules.routing.usable_calibration]),
[`decide_attention`][installer.plan.launch_attention.decide_attention] has its route
tables made into the routing table the shim in ComfyUI's process follows
([`route_table`][installer.attention.rules.routing.route_table]: per head dim and
dtype, the bands of sequence lengths that go to another backend; every other call
goes to SDPA), and turns that into the launch's tuning. Without a usable calibration
nothing is routed and ComfyUI keeps its default, SDPA. The rules and the table's
schema live in [`installer.attention`][installer.attention]; this module is the
launch plan's side: the user's flags and variables, and the tunings.

One more thing keeps that default: ComfyUI picks xformers by itself whenever
it loads. [`decide_xformers`][installer.plan.launch_attention.decide_xformers]
therefore adds `--disable-xformers` when xformers is installed but not routed
(not measured, measured slower, or broken), and says which.

A backend the accelerator proof (after step 10, and in verify) found broken on
this GPU, in the version still installed, is never routed to, whatever the
calibration says, and a user's flag that selects it is warned about.

The tuning is also checked end to end: `comfy-install tune DIR --workflow FILE` times the
user's workflows with plain `main.py` (stock) and with the tuned launch, and where the
tuned launch was measured slower than stock on any workflow on this GPU (by more than
[`ROUTING_NOISE`][installer.plan.launch_attention.ROUTING_NOISE]), failed, or changed the
output beyond the threshold,
[`apply_verdict`][installer.plan.launch_attention.apply_verdict] turns the routing off
(ComfyUI's own attention stays) and says why with the figure. Per-call wins measured in
isolation need not add up to a faster workflow (issue 30: SDXL on an H100, 0.92×).

The user's own attention flags always win: nothing is routed, nothing added. So does
`COMFY_INSTALL_ATTENTION_ROUTES=off` (or `0`, `false`): the router stays off, no table is
written, and every other tuning is decided as without it.
Pure: the calibration, the venv's package versions and the GPU report come in
as data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, cast

from installer.attention.rules.records import Calibration, backend_label
from installer.attention.rules.routing import (
    AttentionProbe,
    CalibrationRead,
    route_table,
    usable_calibration,
)
from installer.attention.shim.routes import (
    ROUTES_ENV,
    in_band,
    parse_shape_label,
    routes_off,
)
from installer.core.facts import GpuReport
from installer.plan.launch_settings import find_option
from installer.plan.launch_tunings import Tuning, no_gpu_reason
from installer.plan.levers import END_TO_END_NOISE, TunedVsStock

if TYPE_CHECKING:
    from installer.attention.shim.routes import RoutesData

DISABLE_XFORMERS = "--disable-xformers"
ROUTING_NOISE = END_TO_END_NOISE
"""The tuned launch is "slower than stock" on a workflow below ``1 - ROUTING_NOISE`` times
stock's speed: 2%, inside the 3% spread of one workflow's warm runs on one machine that
`LEVER_MARGIN` allows, so a loss of 5% (issue 30's) is caught and noise is not (the levers'
[`END_TO_END_NOISE`][installer.plan.levers.END_TO_END_NOISE])."""
FLAG_BACKENDS = {
    "--use-sage-attention": "sageattention",
    "--use-ck-attention": "comfy_kitchen_int8",
}
"""The backend each of ComfyUI's attention flags selects (those the proof can find broken)."""
# ComfyUI's attention choices are one argparse group (`--use-ck-attention` from
# v0.33): with any of them the user chose, and nothing is routed or added.
ATTENTION_FLAGS = (
    "--use-sage-attention",
    "--use-pytorch-cross-attention",
    "--use-split-cross-attention",
    "--use-quad-cross-attention",
    "--use-flash-attention",
    "--use-ck-attention",
)


@dataclass(frozen=True)
class AttentionChoice:
    """The routing decision: its tuning, the table for the shim, and lines for people."""

    tuning: Tuning
    routes: RoutesData | None = None
    """The routing table written for the shim (JSON-ready), when routing is on."""
    routes_path: Path | None = None
    details: tuple[str, ...] = ()
    """One line per head dim and dtype: which backend at which lengths, measured how."""
    warning: str | None = None
    """Set when there is a calibration that cannot be used (stale or unreadable)."""
    stock_won: bool = False
    """Set when `tune --workflow` measured the tuned launch slower than stock (or wrong), so
    ComfyUI keeps its own attention choice, xformers included."""

    @property
    def routed(self) -> frozenset[str]:
        """The backends the table sends calls to (SDPA takes the rest)."""
        if self.routes is None:
            return frozenset()
        return frozenset(
            band["backend"] for route in self.routes["routes"] for band in route["bands"]
        )


def _label(calibration: Calibration, backend: str) -> str:
    record = calibration.backend(backend)
    return backend_label(backend, record.version if record is not None else None)


def _chosen_flag(comfy_args: Sequence[str]) -> str | None:
    chosen = [flag for flag in ATTENTION_FLAGS if find_option(comfy_args, flag)[0]]
    return chosen[-1] if chosen else None


def decide_attention(
    tune: bool,
    gpu: GpuReport,
    probe: AttentionProbe | None,
    read: CalibrationRead | None,
    comfy_args: Sequence[str],
    user: Mapping[str, str],
    broken: Mapping[str, str] | None = None,
    verdict: TunedVsStock | None = None,
) -> AttentionChoice:
    """Decide how ComfyUI's attention calls are routed, checked by the end-to-end verdict.

    Args:
        tune: Tuning on.
        gpu: The GPU report (no GPU, or `--cpu`: nothing is routed).
        probe: The venv's package versions, for the staleness check.
        read: The install's calibration file as read.
        comfy_args: The arguments ComfyUI will get from the user.
        user: The launch variables the user set (their own routing table wins, and
            `COMFY_INSTALL_ATTENTION_ROUTES=off` turns routing off).
        broken: The backends the accelerator proof found broken, with the reason
            (see [`broken_now`][installer.plan.proof.broken_now]): never routed to.
        verdict: The tuned launch against stock on this GPU (`tune --workflow`), if measured.

    Returns:
        The choice: ``on`` with the routing table and the variable naming
        its file, ``user``, or ``off`` with the reason.
    """
    choice = _decide_attention(tune, gpu, probe, read, comfy_args, user, broken)
    if not tune or verdict is None:
        return choice
    calibration = read.calibration if read is not None else None
    return apply_verdict(
        choice, verdict, calibration.measured_on.measured_at if calibration else None
    )


def apply_verdict(
    choice: AttentionChoice, verdict: TunedVsStock, calibration_at: str | None
) -> AttentionChoice:
    """Turn the routing off where the tuned launch was measured slower than stock.

    The verdict counts only when the tuned runs routed attention by the calibration the
    launch would route by now (same ``measured_at``); otherwise, and when routing is off
    anyway, its figures are shown and nothing changes.

    Args:
        choice: The routing decided from the calibration.
        verdict: `tune --workflow`'s figures of the tuned launch against stock on this GPU.
        calibration_at: When the calibration the launch routes by was measured.

    Returns:
        The choice, ``off`` with the figure when a workflow was slower by more than
        ``ROUTING_NOISE``, failed, or changed its output beyond the threshold; else the
        same choice with the figures among its details.
    """
    shown = "; ".join(figure.describe() for figure in verdict.figures)
    lines = [f"end to end (tune --workflow): {shown or 'no workflow finished'}"]
    if choice.tuning.status != "on" or not verdict.figures:
        return replace(choice, details=(*choice.details, *lines))
    if not verdict.routed:
        lines.append("end to end: measured without attention routing, so it says nothing of it")
        return replace(choice, details=(*choice.details, *lines))
    if verdict.calibration != calibration_at:
        lines.append(
            f"end to end: measured with the calibration of {verdict.calibration}, not this one "
            f"({calibration_at}); run `comfy-install tune DIR --workflow FILE` again"
        )
        return replace(choice, details=(*choice.details, *lines))
    bad = [
        f
        for f in verdict.figures
        if f.error is not None or f.distance_ok is False or f.speedup < 1.0 - ROUTING_NOISE
    ]
    if not bad:
        tuning = replace(choice.tuning, reason=f"{choice.tuning.reason}; end to end {shown}")
        kept = replace(choice, tuning=tuning, details=(*choice.details, *lines))
        return _drop_losing_bands(kept, verdict)
    why = "; ".join(figure.describe() for figure in bad)
    reason = (
        f"the tuned launch measured slower than stock (or wrong) end to end: {why}; "
        "ComfyUI's own attention stays (`comfy-install tune DIR --workflow FILE` measures again)"
    )
    return AttentionChoice(
        Tuning("attention", "off", reason),
        details=(*choice.details, *lines),
        warning=choice.warning,
        stock_won=True,
    )


def _drop_losing_bands(choice: AttentionChoice, verdict: TunedVsStock) -> AttentionChoice:
    """Stop routing the bands a workflow was slower through than with the router off.

    A workflow whose tuned runs were slower than ``tuned-norouting`` (the same launch with
    the router off) by more than ``ROUTING_NOISE`` loses every band of the table its routed
    calls went through: those lengths go to SDPA, as without the router, and the other
    bands stay (on the H100 of issue 30, SDXL's cuDNN band cost 4% while Wan's
    SageAttention band gained 1.4×). The second phase's pair (``launch`` against
    ``launch-norouting``: the same with the levers that went on) judges the same way, and
    a band either pair lost through is dropped. Where such a workflow's routed shapes are
    not known, routing is turned off: never slower comes first.
    """
    pairs = [pair for f in verdict.figures for pair in f.routing_figures()]
    losing = [(routed, text) for speedup, routed, text in pairs if speedup < 1.0 - ROUTING_NOISE]
    measured = [text for _, _, text in pairs]
    if not measured or choice.routes is None:
        return choice
    lines = [f"end to end, router off against on (tune --workflow): {'; '.join(measured)}"]
    if not losing:
        return replace(choice, details=(*choice.details, *lines))
    why = "; ".join(text for _, text in losing)
    if any(not routed for routed, _ in losing):
        reason = (
            f"the router measured slower than the same launch without it: {why} (the shapes "
            "it routed were not recorded); ComfyUI's own attention, every other tuning stays"
        )
        return AttentionChoice(
            Tuning("attention", "off", reason), details=(*choice.details, *lines)
        )
    shapes = [shape for routed, _ in losing for shape, _ in routed]
    routes, dropped = drop_bands(choice.routes, shapes)
    lines.append(f"not routed, slower end to end through them ({why}): {'; '.join(dropped)}")
    if routes is None:
        reason = f"every band routed was slower end to end than the router off: {why}"
        return AttentionChoice(
            Tuning("attention", "off", reason), details=(*choice.details, *lines)
        )
    tuning = replace(
        choice.tuning,
        reason=f"{choice.tuning.reason}; {', '.join(dropped)} not routed (slower end to end: "
        f"{why})",
    )
    return replace(choice, tuning=tuning, routes=routes, details=(*choice.details, *lines))


def drop_bands(routes: RoutesData, shapes: Sequence[str]) -> tuple[RoutesData | None, list[str]]:
    """Return the routing table without the bands any of ``shapes`` falls in.

    Args:
        routes: The routing table (not changed).
        shapes: Call shapes as the router counts them (``fp16 D=64 N=4096``).

    Returns:
        The table (None when no band is left) and one line per band dropped
        (``cudnn for fp16 D=64 at 1024-12288 tokens``).
    """
    wanted = [found for found in map(parse_shape_label, shapes) if found is not None]
    kept_routes = []
    dropped: list[str] = []
    for route in routes["routes"]:
        bands = []
        for band in route["bands"]:
            low, high = band["min_tokens"], band["max_tokens"]
            hit = any(
                (dim, dtype) == (route["head_dim"], route["dtype"]) and in_band(tokens, low, high)
                for dim, dtype, tokens in wanted
            )
            if hit:
                span = f"{low}-{high}" if high is not None else f"{low} and more"
                dropped.append(
                    f"{band['backend']} for {route['dtype']} D={route['head_dim']} at {span} tokens"
                )
            else:
                bands.append(band)
        if bands:
            kept_routes.append({**route, "bands": bands})
    if not kept_routes:
        return None, dropped
    table = dict(routes)
    table["routes"] = kept_routes
    return cast("RoutesData", table), dropped


def _decide_attention(
    tune: bool,
    gpu: GpuReport,
    probe: AttentionProbe | None,
    read: CalibrationRead | None,
    comfy_args: Sequence[str],
    user: Mapping[str, str],
    broken: Mapping[str, str] | None = None,
) -> AttentionChoice:
    """Decide the routing from the calibration alone, before the end-to-end verdict.

    The arguments and the result are those of
    [`decide_attention`][installer.plan.launch_attention.decide_attention].
    """
    broken = broken or {}
    name = "attention"
    if not tune:
        return AttentionChoice(Tuning(name, "off", "--no-tune"))
    if routes_off(user.get(ROUTES_ENV)):
        # The router off, and nothing else: no table is written, every other tuning stays.
        return AttentionChoice(
            Tuning(
                name,
                "off",
                f"you set {ROUTES_ENV}={user[ROUTES_ENV]}; ComfyUI's own attention",
                variable=ROUTES_ENV,
                value=user[ROUTES_ENV],
            )
        )
    if ROUTES_ENV in user:
        return AttentionChoice(
            Tuning(
                name,
                "user",
                f"you set {ROUTES_ENV}: the shim routes by your table",
                variable=ROUTES_ENV,
                value=user[ROUTES_ENV],
            )
        )
    flag = _chosen_flag(comfy_args)
    if flag is not None:
        backend = FLAG_BACKENDS.get(flag, "")
        warning = (
            f"you chose {flag}, but the accelerator proof found {backend_label(backend)} "
            f"broken on this GPU ({broken[backend]})"
            if backend in broken
            else None
        )
        return AttentionChoice(
            Tuning(name, "user", f"you chose {flag}: nothing is routed", argument=flag),
            warning=warning,
        )
    if gpu.planning_cc is None:
        return AttentionChoice(Tuning(name, "off", no_gpu_reason(gpu)))
    calibration, summary = usable_calibration(read, probe, gpu)
    if calibration is None or read is None:
        exists = read is not None and (read.calibration is not None or read.problem is not None)
        return AttentionChoice(
            Tuning(name, "off", f"{summary}: ComfyUI's default (SDPA)"),
            warning=f"attention is not routed: {summary}" if exists and probe else None,
        )
    disabled = set(broken) | (
        {"xformers"} if find_option(comfy_args, DISABLE_XFORMERS)[0] else set()
    )
    table = route_table(read.path, calibration, disabled)
    details = list(table.details)
    details += [
        f"{_label(calibration, backend)} is never routed: the accelerator proof found it broken "
        f"on this GPU ({why})"
        for backend, why in sorted(broken.items())
    ]
    if table.data is None:
        excluded = any(b.backend in broken for t in calibration.tables for b in t.bands)
        why = (
            "every backend measured faster is broken on this GPU (the accelerator proof)"
            if excluded
            else "SDPA measured fastest at every length"
        )
        return AttentionChoice(
            Tuning(name, "off", f"{why} ({summary}): ComfyUI's default"),
            details=tuple(details),
        )
    routes = table.data["routes"]
    routed = sorted({band["backend"] for route in routes for band in route["bands"]})
    labels = ", ".join(_label(calibration, backend) for backend in routed)
    reason = (
        f"{labels} where measured faster, SDPA elsewhere ({summary}); "
        f"{len(routes)} of {len(calibration.tables)} head dim/dtype pairs routed"
    )
    return AttentionChoice(
        Tuning(name, "on", reason, variable=ROUTES_ENV, value=str(table.path)),
        routes=table.data,
        routes_path=table.path,
        details=tuple(details),
    )


def decide_xformers(
    tune: bool,
    gpu: GpuReport,
    probe: AttentionProbe | None,
    read: CalibrationRead | None,
    routed: frozenset[str],
    comfy_args: Sequence[str],
    broken: Mapping[str, str] | None = None,
    stock_won: bool = False,
) -> Tuning:
    """Decide whether to add `--disable-xformers`, so that ComfyUI keeps SDPA.

    ComfyUI uses xformers for every attention call as soon as it loads;
    unless routing sends calls to it (it measured faster there), an
    installed xformers is turned off. Not where the tuned launch (which turned it off)
    measured slower than stock end to end: ComfyUI's own choice then stays, as in stock.

    Args:
        tune: Tuning on.
        gpu: The GPU report.
        probe: The venv's package versions (is xformers installed?).
        read: The install's calibration file as read (why xformers is not routed).
        routed: The backends the launch routes calls to (after the shim's limits).
        comfy_args: The arguments ComfyUI will get from the user.
        broken: The backends the accelerator proof found broken, with the reason.
        stock_won: `tune --workflow` measured the tuned launch slower than stock (see
            [`apply_verdict`][installer.plan.launch_attention.apply_verdict]).

    Returns:
        The tuning; ``argument`` is `--disable-xformers` when it is added.
    """
    name = "xformers"
    if not tune:
        return Tuning(name, "off", "--no-tune")
    if find_option(comfy_args, DISABLE_XFORMERS)[0]:
        return Tuning(name, "user", "you chose it", argument=DISABLE_XFORMERS)
    flag = _chosen_flag(comfy_args)
    if flag is not None:
        return Tuning(name, "off", f"you chose {flag}")
    if gpu.planning_cc is None:
        return Tuning(name, "off", no_gpu_reason(gpu))
    if probe is None:
        return Tuning(name, "off", "the venv's packages could not be read")
    version = probe.version("xformers")
    if version is None:
        return Tuning(name, "off", "xformers is not installed")
    if "xformers" in routed:
        return Tuning(name, "off", f"xformers {version} is routed where it measured faster")
    proof_says = (broken or {}).get("xformers")
    if stock_won and proof_says is None:
        return Tuning(
            name,
            "off",
            f"the tuned launch measured slower than stock end to end, so ComfyUI keeps its own "
            f"choice (xformers {version}), as stock does",
        )
    calibration, why_not = usable_calibration(read, probe, gpu)
    record = calibration.backend("xformers") if calibration is not None else None
    if proof_says is not None:
        why = f"is broken on this GPU (the accelerator proof: {proof_says})"
    elif calibration is None:
        why = f"was not measured on this GPU ({why_not})"
    elif record is not None and record.status == "broken":
        why = f"is broken on this GPU ({record.reason or 'it failed every call'})"
    else:
        why = "measured no faster than SDPA"
    return Tuning(
        name,
        "on",
        f"xformers {version} is installed but {why}; without the flag ComfyUI "
        "would pick it for every attention call",
        argument=DISABLE_XFORMERS,
    )
