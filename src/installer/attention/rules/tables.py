"""The rules of a calibration: route tables from raw medians, and when a calibration is stale.

[`build_tables`][installer.attention.rules.tables.build_tables] turns `tune`'s raw
medians into one [`RouteTable`][installer.attention.rules.records.RouteTable] per
head dim and dtype. The rule is conservative, because the promise is that a
routed ComfyUI is never slower than SDPA:

- only a correct measurement (status ``ok``: it ran, within the tolerance of
  `benchmark`) counts, and a backend is chosen only where it was at least
  ``margin`` times as fast as SDPA (1.05 by default: 5% faster, to stay out of
  the noise of the timings);
- the stretch between two measured lengths goes to a backend only when it won
  at both ends (the one whose lesser speedup of the two is largest), so a
  crossover falls on a measured length, never between two guesses;
- below the shortest length measured it is SDPA; above the longest, the
  winner of the longest (attention's cost grows with N², and the kernels that
  win at long lengths win more the longer they get).

[`stale_reasons`][installer.attention.rules.tables.stale_reasons] compares what a
calibration was measured on with the machine now: another GPU, driver, torch
or version of any attention package makes it stale, and `launch` then uses
none of it. Pure: data in, data out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from installer.attention.rules.records import (
    Band,
    Calibration,
    CalibrationPoint,
    MachineNow,
    RouteTable,
    backend_label,
)

MARGIN = 1.05
"""A backend must measure at least this many times as fast as SDPA to be chosen."""


def build_tables(points: Sequence[CalibrationPoint], margin: float = MARGIN) -> list[RouteTable]:
    """Make the route table of every head dim and dtype measured.

    Args:
        points: The raw measurements (every backend, SDPA included).
        margin: How many times as fast as SDPA a backend must be to be chosen.

    Returns:
        One table per ``(head_dim, dtype)``, sorted by head dim then dtype.
    """
    groups: dict[tuple[int, str], list[CalibrationPoint]] = {}
    for point in points:
        groups.setdefault((point.head_dim, point.dtype), []).append(point)
    return [_table(d, dtype, groups[(d, dtype)], margin) for d, dtype in sorted(groups)]


def _speedups(points: Iterable[CalibrationPoint], margin: float) -> dict[int, dict[str, float]]:
    """``{tokens: {backend: speedup}}`` of the correct, fast enough non-SDPA measurements."""
    found: dict[int, dict[str, float]] = {}
    for point in points:
        found.setdefault(point.tokens, {})
        if (
            point.backend != "sdpa"
            and point.status == "ok"
            and point.speedup is not None
            and point.speedup >= margin
        ):
            found[point.tokens][point.backend] = point.speedup
    return found


def _table(head_dim: int, dtype: str, points: list[CalibrationPoint], margin: float) -> RouteTable:
    winners = _speedups(points, margin)
    lengths = sorted(winners)
    stretches: list[tuple[int, int | None, str, dict[int, float]]] = []
    if lengths:
        stretches.append((0, lengths[0], "sdpa", {}))
    for index, start in enumerate(lengths):
        end = lengths[index + 1] if index + 1 < len(lengths) else None
        ends = [start] if end is None else [start, end]
        common = set(winners[start]).intersection(*(winners[n] for n in ends))
        if not common:
            stretches.append((start, end, "sdpa", {}))
            continue
        best = max(sorted(common), key=lambda name: min(winners[n][name] for n in ends))
        stretches.append((start, end, best, {n: winners[n][best] for n in ends}))
    bands: list[Band] = []
    evidence: dict[int, float] = {}
    for start, end, backend, seen in stretches:
        if bands and bands[-1].backend == backend:
            evidence.update(seen)
            bands[-1] = _band(bands[-1].min_tokens, end, backend, evidence)
        else:
            evidence = dict(seen)
            bands.append(_band(start, end, backend, evidence))
    crossovers = [band.min_tokens for band in bands[1:]]
    return RouteTable(head_dim=head_dim, dtype=dtype, bands=bands, crossovers=crossovers)


def _band(start: int, end: int | None, backend: str, evidence: dict[int, float]) -> Band:
    if backend == "sdpa" or not evidence:
        return Band(min_tokens=start, max_tokens=end, backend=backend)
    best_at = max(evidence, key=lambda n: (evidence[n], n))
    return Band(
        min_tokens=start,
        max_tokens=end,
        backend=backend,
        least_speedup=round(min(evidence.values()), 3),
        best_speedup=round(evidence[best_at], 3),
        best_at_tokens=best_at,
    )


def stale_reasons(calibration: Calibration, now: MachineNow) -> list[str]:
    """Say why a calibration no longer describes this machine (nothing: it does).

    Args:
        calibration: The stored calibration.
        now: This machine and venv as they are now.

    Returns:
        One reason per difference: the GPU, the driver, torch, or the version
        of an attention package (one installed, removed or changed since).
    """
    measured = calibration.measured_on
    reasons: list[str] = []
    same = [
        name for name, cc in now.gpus if name == measured.gpu_name and measured.gpu_cc in (None, cc)
    ]
    if not same:
        found = ", ".join(f"{name} (cc {cc})" for name, cc in now.gpus) or "no GPU"
        reasons.append(f"measured on {measured.gpu_name}, this machine has {found}")
    if measured.driver != now.driver:
        reasons.append(f"driver {measured.driver or 'unknown'} then, {now.driver or 'unknown'} now")
    names = sorted(set(measured.versions) | set(now.versions))
    for name in names:
        then, current = measured.versions.get(name), now.versions.get(name)
        if then == current:
            continue
        if then is None:
            reasons.append(f"{name} {current} was installed since")
        elif current is None:
            reasons.append(f"{name} {then} was removed since")
        else:
            reasons.append(f"{name} {then} then, {current} now")
    return reasons


def tokens_text(tokens: int) -> str:
    """Write a sequence length short: 16384 → ``16K``, 75600 → ``75.6K``, 512 → ``512``.

    Args:
        tokens: A sequence length.
    """
    if tokens < 1000:
        return str(tokens)
    if tokens % 1024 == 0:
        return f"{tokens // 1024}K"
    return f"{tokens / 1000:.1f}".rstrip("0").rstrip(".") + "K"


def describe_table(table: RouteTable, calibration: Calibration) -> str:
    """Say in one line which backend runs at which lengths, with the measured speedups.

    Args:
        table: The route table of one head dim and dtype.
        calibration: The calibration it belongs to (for the backends' versions).

    Returns:
        E.g. ``SDPA below 16K tokens; SageAttention 2.2.0 from 16K tokens
        (1.46× at 75.6K tokens)``.
    """
    parts: list[str] = []
    for band in table.bands:
        record = calibration.backend(band.backend)
        label = (
            "SDPA"
            if band.backend == "sdpa"
            else backend_label(band.backend, record.version if record else None)
        )
        low, high = band.min_tokens, band.max_tokens
        if low == 0 and high is None:
            span = "at every length"
        elif low == 0 and high is not None:
            span = f"below {tokens_text(high)} tokens"
        elif high is None:
            span = f"from {tokens_text(low)} tokens"
        else:
            span = f"from {tokens_text(low)} to {tokens_text(high)} tokens"
        if band.best_speedup is not None and band.best_at_tokens is not None:
            span += f" ({band.best_speedup:.2f}× at {tokens_text(band.best_at_tokens)} tokens)"
        parts.append(f"{label} {span}")
    return "; ".join(parts) or "SDPA at every length"
