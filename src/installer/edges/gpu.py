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
machine ([`gpu_override`][installer.core.facts.gpu_override]); `--gpu none` plans for
CPU. Everything is returned as a frozen [`GpuReport`][installer.core.facts.GpuReport].
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
from typing import Any

from installer.core.facts import GpuInfo, GpuReport


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
