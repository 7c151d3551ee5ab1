"""What `comfy-install tune` measured: the calibration of attention on this GPU, as data.

`tune` times every working attention backend against torch SDPA over a sweep
of sequence lengths, head dims and dtypes, and stores the result in
`DIR/.comfy-install/calibration.json`: the raw medians
([`CalibrationPoint`][installer.attention.rules.records.CalibrationPoint]), per head
dim and dtype the fastest correct backend for each band of sequence lengths
with the crossovers between them
([`RouteTable`][installer.attention.rules.records.RouteTable]), and what it was
measured on ([`MeasuredOn`][installer.attention.rules.records.MeasuredOn]: GPU,
driver, torch and every backend's version), so that a change of any of them
can mark it stale. [`MachineNow`][installer.attention.rules.records.MachineNow] is
the same facts read again at launch. The rules that make tables from points
and decide staleness are pure and live in
[`installer.attention.rules.tables`][installer.attention.rules.tables]; reading and writing
the file is [`installer.attention.files`][installer.attention.files]'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

CALIBRATION_SCHEMA_VERSION = 1
CALIBRATION_FILE = "calibration.json"
"""The file's name in `DIR/.comfy-install/`."""

BACKEND_LABELS = {
    "sdpa": "torch SDPA",
    "cudnn": "SDPA cuDNN",
    "flash": "SDPA flash",
    "efficient": "SDPA memory-efficient",
    "xformers": "xformers",
    "sageattention": "SageAttention",
    "sage_per_warp": "SageAttention 2 per-warp (sm90)",
    "sageattn3": "SageAttention 3",
    "comfy_kitchen_int8": "comfy-kitchen int8",
}
"""Human names of the attention backends the benchmark and `tune` measure."""

WATCHED_DISTRIBUTIONS = (
    "torch",
    "xformers",
    "sageattention",
    "sageattn3",
    "comfy-kitchen",
    "triton",
)
"""Distributions whose version, when it changes, makes a calibration stale."""

MeasuringMethod = Literal["comfyui", "kernels"]
METHOD_TEXT = {
    "comfyui": "through ComfyUI's attention functions",
    "kernels": "raw kernels",
}
"""How each method is named to people."""
PointStatus = Literal["ok", "wrong", "error", "oom"]
BackendStatus = Literal["working", "broken", "absent"]


def backend_label(name: str, version: str | None = None) -> str:
    """Return a backend's human name, with its version for all but SDPA.

    Args:
        name: The backend, e.g. ``sageattention``.
        version: Its installed version, if known (``2.2.0``).
    """
    base = BACKEND_LABELS.get(name, name)
    return f"{base} {version}" if version and name != "sdpa" else base


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class CalibrationPoint(_Frozen):
    """One raw measurement: a backend at one sequence length, head dim and dtype."""

    backend: str
    tokens: int
    """Sequence length N (query and key tokens)."""
    head_dim: int
    dtype: str
    batch: int
    heads: int
    status: PointStatus
    median_ms: float | None = None
    speedup: float | None = None
    """SDPA's median time over this one's (1.4: 40% faster than SDPA)."""
    max_abs_error: float | None = None
    error: str | None = None


class Band(_Frozen):
    """Sequence lengths ``min_tokens <= N < max_tokens`` and the backend chosen for them."""

    min_tokens: int
    max_tokens: int | None = None
    """None: no upper end (the last band reaches beyond the longest length measured)."""
    backend: str
    least_speedup: float | None = None
    """The smallest speedup over SDPA measured inside the band (None for SDPA itself)."""
    best_speedup: float | None = None
    best_at_tokens: int | None = None

    def holds(self, tokens: int) -> bool:
        """True when ``tokens`` falls in this band.

        Args:
            tokens: A sequence length.
        """
        return self.min_tokens <= tokens and (self.max_tokens is None or tokens < self.max_tokens)


class RouteTable(_Frozen):
    """For one head dim and dtype: the bands of sequence lengths and their backends."""

    head_dim: int
    dtype: str
    bands: list[Band] = Field(default_factory=list)
    """Ordered, covering every length from 0 up; SDPA where nothing measured faster."""
    crossovers: list[int] = Field(default_factory=list)
    """The lengths where the chosen backend changes."""

    def backend_for(self, tokens: int) -> str:
        """Return the backend chosen for ``tokens`` (SDPA when no band holds it).

        Args:
            tokens: A sequence length.
        """
        return next((band.backend for band in self.bands if band.holds(tokens)), "sdpa")


class BackendRecord(_Frozen):
    """An attention backend as `tune` found it: working, broken (why) or absent."""

    name: str
    status: BackendStatus
    version: str | None = None
    reason: str | None = None


class MeasuredOn(_Frozen):
    """What a calibration was measured on; a change of any of it makes the calibration stale."""

    gpu_name: str
    gpu_cc: str | None = None
    driver: str | None = None
    torch: str
    torch_cuda: str | None = None
    versions: dict[str, str | None] = Field(default_factory=dict)
    """Installed version of each watched distribution (None: not installed)."""
    measured_at: str
    budget_s: float
    took_s: float | None = None


class Calibration(_Frozen):
    """`DIR/.comfy-install/calibration.json`: the measured attention of this install's GPU."""

    schema_version: int = CALIBRATION_SCHEMA_VERSION
    tool_version: str
    measured_on: MeasuredOn
    method: MeasuringMethod = "kernels"
    """``comfyui``: each backend timed through the ComfyUI function the router calls;
    ``kernels``: the raw kernels (DIR/ComfyUI did not import; files of older versions)."""
    method_reason: str | None = None
    """Why ComfyUI's functions were not used, for ``kernels``."""
    margin: float
    """How much faster than SDPA a backend had to be to be chosen (1.05: 5%)."""
    backends: list[BackendRecord] = Field(default_factory=list)
    tables: list[RouteTable] = Field(default_factory=list)
    points: list[CalibrationPoint] = Field(default_factory=list)
    skipped: list[str] = Field(default_factory=list)
    """Shapes not measured, each with the reason (a spent time budget)."""

    def table(self, head_dim: int, dtype: str) -> RouteTable | None:
        """Return the table of ``head_dim`` and ``dtype``, if that pair was measured.

        Args:
            head_dim: The head dimension D.
            dtype: ``fp16`` or ``bf16``.
        """
        return next((t for t in self.tables if (t.head_dim, t.dtype) == (head_dim, dtype)), None)

    def backend(self, name: str) -> BackendRecord | None:
        """Return what `tune` found about backend ``name``, if it looked.

        Args:
            name: A backend, e.g. ``xformers``.
        """
        return next((b for b in self.backends if b.name == name), None)


@dataclass(frozen=True)
class MachineNow:
    """The facts a calibration is checked against at launch: this machine as it is now."""

    gpus: tuple[tuple[str, str], ...]
    """``(name, compute capability)`` of each GPU found."""
    driver: str | None
    versions: Mapping[str, str | None] = field(default_factory=dict)
    """Installed version of each watched distribution in the venv (torch too)."""


def parse_calibration(text: str) -> Calibration:
    """Read a calibration from its JSON text.

    Args:
        text: The file's content.

    Returns:
        The calibration.

    Raises:
        ValueError: The text is not JSON, not a calibration, or of a newer schema;
            the message says which.
    """
    try:
        calibration = Calibration.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the top level"
        raise ValueError(f"not a calibration ({where}: {first['msg']})") from None
    if calibration.schema_version > CALIBRATION_SCHEMA_VERSION:
        raise ValueError(
            f"written by a newer comfy-install (schema {calibration.schema_version}, "
            f"this one reads {CALIBRATION_SCHEMA_VERSION})"
        )
    return calibration


def dump_calibration(calibration: Calibration) -> str:
    """Return a calibration as the JSON text of its file (indented, newline at the end).

    Args:
        calibration: The calibration.
    """
    return calibration.model_dump_json(indent=2) + "\n"
