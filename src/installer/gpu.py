"""Which NVIDIA GPUs this machine has, and what its driver supports.

Detection tries, in order:

1. **NVML** through nvidia-ml-py (`pynvml`): every visible GPU with its name,
   compute capability, total and free VRAM, UUID and PCI bus id; the driver
   version and the newest CUDA version the driver supports
   (`nvmlSystemGetCudaDriverVersion`, encoded as ``major*1000 + minor*10``).
2. **nvidia-smi** `--query-gpu`, when NVML cannot be loaded from Python but the
   tool works (its header gives the driver's CUDA version).
3. **None**, with the reason (library not found, driver not loaded, no device).

`--gpu CC` / `--cuda-driver X.Y` replace detection for planning another
machine ([`gpu_override`][installer.gpu.gpu_override]); `--gpu none` plans for
CPU. Everything is returned as a frozen [`GpuReport`][installer.gpu.GpuReport].
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any, Literal

from packaging.version import Version

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


def cuda_version_from_nvml(value: int) -> str:
    """Decode NVML's CUDA driver version integer (13000 → '13.0', 12080 → '12.8').

    Args:
        value: What `nvmlSystemGetCudaDriverVersion` returns: ``major*1000 + minor*10``.
    """
    return f"{value // 1000}.{(value % 1000) // 10}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _detect_nvml() -> GpuReport:
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return GpuReport("none", f"NVML is unavailable: {_nvml_reason(exc)}")
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        cuda = cuda_version_from_nvml(int(pynvml.nvmlSystemGetCudaDriverVersion()))
        gpus: list[GpuInfo] = []
        warnings: list[str] = []
        for index in range(int(pynvml.nvmlDeviceGetCount())):
            try:
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
                memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
                gpus.append(
                    GpuInfo(
                        index=index,
                        name=_text(pynvml.nvmlDeviceGetName(handle)),
                        cc=f"{major}.{minor}",
                        vram_total_bytes=int(memory.total),
                        vram_free_bytes=int(memory.free),
                        uuid=_optional(pynvml.nvmlDeviceGetUUID, handle),
                        pci_bus_id=_optional_bus_id(pynvml, handle),
                    )
                )
            except pynvml.NVMLError as exc:
                warnings.append(f"GPU {index} could not be read: {_nvml_reason(exc)}")
    except pynvml.NVMLError as exc:
        return GpuReport("none", f"NVML failed: {_nvml_reason(exc)}")
    finally:
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()
    if not gpus:
        return GpuReport("none", "NVML found no usable GPU", (), driver, cuda, tuple(warnings))
    reason = f"detected by NVML (driver {driver}, CUDA {cuda})"
    return GpuReport("nvml", reason, tuple(gpus), driver, cuda, tuple(warnings))


def _optional(function: Any, handle: Any) -> str | None:
    try:
        return _text(function(handle))
    except Exception:
        return None


def _optional_bus_id(pynvml: Any, handle: Any) -> str | None:
    try:
        return _text(pynvml.nvmlDeviceGetPciInfo(handle).busId)
    except Exception:
        return None


def _nvml_reason(exc: Exception) -> str:
    """Describe an NVMLError in words a user understands."""
    name = type(exc).__name__
    known = {
        "NVMLError_LibraryNotFound": "the NVIDIA driver library (libnvidia-ml) was not found",
        "NVMLError_DriverNotLoaded": "the NVIDIA driver is not loaded",
        "NVMLError_NoPermission": "no permission to talk to the NVIDIA driver",
        "NVMLError_Uninitialized": "NVML was not initialised",
        "NVMLError_FunctionNotFound": "the NVIDIA driver is too old for this query",
        "NVMLError_GpuIsLost": "a GPU fell off the bus",
    }
    return known.get(name, f"{name}: {exc}")


SMI_QUERY = "index,name,compute_cap,memory.total,memory.free,driver_version,pci.bus_id,uuid"


def parse_nvidia_smi(query_csv: str, header: str) -> GpuReport:
    """Build a report from `nvidia-smi --query-gpu` CSV output and its plain header.

    Args:
        query_csv: Output of ``nvidia-smi --query-gpu=<SMI_QUERY>
            --format=csv,noheader,nounits``.
        header: Output of plain ``nvidia-smi`` (holds "CUDA Version: X.Y").
    """
    gpus: list[GpuInfo] = []
    driver: str | None = None
    for line in query_csv.strip().splitlines():
        cells = [cell.strip() for cell in line.split(",")]
        if len(cells) < 6:
            continue
        index, name, cc, total, free, driver = cells[:6]
        bus_id = cells[6] if len(cells) > 6 else None
        uuid = cells[7] if len(cells) > 7 else None
        gpus.append(
            GpuInfo(
                index=int(index),
                name=name,
                cc=cc,
                vram_total_bytes=_mib(total),
                vram_free_bytes=_mib(free),
                pci_bus_id=bus_id,
                uuid=uuid,
            )
        )
    match = re.search(r"CUDA Version:\s*([0-9]+\.[0-9]+)", header)
    cuda = match.group(1) if match else None
    if not gpus:
        return GpuReport("none", "nvidia-smi listed no GPU")
    reason = f"detected by nvidia-smi (NVML unavailable to Python; driver {driver}, CUDA {cuda})"
    return GpuReport("nvidia-smi", reason, tuple(gpus), driver, cuda)


def _mib(value: str) -> int | None:
    try:
        return int(float(value) * 2**20)
    except ValueError:
        return None


def _detect_nvidia_smi() -> GpuReport | None:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        query = subprocess.run(
            [smi, f"--query-gpu={SMI_QUERY}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        header = subprocess.run([smi], capture_output=True, text=True, timeout=30, check=False)
    except subprocess.CalledProcessError as exc:
        said = (exc.stdout or exc.stderr or "").strip().splitlines()
        detail = said[0] if said else f"exit code {exc.returncode}"
        return GpuReport("none", f"nvidia-smi failed ({detail})")
    except (OSError, subprocess.SubprocessError) as exc:
        return GpuReport("none", f"nvidia-smi could not run ({exc})")
    return parse_nvidia_smi(query.stdout, header.stdout)


def detect_gpus() -> GpuReport:
    """Detect NVIDIA GPUs: NVML first, then nvidia-smi, else a report of none with the reason."""
    try:
        report = _detect_nvml()
    except ImportError:
        report = GpuReport("none", "nvidia-ml-py (pynvml) is not installed")
    if report.has_nvidia:
        return report
    fallback = _detect_nvidia_smi()
    if fallback is not None and fallback.has_nvidia:
        return fallback
    suffix = "; nvidia-smi not found" if fallback is None else f"; {fallback.reason}"
    return GpuReport(
        "none",
        f"no NVIDIA GPU: {report.reason.removeprefix('no NVIDIA GPU: ')}" + suffix,
        (),
        report.driver_version,
        report.cuda_driver_version,
        report.warnings,
    )


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


def no_gpu(reason: str) -> GpuReport:
    """Return a report with no GPU and the reason (``--gpu none``).

    Args:
        reason: Why there is no GPU; the plan and `doctor` show it.
    """
    return GpuReport("none", reason)
