"""Whether a calibration can be used now, and the routing table made from it (pure).

The one check that `launch`, `status`, `doctor` and install's measuring share:
[`usable_calibration`][installer.attention.rules.routing.usable_calibration] says whether
the install's calibration still describes this machine (its file as read, the venv's
package versions, the GPUs now; [`stale_reasons`][installer.attention.rules.tables.stale_reasons]
finds every difference), and
[`calibration_state`][installer.attention.rules.routing.calibration_state] says it for
people (``fresh``, ``stale``, ``missing``, ``unreadable``, ``unchecked``).
[`route_table`][installer.attention.rules.routing.route_table] turns a usable calibration
into the routing table the shim follows, in the one schema both read
([`installer.attention.shim.routes`][installer.attention.shim.routes]): per head dim and
dtype, the bands of sequence lengths that go to a backend other than SDPA, without the
backends that may not be routed to.

Pure: the calibration, the venv's package versions and the GPU report come in as data.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from installer.attention.rules.records import METHOD_TEXT, Calibration, MachineNow
from installer.attention.rules.tables import describe_table, stale_reasons
from installer.attention.shim.routes import COUNTS_FILE, ROUTES_FILE, routes_data
from installer.core.facts import GpuReport

if TYPE_CHECKING:
    from installer.attention.shim.routes import BandData, RouteData, RoutesData


@dataclass(frozen=True)
class AttentionProbe:
    """The installed versions of torch and the attention packages in the venv (not imported)."""

    versions: Mapping[str, str | None]

    def version(self, distribution: str) -> str | None:
        """Return the installed version of ``distribution``, None when it is not installed.

        Args:
            distribution: A distribution name, e.g. ``xformers``.
        """
        return self.versions.get(distribution)


@dataclass(frozen=True)
class CalibrationRead:
    """The install's calibration file as read: the calibration, nothing, or why not."""

    path: Path
    calibration: Calibration | None = None
    problem: str | None = None


def usable_calibration(
    read: CalibrationRead | None, probe: AttentionProbe | None, gpu: GpuReport
) -> tuple[Calibration | None, str]:
    """Return the calibration when it describes this machine now, else None and why not.

    Args:
        read: The calibration file as read (None: not looked for).
        probe: The venv's package versions (None: the venv could not be asked).
        gpu: The GPU report now.

    Returns:
        ``(calibration, summary)`` when usable (the summary says when and on
        what it was measured), else ``(None, reason)``.
    """
    if read is None or (read.calibration is None and read.problem is None):
        where = read.path if read is not None else "DIR/.comfy-install/calibration.json"
        return None, f"no calibration ({where} does not exist; `comfy-install tune DIR` makes it)"
    if read.calibration is None:
        return None, f"the calibration cannot be used: {read.problem}"
    if probe is None:
        return None, "the venv's packages could not be read, so the calibration cannot be checked"
    calibration = read.calibration
    now = MachineNow(
        gpus=tuple((card.name, card.cc) for card in gpu.gpus),
        driver=gpu.driver_version,
        versions=probe.versions,
    )
    measured = calibration.measured_on
    day = measured.measured_at[:10]
    stale = stale_reasons(calibration, now)
    if stale:
        return None, (
            f"the calibration of {day} is stale ({'; '.join(stale)}); "
            "run `comfy-install tune DIR` again"
        )
    how = METHOD_TEXT[calibration.method]
    return calibration, f"measured {day} on this GPU, an {measured.gpu_name} ({how})"


CalibrationStatus = Literal["fresh", "stale", "missing", "unreadable", "unchecked"]


@dataclass(frozen=True)
class CalibrationState:
    """Whether the install's calibration can be used now, for `status` and `doctor`."""

    status: CalibrationStatus
    detail: str
    hint: str | None = None


def calibration_state(
    read: CalibrationRead | None, probe: AttentionProbe | None, gpu: GpuReport, install_dir: Path
) -> CalibrationState:
    """Say whether the calibration describes this machine now, as `launch` will judge it.

    Args:
        read: The calibration file as read.
        probe: The venv's package versions (None: the venv could not be asked).
        gpu: The GPU report now.
        install_dir: DIR, for the hint.

    Returns:
        ``fresh`` (with when and where it was measured), ``stale`` (with every
        difference), ``missing``, ``unreadable`` or ``unchecked`` (the venv did not answer).
    """
    tune = f"comfy-install tune {install_dir}"
    calibration, summary = usable_calibration(read, probe, gpu)
    if calibration is not None:
        routed = sum(1 for t in calibration.tables if any(b.backend != "sdpa" for b in t.bands))
        return CalibrationState(
            "fresh", f"{summary}; {routed} of {len(calibration.tables)} head dim/dtype pairs routed"
        )
    if read is None or (read.calibration is None and read.problem is None):
        return CalibrationState("missing", summary, tune)
    if read.calibration is None:
        return CalibrationState("unreadable", summary, tune)
    if probe is None:
        return CalibrationState("unchecked", summary, None)
    return CalibrationState("stale", summary, tune)


@dataclass(frozen=True)
class RouteTable:
    """The routing table made from a calibration, where it goes, and one line per table."""

    data: RoutesData | None
    """The table for the shim (JSON-ready); None when nothing is routed."""
    path: Path
    details: tuple[str, ...]
    """One line per head dim and dtype: which backend at which lengths, measured how."""


SAME_LIBRARY = {"sage_per_warp": "sageattention"}
"""A route that runs another backend's library: disabled with it (a broken SageAttention)."""


def route_table(read_path: Path, calibration: Calibration, disabled: Set[str]) -> RouteTable:
    """Return the routing table of a usable calibration, without the ``disabled`` backends.

    Args:
        read_path: The calibration's file (the table and the call counters go next to it).
        calibration: A calibration that describes this machine now.
        disabled: Backends never routed to (broken on this GPU, or turned off by the user).

    Returns:
        The table (None when no band is left: SDPA takes every call), its path, and the
        lines for people.
    """
    routes: list[RouteData] = []
    details: list[str] = []
    for table in calibration.tables:
        bands: list[BandData] = [
            {"min_tokens": b.min_tokens, "max_tokens": b.max_tokens, "backend": b.backend}
            for b in table.bands
            if b.backend != "sdpa"
            and b.backend not in disabled
            and SAME_LIBRARY.get(b.backend) not in disabled
        ]
        if bands:
            routes.append({"head_dim": table.head_dim, "dtype": table.dtype, "bands": bands})
        details.append(f"D={table.head_dim} {table.dtype}: {describe_table(table, calibration)}")
    data = (
        routes_data(
            routes,
            calibrated_at=calibration.measured_on.measured_at,
            gpu=calibration.measured_on.gpu_name,
            counts_file=str(read_path.with_name(COUNTS_FILE)),
        )
        if routes
        else None
    )
    return RouteTable(data, read_path.with_name(ROUTES_FILE), tuple(details))
