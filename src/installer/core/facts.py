"""What detection found, as plain data: GPUs, the machine, an existing install.

The edges layer ([`installer.edges`][installer.edges]) fills these frozen records by asking
NVML, the operating system and the install folder; the planner
([`installer.plan`][installer.plan]) reads them and nothing else, so every decision
can be made (and tested) for a machine that is not this one. The pure helpers for
Windows and POSIX layouts (where a venv keeps its Python, what a launcher script is
called) live here too, as functions of the target platform.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Literal

from packaging.version import InvalidVersion, Version

from installer.core.records import InstallState

if TYPE_CHECKING:
    from installer.core.lockfile import LockHeader

Source = Literal["nvml", "nvidia-smi", "override", "none"]


@dataclass(frozen=True)
class GpuInfo:
    """One NVIDIA GPU."""

    index: int
    name: str
    cc: str
    vram_total_bytes: int | None = None
    vram_free_bytes: int | None = None
    uuid: str | None = None
    pci_bus_id: str | None = None

    @property
    def cc_version(self) -> Version:
        """The compute capability as a comparable version (9.0 → Version('9.0'))."""
        return Version(self.cc)

    @property
    def vram_gib(self) -> float | None:
        """Total VRAM in GiB, when known."""
        return None if self.vram_total_bytes is None else self.vram_total_bytes / 2**30


@dataclass(frozen=True)
class GpuReport:
    """The GPUs found (possibly none), the driver, and how this was learned."""

    source: Source
    reason: str
    gpus: tuple[GpuInfo, ...] = ()
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    warnings: tuple[str, ...] = field(default=())

    @property
    def has_nvidia(self) -> bool:
        """True when at least one NVIDIA GPU is present (or assumed by override)."""
        return bool(self.gpus)

    @property
    def planning_cc(self) -> Version | None:
        """The compute capability to plan for: the lowest among the GPUs.

        Builds and wheels chosen for the lowest capability run on every GPU of
        the machine; planning for the highest would leave the others without
        kernels.
        """
        if not self.gpus:
            return None
        return min(gpu.cc_version for gpu in self.gpus)

    @property
    def ccs(self) -> tuple[Version, ...]:
        """Every distinct compute capability present, lowest first.

        A build or wheel must have kernels for each of them to serve the
        whole machine.
        """
        return tuple(sorted({gpu.cc_version for gpu in self.gpus}))

    @property
    def cuda_driver(self) -> Version | None:
        """The newest CUDA version the driver supports, as a version."""
        return Version(self.cuda_driver_version) if self.cuda_driver_version else None


def gpu_override(cc: str, cuda_driver: str | None) -> GpuReport:
    """Return a report for a GPU given on the command line (``--gpu CC``).

    Args:
        cc: Compute capability like ``8.9``.
        cuda_driver: Newest CUDA the target driver supports (``--cuda-driver``);
            when None, assumed new enough for every CUDA build.
    """
    reason = f"--gpu {cc}" + (f" --cuda-driver {cuda_driver}" if cuda_driver else "")
    gpu = GpuInfo(index=0, name=f"GPU with compute capability {cc} (from --gpu)", cc=cc)
    return GpuReport("override", f"given on the command line ({reason})", (gpu,), None, cuda_driver)


GPU_NONE_REASON = "--gpu none: planning for the CPU"
"""The reason of the report for `--gpu none`: the gpu step records it, and `launch` reads it."""


def no_gpu(reason: str) -> GpuReport:
    """Return a report with no GPU and the reason (``--gpu none``).

    Args:
        reason: Why there is no GPU; the plan and `doctor` show it.
    """
    return GpuReport("none", reason)


SUPPORTED_PLATFORMS = ("linux", "windows")


@dataclass(frozen=True)
class Tool:
    """An external program: where it is, its version, or why it is unusable."""

    name: str
    path: str | None = None
    version: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the tool was found and answered."""
        return self.path is not None and self.error is None


@dataclass(frozen=True)
class TargetDir:
    """Where an install would write, read before anything is written (for the preflight checks).

    Attributes:
        path: DIR.
        exists: DIR exists.
        is_dir: DIR exists and is a directory.
        nearest: The nearest existing path on the way to `DIR/.comfy-install` (that folder
            itself, DIR, or the ancestor of DIR the install would create folders in).
        nearest_is_dir: ``nearest`` is a directory (not a file in the way).
        writable: New entries can be made in ``nearest`` (write and search permission, and a
            file system that is not read-only), as the operating system's `access` says.
    """

    path: str
    exists: bool
    is_dir: bool
    nearest: str
    nearest_is_dir: bool
    writable: bool


@dataclass(frozen=True)
class Environment:
    """The machine the installer runs on, as far as planning needs it."""

    platform: str
    arch: str
    os_name: str
    python_version: str
    python_executable: str
    free_disk_bytes: int | None
    disk_path: str
    git: Tool
    uv: Tool
    compiler: Tool
    nvcc: Tool
    cpu_count: int | None = None
    memory_total_bytes: int | None = None
    target: TargetDir | None = None
    """Where DIR would be written (None: not looked at)."""

    def build_host(self, *, offline: bool = False) -> BuildHost:
        """Return what a source build on this machine could use.

        Args:
            offline: `--offline` was given (a build that clones from the network cannot run).
        """
        return BuildHost(
            compiler=self.compiler,
            nvcc=self.nvcc,
            git=self.git,
            cpu_count=self.cpu_count,
            memory_total_bytes=self.memory_total_bytes,
            offline=offline,
        )


@dataclass(frozen=True)
class BuildHost:
    """What compiling a CUDA extension here can use: compilers, git, cores, memory.

    The planner reads it to decide whether SageAttention can be built from its
    pinned source, with how many parallel jobs, and how long that takes.
    """

    compiler: Tool
    nvcc: Tool
    git: Tool = field(default_factory=lambda: Tool("git", path="git", version="?"))
    cpu_count: int | None = None
    memory_total_bytes: int | None = None
    offline: bool = False

    @property
    def nvcc_version(self) -> Version | None:
        """The release of nvcc (`13.0`) as a version, None when no usable nvcc was found."""
        if not self.nvcc.ok or not self.nvcc.version:
            return None
        try:
            return Version(self.nvcc.version)
        except InvalidVersion:
            return None

    @property
    def cuda_home(self) -> str | None:
        """The toolkit folder holding `bin/nvcc` (what torch's builder calls CUDA_HOME)."""
        if not self.nvcc.ok or not self.nvcc.path or "/" not in self.nvcc.path.replace("\\", "/"):
            return None
        return str(PurePath(self.nvcc.path).parent.parent)


def pure_path(platform: str, *parts: str | PurePath) -> PurePath:
    """Return a pure path of the target platform's flavour.

    Args:
        platform: `windows` for a Windows path; anything else gives a POSIX one.
        *parts: The path's segments, joined as `PurePath` joins them.
    """
    cls = PureWindowsPath if platform == "windows" else PurePosixPath
    return cls(*parts)


def venv_python(venv_dir: PurePath | str, platform: str) -> PurePath:
    r"""Return the interpreter path inside a venv for ``platform``.

    `venv/bin/python` on POSIX, `venv\\Scripts\\python.exe` on Windows.

    Args:
        venv_dir: The venv folder (it need not exist).
        platform: The target OS, `linux` or `windows` (anything else: POSIX).
    """
    if platform == "windows":
        return PureWindowsPath(venv_dir) / "Scripts" / "python.exe"
    return PurePosixPath(venv_dir) / "bin" / "python"


def launcher_name(platform: str) -> str:
    """Return the file name of the generated launcher script for ``platform``.

    Args:
        platform: The target OS, `linux` or `windows` (anything else: POSIX).
    """
    return "run_comfyui.bat" if platform == "windows" else "run_comfyui.sh"


@dataclass(frozen=True)
class TorchInstalled:
    """The torch found in a venv."""

    version: str
    cuda: str | None

    @property
    def build(self) -> str | None:
        """The CUDA build name (`cu128`), or None for a CPU build."""
        return "cu" + self.cuda.replace(".", "") if self.cuda else None


@dataclass(frozen=True)
class InstallProbe:
    """The facts about an existing install that planning needs."""

    install_dir: Path
    state: InstallState | None = None
    state_problem: str | None = None
    venv_python_exists: bool = False
    venv_python_version: str | None = None
    recorded_python_exists: bool = False
    comfyui_head: str | None = None
    installed: dict[str, str] = field(default_factory=dict)
    torch: TorchInstalled | None = None
    existing_files: frozenset[str] = frozenset()
    lock_headers: Mapping[str, LockHeader] = field(default_factory=dict)
    lock_problems: Mapping[str, str] = field(default_factory=dict)
    """Lock files that cannot be used, by target name: `PATH: what is wrong`."""
    comfyui_requirements: frozenset[str] | None = None
    """Canonical names in the checkout's `requirements.txt`; None without a checkout."""
    removed_nodes: frozenset[str] = frozenset()
    """Custom nodes `nodes remove` took out of DIR (nodes.json) and no `nodes add` brought back:
    step 9 does not clone them again, though dependencies.json lists them."""


@dataclass(frozen=True)
class KitchenBackend:
    """One back end of comfy-kitchen as it reports itself (`comfy_kitchen.list_backends()`)."""

    name: str
    available: bool
    disabled: bool = False
    reason: str | None = None

    def describe(self) -> str:
        """`cuda available`, or `triton unavailable (why)`."""
        if self.available and not self.disabled:
            return f"{self.name} available"
        if self.available:
            return f"{self.name} available but disabled"
        return f"{self.name} unavailable ({self.reason or 'no reason given'})"


@dataclass(frozen=True)
class KitchenReport:
    """comfy-kitchen (the kernel library ComfyUI v0.33.0 requires) in a venv: its back ends."""

    installed: bool
    version: str | None = None
    torch_cuda: str | None = None
    backends: tuple[KitchenBackend, ...] = ()
    error: str | None = None

    def backend(self, name: str) -> KitchenBackend | None:
        """The back end called ``name`` (`cuda`, `triton`, `eager`, ...), if it reported one.

        Args:
            name: The back end's name.
        """
        return next((b for b in self.backends if b.name == name), None)

    @property
    def cuda_in_comfyui(self) -> bool:
        """True when ComfyUI (v0.33.0) will use the cuda back end: it loads, torch is CUDA 13+."""
        cuda = self.backend("cuda")
        major = int(self.torch_cuda.split(".")[0]) if self.torch_cuda else 0
        return cuda is not None and cuda.available and not cuda.disabled and major >= 13

    @property
    def comfyui_notes(self) -> tuple[str, ...]:
        """What ComfyUI (v0.33.0, `comfy/quant_ops.py`) does to these back ends at start-up."""
        notes: list[str] = []
        cuda = self.backend("cuda")
        major = int(self.torch_cuda.split(".")[0]) if self.torch_cuda else None
        if cuda is not None and cuda.available and major is not None and major < 13:
            notes.append(
                "ComfyUI turns the cuda back end off with a torch below CUDA 13 (it asks for "
                "a cu130 torch)"
            )
        triton = self.backend("triton")
        if triton is not None and triton.available:
            notes.append("ComfyUI uses the triton back end only with --enable-triton-backend")
        return tuple(notes)

    def summary(self) -> str:
        """One line: the version and each back end, or why comfy-kitchen cannot be asked."""
        if not self.installed:
            return "comfy-kitchen is not installed (this ComfyUI does not require it)"
        if self.error is not None:
            return f"comfy-kitchen {self.version or ''} does not import: {self.error}".replace(
                "  ", " "
            )
        ordered = sorted(self.backends, key=lambda b: (_KITCHEN_ORDER.get(b.name, 9), b.name))
        text = f"comfy-kitchen {self.version}: " + ", ".join(b.describe() for b in ordered)
        return text + "".join(f"; {note}" for note in self.comfyui_notes)

    def as_dict(self) -> dict[str, object]:
        """The report as JSON-ready data (step outputs, `doctor --json`)."""
        return {
            "installed": self.installed,
            "version": self.version,
            "torch_cuda": self.torch_cuda,
            "error": self.error,
            "backends": {
                b.name: {"available": b.available, "disabled": b.disabled, "reason": b.reason}
                for b in self.backends
            },
            "comfyui_notes": list(self.comfyui_notes),
            "summary": self.summary(),
        }


_KITCHEN_ORDER = {"cuda": 0, "hip": 1, "triton": 2, "eager": 3}
