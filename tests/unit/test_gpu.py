"""GPU detection: NVML faked only at the `pynvml` functions, nvidia-smi as a real script.

The values are those a real H100 returned (`data/nvml-h100.json`,
`data/h100-facts.txt`). The failures raise pynvml's own exception classes,
made the way pynvml makes them (`NVMLError(code)` returns the subclass).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pynvml
import pytest

from installer.core.facts import GpuReport, gpu_override, no_gpu
from installer.edges.gpu import cuda_version_from_nvml, detect_gpus, parse_nvidia_smi

H100_UUID = "GPU-f9672ea3-fa2c-6e66-71d6-17367cbbd575"


def test_pynvml_maps_codes_to_its_subclasses() -> None:
    # The failure fakes below rely on this: NVMLError(code) is the specific subclass.
    assert type(pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)).__name__ == (
        "NVMLError_LibraryNotFound"
    )
    assert isinstance(
        pynvml.NVMLError(pynvml.NVML_ERROR_DRIVER_NOT_LOADED), pynvml.NVMLError_DriverNotLoaded
    )


@pytest.mark.parametrize(
    ("value", "text"), [(13000, "13.0"), (12080, "12.8"), (12060, "12.6"), (11080, "11.8")]
)
def test_cuda_version_decoding(value: int, text: str) -> None:
    assert cuda_version_from_nvml(value) == text


def test_h100_through_nvml(nvml: Callable[..., Any]) -> None:
    fake = nvml()
    report = detect_gpus()
    assert report.source == "nvml"
    assert report.has_nvidia
    assert report.driver_version == "580.159.04"
    assert report.cuda_driver_version == "13.0"
    assert report.reason == "detected by NVML (driver 580.159.04, CUDA 13.0)"
    assert report.warnings == ()
    (gpu,) = report.gpus
    assert gpu.index == 0
    assert gpu.name == "NVIDIA H100 80GB HBM3"
    assert gpu.cc == "9.0"
    assert gpu.vram_total_bytes == 85520809984
    assert gpu.vram_free_bytes == 85017493504
    assert round(gpu.vram_gib or 0, 1) == 79.6
    assert gpu.uuid == H100_UUID
    assert gpu.pci_bus_id == "00000000:00:06.0"
    assert str(report.planning_cc) == "9.0"
    # NVML is shut down again once read.
    assert fake.calls == ["nvmlInit", "nvmlShutdown"]
    assert not fake.initialised


def test_reference_values_are_the_real_h100(ref: SimpleNamespace) -> None:
    # Guards the copied data file: these are the values read on the real machine.
    assert ref.nvml["nvmlSystemGetCudaDriverVersion"] == 13000
    assert ref.device["nvmlDeviceGetCudaComputeCapability"] == [9, 0]
    assert ref.device["nvmlDeviceGetUUID"] == H100_UUID
    assert ref.device["nvmlDeviceGetMemoryInfo.total"] == 85520809984


def test_several_gpus_plan_for_the_lowest_cc(
    nvml: Callable[..., Any], ref: SimpleNamespace
) -> None:
    nvml(gpus=[ref.h100(), ref.rtx4090(), ref.h100()])
    report = detect_gpus()
    assert [g.name for g in report.gpus] == [
        "NVIDIA H100 80GB HBM3",
        "NVIDIA GeForce RTX 4090",
        "NVIDIA H100 80GB HBM3",
    ]
    assert [g.index for g in report.gpus] == [0, 1, 2]
    assert [g.cc for g in report.gpus] == ["9.0", "8.9", "9.0"]
    assert str(report.planning_cc) == "8.9"


def test_old_pynvml_returning_bytes(nvml: Callable[..., Any], ref: SimpleNamespace) -> None:
    gpu = ref.h100()
    gpu.name = b"NVIDIA H100 80GB HBM3"
    nvml(gpus=[gpu], driver=b"580.159.04")
    report = detect_gpus()
    assert report.gpus[0].name == "NVIDIA H100 80GB HBM3"
    assert report.driver_version == "580.159.04"


def test_a_device_that_fails_to_read_is_a_warning(
    nvml: Callable[..., Any], ref: SimpleNamespace
) -> None:
    broken = ref.rtx4090()
    broken.fail = pynvml.NVML_ERROR_GPU_IS_LOST
    fake = nvml(gpus=[broken, ref.h100()])
    report = detect_gpus()
    assert report.source == "nvml"
    assert [g.index for g in report.gpus] == [1]
    assert report.gpus[0].name == "NVIDIA H100 80GB HBM3"
    assert report.warnings == ("GPU 0 could not be read: a GPU fell off the bus",)
    assert fake.calls == ["nvmlInit", "nvmlShutdown"]


def test_every_device_failing_means_no_gpu(nvml: Callable[..., Any], ref: SimpleNamespace) -> None:
    broken = ref.h100()
    broken.fail = pynvml.NVML_ERROR_UNKNOWN
    nvml(gpus=[broken])
    report = detect_gpus()
    assert not report.has_nvidia
    assert report.source == "none"
    assert "NVML found no usable GPU" in report.reason
    assert "nvidia-smi not found" in report.reason
    # What was learned is kept: the driver and the warning.
    assert report.driver_version == "580.159.04"
    assert report.cuda_driver_version == "13.0"
    assert len(report.warnings) == 1
    assert report.warnings[0].startswith("GPU 0 could not be read: NVMLError_Unknown")


def test_zero_devices(nvml: Callable[..., Any]) -> None:
    nvml(gpus=[])
    report = detect_gpus()
    assert not report.has_nvidia
    assert "NVML found no usable GPU" in report.reason


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (
            pynvml.NVML_ERROR_LIBRARY_NOT_FOUND,
            "the NVIDIA driver library (libnvidia-ml) was not found",
        ),
        (pynvml.NVML_ERROR_DRIVER_NOT_LOADED, "the NVIDIA driver is not loaded"),
        (pynvml.NVML_ERROR_NO_PERMISSION, "no permission to talk to the NVIDIA driver"),
    ],
)
def test_nvml_unavailable(nvml: Callable[..., Any], code: int, words: str) -> None:
    fake = nvml(init_error=code)
    report = detect_gpus()
    assert not report.has_nvidia
    assert report.source == "none"
    assert report.gpus == ()
    assert report.reason == f"no NVIDIA GPU: NVML is unavailable: {words}; nvidia-smi not found"
    # Init failed, so there is nothing to shut down.
    assert fake.calls == ["nvmlInit"]


def test_nvml_failing_after_init_shuts_down(nvml: Callable[..., Any]) -> None:
    fake = nvml(system_error=pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)
    report = detect_gpus()
    assert not report.has_nvidia
    assert "NVML failed: the NVIDIA driver is too old for this query" in report.reason
    assert fake.calls == ["nvmlInit", "nvmlShutdown"]


def test_no_pynvml_at_all(monkeypatch: pytest.MonkeyPatch, empty_path: Path) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "pynvml", None)
    report = detect_gpus()
    assert not report.has_nvidia
    assert "nvidia-ml-py (pynvml) is not installed" in report.reason


# --- the nvidia-smi fallback ----------------------------------------------------


def test_nvidia_smi_fallback(
    nvml: Callable[..., Any], smi_on_path: Callable[..., Path], ref: SimpleNamespace
) -> None:
    nvml(init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    smi_on_path()
    report = detect_gpus()
    assert report.source == "nvidia-smi"
    assert report.has_nvidia
    assert report.driver_version == "580.159.04"
    assert report.cuda_driver_version == "13.0"
    (gpu,) = report.gpus
    assert (gpu.index, gpu.name, gpu.cc) == (0, "NVIDIA H100 80GB HBM3", "9.0")
    # 81559 MiB is exactly what NVML reports in bytes.
    assert gpu.vram_total_bytes == 81559 * 2**20 == ref.device["nvmlDeviceGetMemoryInfo.total"]
    assert gpu.vram_free_bytes == 81079 * 2**20
    assert gpu.pci_bus_id == "00000000:00:06.0"
    assert gpu.uuid == H100_UUID
    assert "nvidia-smi" in report.reason
    assert "CUDA 13.0" in report.reason


def test_nvidia_smi_with_two_gpus(
    nvml: Callable[..., Any], smi_on_path: Callable[..., Path], ref: SimpleNamespace
) -> None:
    nvml(init_error=pynvml.NVML_ERROR_DRIVER_NOT_LOADED)
    second = ref.smi_row() | {
        "index": "1",
        "name": "NVIDIA GeForce RTX 4090",
        "compute_cap": "8.9",
        "memory.total": "24564",
        "pci.bus_id": "00000000:01:00.0",
    }
    smi_on_path(rows=[ref.smi_row(), second])
    report = detect_gpus()
    assert [g.name for g in report.gpus] == ["NVIDIA H100 80GB HBM3", "NVIDIA GeForce RTX 4090"]
    assert str(report.planning_cc) == "8.9"
    assert report.gpus[1].vram_total_bytes == 24564 * 2**20


def test_nvidia_smi_listing_no_gpu(
    nvml: Callable[..., Any], smi_on_path: Callable[..., Path]
) -> None:
    nvml(init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    smi_on_path(rows=[])
    report = detect_gpus()
    assert not report.has_nvidia
    assert "libnvidia-ml" in report.reason
    assert report.reason.endswith("; nvidia-smi listed no GPU")


def test_failing_nvidia_smi_is_not_reported_as_missing(
    nvml: Callable[..., Any], empty_path: Path
) -> None:
    nvml(init_error=pynvml.NVML_ERROR_DRIVER_NOT_LOADED)
    smi = empty_path / "nvidia-smi"
    smi.write_text(
        "#!/bin/sh\necho \"NVIDIA-SMI has failed because it couldn't communicate with the "
        'NVIDIA driver."\nexit 9\n',
        encoding="utf-8",
    )
    smi.chmod(0o755)
    report = detect_gpus()
    assert not report.has_nvidia
    assert "nvidia-smi not found" not in report.reason


def test_no_nvml_and_no_nvidia_smi(nvml: Callable[..., Any]) -> None:
    nvml(init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    report = detect_gpus()
    assert report.has_nvidia is False
    assert report.planning_cc is None
    assert report.cuda_driver is None
    assert "library" in report.reason
    assert "libnvidia-ml" in report.reason
    assert "nvidia-smi not found" in report.reason


def test_nvml_preferred_over_nvidia_smi(
    nvml: Callable[..., Any], smi_on_path: Callable[..., Path], ref: SimpleNamespace
) -> None:
    nvml(gpus=[ref.rtx4090()])
    smi_on_path()
    report = detect_gpus()
    assert report.source == "nvml"
    assert report.gpus[0].name == "NVIDIA GeForce RTX 4090"


def test_parse_reference_nvidia_smi_output(ref: SimpleNamespace) -> None:
    row = ref.smi_row()
    csv = ", ".join(row[f] for f in ("index", "name", "compute_cap", "memory.total",
                                     "memory.free", "driver_version", "pci.bus_id"))  # fmt: skip
    assert csv == ref.facts("nvidia-smi query").strip()
    report = parse_nvidia_smi(csv + "\n", ref.facts("nvidia-smi header"))
    assert report.cuda_driver_version == "13.0"
    assert report.gpus[0].uuid is None
    assert report.gpus[0].pci_bus_id == "00000000:00:06.0"


# --- overrides -------------------------------------------------------------------


def test_gpu_override() -> None:
    report = gpu_override("8.9", "12.8")
    assert report.source == "override"
    assert report.has_nvidia
    assert str(report.planning_cc) == "8.9"
    assert str(report.cuda_driver) == "12.8"
    assert "--gpu 8.9 --cuda-driver 12.8" in report.reason


def test_no_gpu() -> None:
    report: GpuReport = no_gpu("--gpu none: planning for the CPU")
    assert not report.has_nvidia
    assert report.reason == "--gpu none: planning for the CPU"
