"""The plan of a fleet: one ComfyUI per GPU (`launch --gpus`), as pure data.

`comfy-install launch DIR --gpus all|0,2,...` starts one ComfyUI per chosen GPU.
[`select_gpus`][installer.plan.fleet.select_gpus] turns the option into the GPUs
of the detected report (NVML's indices); [`plan_fleet`][installer.plan.fleet.plan_fleet]
gives each one its port (`--port` for the first, then +1 in the order of the GPUs),
its folder `DIR/.comfy-install/fleet/gpu-N/` (pid file, log, calibration, routing
table) and its ComfyUI arguments (`--cuda-device N`, and a temp folder of its own:
ComfyUI empties its temp folder at start, which would pull files from under a
sibling). GPUs of one model (same name and compute capability) share one
calibration: the first of them is the one `tune` measures, the others get a copy
([`FleetPlan.models`][installer.plan.fleet.FleetPlan.models]).
`--cuda-device N` means NVML's GPU N only with `CUDA_DEVICE_ORDER=PCI_BUS_ID`
(CUDA's own order puts the fastest first), so each member's environment sets it
unless the user did. No I/O: the launch of the set is
[`installer.launch.fleet`][installer.launch.fleet]'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from installer.core.errors import EnvironmentUnsupportedError, UsageError
from installer.core.facts import GpuInfo, GpuReport
from installer.plan.launch_settings import find_option

FLEET_DIR = "fleet"
"""The folder of a fleet's members, in `DIR/.comfy-install/`."""
FLEET_FILE = "fleet.json"
"""The record of the set that was started, in `DIR/.comfy-install/fleet/`."""
DEVICE_ORDER_ENV = "CUDA_DEVICE_ORDER"
DEVICE_ORDER = "PCI_BUS_ID"
"""CUDA numbers GPUs as NVML (and `nvidia-smi`) does only in PCI bus order."""
RESERVED_ARGS = ("--cuda-device", "--port")
"""ComfyUI options a fleet sets per member, so the user may not give them for all."""


@dataclass(frozen=True)
class FleetMember:
    """One ComfyUI of the set: its GPU, its port and its folder."""

    gpu: GpuInfo
    port: int
    folder: str
    """The member's folder name in `DIR/.comfy-install/fleet/`, `gpu-N`."""
    measures: bool
    """True for the first GPU of its model: its calibration is the one the others share."""

    @property
    def model(self) -> str:
        """The GPU model, as people read it: `NVIDIA H100 80GB HBM3 (cc 9.0)`."""
        return f"{self.gpu.name} (cc {self.gpu.cc})"


@dataclass(frozen=True)
class FleetPlan:
    """The set of ComfyUIs one `launch --gpus` starts."""

    members: tuple[FleetMember, ...]

    @property
    def models(self) -> dict[str, tuple[FleetMember, ...]]:
        """The members grouped by GPU model (first member first): one calibration each."""
        groups: dict[str, list[FleetMember]] = {}
        for member in self.members:
            groups.setdefault(member.model, []).append(member)
        return {model: tuple(members) for model, members in groups.items()}

    def as_data(self) -> list[dict[str, object]]:
        """Return the members as JSON-ready data (GPU, name, port, folder)."""
        return [
            {
                "gpu": m.gpu.index,
                "name": m.gpu.name,
                "cc": m.gpu.cc,
                "port": m.port,
                "folder": m.folder,
                "measures": m.measures,
            }
            for m in self.members
        ]


def parse_gpu_selection(text: str) -> tuple[int, ...] | None:
    """Parse `--gpus`: `all` (None) or GPU indices separated by commas (`0,2`).

    Args:
        text: The option's value.

    Returns:
        The indices in the order given, or None for every GPU.

    Raises:
        UsageError: Not `all` and not a list of distinct non-negative numbers.
    """
    value = text.strip().lower()
    if value == "all":
        return None
    words = [w.strip() for w in value.split(",")]
    if not words or any(not w.isdigit() for w in words):
        raise UsageError(
            f"--gpus {text!r} is neither `all` nor GPU numbers separated by commas.",
            "For example --gpus all, or --gpus 0,2 (the numbers nvidia-smi shows).",
        )
    indices = tuple(int(w) for w in words)
    if len(set(indices)) != len(indices):
        raise UsageError(
            f"--gpus {text!r} names a GPU twice.", "Name each GPU once, e.g. --gpus 0,1."
        )
    return indices


def select_gpus(text: str, report: GpuReport) -> tuple[GpuInfo, ...]:
    """Return the GPUs `--gpus` chooses from the detected report, in the order given.

    Args:
        text: The `--gpus` value (`all`, or indices like `0,2`).
        report: The GPUs detected now (NVML's indices).

    Raises:
        UsageError: A malformed value, or an index this machine does not have.
        EnvironmentUnsupportedError: No NVIDIA GPU was detected.
    """
    wanted = parse_gpu_selection(text)
    if not report.has_nvidia:
        raise EnvironmentUnsupportedError(
            f"--gpus needs NVIDIA GPUs, and none was detected ({report.reason}).",
            "Launch without --gpus for one ComfyUI (on the CPU with `-- --cpu`).",
        )
    if wanted is None:
        return tuple(sorted(report.gpus, key=lambda g: g.index))
    by_index = {gpu.index: gpu for gpu in report.gpus}
    missing = [i for i in wanted if i not in by_index]
    if missing:
        have = ", ".join(f"{g.index} ({g.name})" for g in report.gpus)
        raise UsageError(
            f"--gpus names GPU {', '.join(map(str, missing))}, which this machine does not have.",
            f"This machine's GPUs: {have}.",
        )
    return tuple(by_index[i] for i in wanted)


def plan_fleet(gpus: Sequence[GpuInfo], first_port: int) -> FleetPlan:
    """Give each GPU its port (`first_port`, then +1...), its folder and its calibration's role.

    Args:
        gpus: The chosen GPUs, in order.
        first_port: `--port`: the first member's port.

    Raises:
        UsageError: The ports would run past 65535.
    """
    last = first_port + len(gpus) - 1
    if last > 65535:
        raise UsageError(
            f"{len(gpus)} ComfyUIs from port {first_port} need ports up to {last}, past 65535.",
            "Give a lower --port.",
        )
    seen: set[tuple[str, str]] = set()
    members = []
    for position, gpu in enumerate(gpus):
        key = (gpu.name, gpu.cc)
        members.append(FleetMember(gpu, first_port + position, f"gpu-{gpu.index}", key not in seen))
        seen.add(key)
    return FleetPlan(tuple(members))


def member_report(report: GpuReport, gpu: GpuInfo) -> GpuReport:
    """Return the report as one member sees it: only its own GPU.

    A member's decisions (TF32 by compute capability, whether a calibration
    describes its GPU) are made for the one GPU `--cuda-device` leaves it.

    Args:
        report: The machine's report.
        gpu: The member's GPU.
    """
    reason = f"GPU {gpu.index} of {len(report.gpus)} ({report.reason})"
    return replace(report, reason=reason, gpus=(gpu,))


def member_args(extra_args: Sequence[str], member: FleetMember, temp_dir: str) -> tuple[str, ...]:
    """Return a member's ComfyUI arguments: the user's, `--cuda-device N` and its temp folder.

    Args:
        extra_args: The user's ComfyUI arguments (after `--`).
        member: The member.
        temp_dir: The member's folder, for `--temp-directory` (unless the user gave one).

    Raises:
        UsageError: The user's arguments set `--cuda-device` or `--port`, which the fleet sets per
            member.
    """
    for option in RESERVED_ARGS:
        if find_option(extra_args, option)[0]:
            raise UsageError(
                f"{option} in the ComfyUI arguments conflicts with --gpus, which sets it "
                "for each ComfyUI.",
                "Leave it out: --gpus picks the GPUs and --port the first port.",
            )
    words = [*extra_args, "--cuda-device", str(member.gpu.index)]
    if not find_option(extra_args, "--temp-directory")[0]:
        words += ["--temp-directory", temp_dir]
    return tuple(words)


def member_environment(user: Mapping[str, str]) -> dict[str, str]:
    """Return the variables a member's environment adds: the PCI bus order of CUDA's devices.

    Args:
        user: The user's environment (a value set there is kept).
    """
    return {} if DEVICE_ORDER_ENV in user else {DEVICE_ORDER_ENV: DEVICE_ORDER}


def check_distinct_ports(ports: Sequence[int]) -> None:
    """Refuse a set whose members would share a port (a `--port` in `COMFY_EXTRA_ARGS`).

    Args:
        ports: Each member's planned port.

    Raises:
        UsageError: Two members have the same port.
    """
    if len(set(ports)) != len(ports):
        raise UsageError(
            f"the ComfyUIs would share ports ({', '.join(map(str, ports))}): COMFY_EXTRA_ARGS "
            "sets --port for all of them.",
            "Remove --port from COMFY_EXTRA_ARGS; --port gives the first port of the set.",
        )
