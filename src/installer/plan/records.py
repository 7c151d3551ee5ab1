"""The plan as data: the steps, their dependencies, the options, and the `Plan` record.

[`Plan`][installer.plan.records.Plan] is what `install --dry-run --json` prints and
what the executor runs; [`InstallOptions`][installer.plan.records.InstallOptions] is
what the user asked for. How a plan is computed lives in
[`installer.plan.build`][installer.plan.build].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from installer import __version__
from installer.core.config import PLATFORMS, CustomNode, IndexOptions
from installer.core.errors import UsageError
from installer.core.generations import owning_install
from installer.plan.optimizations import PlannedOptimization
from installer.plan.preflight import Blocker

PLAN_SCHEMA_VERSION = 1


STEPS: tuple[tuple[str, str], ...] = (
    ("preflight", "check the machine and DIR"),
    ("uv", "find uv"),
    ("python", "find or install Python"),
    ("venv", "create the virtual environment"),
    ("comfyui", "clone ComfyUI at the pinned commit"),
    ("gpu", "record the GPU"),
    ("torch", "install torch, torchvision, torchaudio"),
    ("requirements", "install ComfyUI's requirements (torch held)"),
    ("custom_nodes", "install custom nodes (torch held)"),
    ("optimizations", "install accelerator packages (torch held)"),
    ("launchers", "write the launcher scripts"),
    ("models", "download models"),
    ("verify", "check that everything imports and starts"),
)


STEP_IDS: tuple[str, ...] = tuple(step_id for step_id, _ in STEPS)


DEPENDS: dict[str, tuple[str, ...]] = {
    "preflight": (),
    "uv": (),
    "python": ("uv",),
    "venv": ("python",),
    "comfyui": (),
    "gpu": (),
    "torch": ("venv",),
    "requirements": ("venv", "torch", "comfyui"),
    "custom_nodes": ("comfyui", "requirements"),
    "optimizations": ("torch", "requirements"),
    "launchers": (),
    "models": ("comfyui",),
    "verify": ("venv", "comfyui", "torch", "requirements", "custom_nodes", "optimizations"),
}


Action = Literal["run", "skip", "done"]


class RecordedNode(BaseModel):
    """A custom node of DIR's `nodes.json` (`nodes add`, a snapshot restore) a new generation keeps.

    Its folder stays in `DIR/ComfyUI/custom_nodes`; its requirements go into the new venv as
    they were recorded (the skips and `--no-deps` it was added with applied).
    """

    model_config = ConfigDict(frozen=True)

    name: str
    commit: str
    requirements: tuple[str, ...] = ()
    skipped_requirements: tuple[str, ...] = ()
    no_deps: bool = False

    def describe(self) -> str:
        """One line for the plan: the node and what of it goes into the venv."""
        if self.requirements:
            kept = ", ".join(self.requirements)
        elif self.no_deps:
            kept = "none of its requirements (--no-deps)"
        else:
            kept = "no requirements"
        skipped = f"; skipped: {', '.join(self.skipped_requirements)}" if (
            self.skipped_requirements and not self.no_deps
        ) else ""  # fmt: skip
        return f"{self.name} @ {self.commit[:12]} (recorded in nodes.json): {kept}{skipped}"


@dataclass(frozen=True)
class InstallOptions:
    """What the user asked for on the command line (`comfy-install install`)."""

    install_dir: Path
    config_path: Path | None = None
    tools_manifest_path: Path | None = None
    gpu: str = "auto"
    cuda_driver: str | None = None
    cuda_toolkit: str | None = None
    """`--cuda-toolkit X.Y|none`: plan as if this CUDA toolkit (or none) were installed."""
    platform: str | None = None
    python: str | None = None
    comfyui_ref: str | None = None
    comfyui_url: str | None = None
    torch_index: str = "auto"
    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    only: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()
    force: tuple[str, ...] = ()
    offline: bool = False
    allow_unverified: bool = False
    dry_run: bool = False
    min_free_gb: float | None = None
    command_line: tuple[str, ...] = ()
    """The arguments as typed (after `comfy-install`), for the hint to run them again."""
    no_lock: bool = False
    lock_dir: Path | None = None
    tune: bool = True
    """`--tune/--no-tune`: measure attention on this machine's GPU at the end."""
    given: frozenset[str] = frozenset()
    """Names of the fields above the user gave on the command line (not left at defaults)."""
    recorded: frozenset[str] = frozenset()
    """Names of the fields taken from the inputs the install recorded (not given this time)."""
    withheld: frozenset[str] = frozenset()
    """Names of recorded fields not reused: they held a secret, which is never stored."""
    next_command: str | None = None
    """The command the summary names next (default: `comfy-install launch DIR`)."""
    keep_nodes: bool = False
    """A later generation's step 9 uses configured nodes' shared folders at other commits as
    they are (`snapshot restore --keep-nodes`) instead of refusing them."""
    recorded_nodes: tuple[RecordedNode, ...] = ()
    """The nodes of DIR's `nodes.json` whose requirements step 9 installs too (`update`: a new
    generation keeps every node the install has); none for `install` itself, whose venv got
    them when they were added."""

    def typed_command(self) -> list[str]:
        """Return the arguments the user typed (after `comfy-install`), or `install DIR`.

        `install DIR` stands in when none were recorded (the install was started through the
        API); DIR is the install's, also when the options are for one of its generations.
        """
        return list(self.command_line) or ["install", str(owning_install(self.install_dir))]


class PlannedGpu(BaseModel):
    """One GPU as the plan saw it."""

    index: int
    name: str
    cc: str
    vram_total_bytes: int | None = None
    vram_free_bytes: int | None = None
    uuid: str | None = None
    pci_bus_id: str | None = None


class GpuPlan(BaseModel):
    """The GPUs the plan is made for, and how they were learned."""

    source: str
    reason: str
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    planning_cc: str | None = None
    gpus: list[PlannedGpu] = Field(default_factory=list)


class TorchPlan(BaseModel):
    """The torch build, its index, and why."""

    variant: str
    index_url: str | None = Field(description="None: uv's default index.")
    cuda: str | None = Field(description="CUDA build name (cu128), None for CPU.")
    packages: list[str]
    version: str
    reason: str
    installed: str | None = Field(default=None, description="Torch already in the venv.")
    minor_version_compat: str | None = Field(
        default=None,
        description="Set when the build runs on an older driver of its CUDA major (CUDA "
        "minor-version compatibility): the limits and the driver that lifts them.",
    )
    advice: str | None = Field(
        default=None,
        description="What would give this GPU a CUDA build, or lift the limits (a driver).",
    )


class ComfyUIPlan(BaseModel):
    """Which ComfyUI source and commit."""

    url: str
    ref: str
    commit: str | None = Field(description="The pin HEAD must equal; None for a --comfyui-ref.")


class LockPlan(BaseModel):
    """Whether step 8 installs a lock file or resolves live, and why."""

    path: str | None = Field(description="The lock step 8 installs; None: resolved live.")
    reason: str
    inputs_sha256: str | None = None


class PathsPlan(BaseModel):
    """Where the install's parts live (relative paths in the target OS's form)."""

    install_dir: str
    venv: str
    venv_python: str
    comfyui: str
    state_dir: str
    launcher: str


class PlannedInput(BaseModel):
    """One input of the plan that the user chose: given now, or recorded by the install."""

    option: str = Field(description="The command-line option, e.g. `--comfyui-url`.")
    value: str
    source: Literal["given", "recorded"] = Field(
        description="given: on this command line; recorded: reused from the install's state."
    )


class PlannedStep(BaseModel):
    """One numbered step and what will happen to it."""

    number: int
    id: str
    title: str
    action: Action
    reason: str
    cascade: bool = Field(
        default=False,
        description="Runs only because a dependency runs; skipped if that changes nothing.",
    )
    details: list[str] = Field(default_factory=list)
    inputs: dict[str, Any] = Field(default_factory=dict)
    fingerprint: str = ""
    depends_on: list[str] = Field(default_factory=list)


class TunePlan(BaseModel):
    """Whether `install` measures attention at its end (`comfy-install tune`), and why."""

    action: Literal["run", "skip"]
    reason: str


class Plan(BaseModel):
    """Everything `install` will do, decided before anything is done."""

    schema_version: int = PLAN_SCHEMA_VERSION
    tool_version: str = __version__
    platform: str
    install_dir: str
    paths: PathsPlan
    python: str
    python_supported: str
    min_free_gb: float
    comfyui: ComfyUIPlan
    gpu: GpuPlan
    torch: TorchPlan
    index: IndexOptions
    lock: LockPlan | None = None
    inputs: list[PlannedInput] = Field(
        default_factory=list,
        description="The options that shape this plan: given now, or reused from the record.",
    )
    custom_nodes: list[CustomNode] = Field(default_factory=list)
    removed_custom_nodes: list[str] = Field(
        default_factory=list,
        description="Configured nodes step 9 leaves out: `nodes remove` took them out of DIR.",
    )
    recorded_nodes: list[RecordedNode] = Field(
        default_factory=list,
        description="Nodes of DIR's nodes.json whose recorded requirements step 9 installs.",
    )
    optimizations: list[PlannedOptimization] = Field(default_factory=list)
    models: int = 0
    steps: list[PlannedStep] = Field(default_factory=list)
    tune: TunePlan | None = Field(
        default=None,
        description="The measuring of attention after the last step (None: not decided).",
    )
    warnings: list[str] = Field(default_factory=list)
    blocking: list[Blocker] = Field(
        default_factory=list,
        description="What stops the install before its first step (exit code 3); empty: nothing.",
    )

    def step(self, step_id: str) -> PlannedStep:
        """Return the planned step with id ``step_id``.

        Args:
            step_id: A step id from `STEP_IDS`, e.g. `torch`.

        Raises:
            KeyError: The plan has no step ``step_id``.
        """
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    @property
    def to_run(self) -> list[PlannedStep]:
        """The steps the executor will run."""
        return [step for step in self.steps if step.action == "run"]


def parse_steps(values: Sequence[str], flag: str) -> tuple[str, ...]:
    """Split ``--only a,b`` style values and check every name is a step.

    Args:
        values: The option's values as given (it may repeat), each one name or several separated by
            commas.
        flag: The option, for the message, e.g. `--only`.

    Returns:
        The step names in the order given, empty parts dropped.

    Raises:
        UsageError: An unknown step name (exit code 2).
    """
    names = tuple(part.strip() for value in values for part in value.split(",") if part.strip())
    unknown = [name for name in names if name not in STEP_IDS]
    if unknown:
        raise UsageError(
            f"{flag}: unknown step {', '.join(unknown)}.", f"Steps are: {', '.join(STEP_IDS)}."
        )
    return names


def target_platform(requested: str | None, detected: str) -> str:
    """Return the platform a plan is for: `--platform` (any case) or the detected one.

    `--platform Windows` and `--platform LINUX` are accepted as `windows` and `linux`
    (like `--gpu`, the value is a name, not a path: its case carries nothing).

    Args:
        requested: `--platform` as given, or None.
        detected: This machine's platform.

    Raises:
        UsageError: Anything but linux or windows (exit code 2).
    """
    if requested is None:
        return detected
    chosen = requested.strip().lower()
    if chosen not in PLATFORMS:
        raise UsageError(
            f"--platform {requested}: not a supported platform.",
            "comfy-install installs on linux and windows; pass --platform linux or "
            "--platform windows.",
        )
    return chosen


def install_tune_skip(gpu_option: str, only: Sequence[str]) -> str | None:
    """Why `install` does not measure attention at its end, or None when it may.

    Args:
        gpu_option: The install's `--gpu` (only `auto` is this machine's GPU; the others plan
            for another GPU, or none).
        only: The install's `--only` steps (a partial install is not measured).
    """
    if gpu_option != "auto":
        return f"--gpu {gpu_option}: not this machine's GPU"
    if only:
        return "--only: a partial install"
    return None


def plan_install_tune(options: InstallOptions, has_nvidia: bool, gpu_reason: str) -> TunePlan:
    """Decide whether `install` measures attention at its end (the plan's `tune`).

    Only a whole install for this machine's NVIDIA GPU is measured; at run time a calibration
    that still describes the machine is kept (`tune` then measures nothing).

    Args:
        options: The install options; `tune`, `gpu` and `only` are read.
        has_nvidia: The plan's GPUs include an NVIDIA one.
        gpu_reason: How the GPUs were learned (shown when there is none).
    """
    skip = "--no-tune" if not options.tune else install_tune_skip(options.gpu, options.only)
    if skip is None and not has_nvidia:
        skip = f"no NVIDIA GPU ({gpu_reason})"
    if skip is not None:
        return TunePlan(action="skip", reason=skip)
    return TunePlan(
        action="run",
        reason="measure attention on this GPU at the end (comfy-install tune), "
        "unless the calibration is current",
    )
