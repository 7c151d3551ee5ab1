"""`launch` adds `--cpu` when no GPU the venv's torch can use is there, unless the user chose."""

from __future__ import annotations

from pathlib import Path

import pytest

from installer.core.facts import GPU_NONE_REASON, GpuInfo, GpuReport, TorchInstalled
from installer.plan.launch import LaunchFacts, LaunchRequest, plan_launch, render_print_env
from installer.plan.launch_device import DEVICE_OPTIONS, cpu_install_reason, decide_device

CUDA_TORCH = TorchInstalled("2.9.1+cu128", "12.8")
CPU_TORCH = TorchInstalled("2.9.1+cpu", None)
GPU = GpuReport("nvml", "test", (GpuInfo(0, "RTX 4090", "8.9", vram_total_bytes=24 * 2**30),))
NO_GPU = GpuReport("none", "no NVIDIA GPU: NVML: Driver Not Loaded; nvidia-smi not found")


def facts(
    gpu: GpuReport = NO_GPU,
    torch: TorchInstalled | None = CUDA_TORCH,
    cpu_install: str | None = None,
) -> LaunchFacts:
    return LaunchFacts(
        platform="linux",
        venv_python=Path("/srv/i/venv/bin/python"),
        comfyui_dir=Path("/srv/i/ComfyUI"),
        gpu=gpu,
        torch=torch,
        shim="current",
        site_packages=Path("/srv/i/venv/lib/python3.12/site-packages"),
        cpu_install=cpu_install,
    )


@pytest.mark.parametrize(
    ("gpu", "torch", "cpu_install", "said"),
    [
        (NO_GPU, CUDA_TORCH, None, "no NVIDIA GPU: NVML: Driver Not Loaded"),
        (GPU, CPU_TORCH, None, "torch 2.9.1+cpu in the venv is a CPU build"),
        (NO_GPU, CPU_TORCH, None, "CPU build"),
        (GPU, CUDA_TORCH, GPU_NONE_REASON, "the install was made for the CPU (--gpu none"),
        (NO_GPU, None, None, "no NVIDIA GPU"),
    ],
)
def test_cpu_is_added_when_no_usable_gpu(
    gpu: GpuReport, torch: TorchInstalled | None, cpu_install: str | None, said: str
) -> None:
    decision = decide_device(gpu, torch, cpu_install, ())
    assert (decision.status, decision.argument) == ("on", "--cpu")
    assert said in decision.reason and "ComfyUI runs on the CPU" in decision.reason


def test_a_gpu_and_a_cuda_torch_add_nothing() -> None:
    decision = decide_device(GPU, CUDA_TORCH, None, ())
    assert (decision.status, decision.argument) == ("off", None)
    assert "CUDA 12.8" in decision.reason


@pytest.mark.parametrize("option", DEVICE_OPTIONS)
def test_a_device_option_of_the_user_wins(option: str) -> None:
    args = (option, "0") if option in ("--cuda-device", "--default-device") else (option,)
    decision = decide_device(NO_GPU, CUDA_TORCH, None, args)
    assert decision.status == "user"
    assert decision.argument == ("--cpu" if option == "--cpu" else None)
    if option != "--cpu":
        assert option in decision.reason and "may stop at start-up" in decision.reason


def test_device_options_match_comfyui_cli_args() -> None:
    """Every option exists in ComfyUI v0.33.0's or v0.3.77's cli_args.py (checked by hand too)."""
    vram_group = {"--gpu-only", "--highvram", "--normalvram", "--lowvram", "--novram", "--cpu"}
    assert vram_group <= set(DEVICE_OPTIONS)
    assert {"--directml", "--oneapi-device-selector", "--cuda-device"} <= set(DEVICE_OPTIONS)


def test_plan_adds_cpu_once_and_turns_gpu_tunings_off() -> None:
    p = plan_launch(LaunchRequest(Path("/srv/i")), facts(), {})
    assert p.argv.count("--cpu") == 1
    assert p.argv[:3] == ("/srv/i/venv/bin/python", "-u", "/srv/i/ComfyUI/main.py")
    device = p.tuning("device")
    assert device is not None and device.status == "on"
    assert p.tuning("tf32").status == "off"  # type: ignore[union-attr]


def test_a_gpu_that_comfyui_will_not_use_gets_no_gpu_tunings() -> None:
    p = plan_launch(LaunchRequest(Path("/srv/i")), facts(GPU, CPU_TORCH), {})
    assert "--cpu" in p.argv
    assert p.tuning("tf32").reason == "ComfyUI runs with --cpu"  # type: ignore[union-attr]
    assert "ENABLE_TF32" not in p.env_set and "ENABLE_CUDNN_BENCHMARK" not in p.env_set


def test_no_tune_still_adds_cpu() -> None:
    """Not a tuning: without it ComfyUI does not start."""
    p = plan_launch(LaunchRequest(Path("/srv/i"), tune=False), facts(), {})
    assert "--cpu" in p.argv


def test_user_cpu_in_comfy_extra_args_is_not_doubled() -> None:
    p = plan_launch(LaunchRequest(Path("/srv/i")), facts(), {"COMFY_EXTRA_ARGS": "--cpu"})
    assert p.argv.count("--cpu") == 1
    assert p.tuning("device").status == "user"  # type: ignore[union-attr]


def test_a_vram_mode_of_the_user_is_never_combined_with_cpu() -> None:
    """ComfyUI refuses `--cpu` with `--lowvram` (one mutually exclusive group)."""
    p = plan_launch(LaunchRequest(Path("/srv/i"), extra_args=("--lowvram",)), facts(), {})
    assert "--cpu" not in p.argv


def test_print_env_shows_the_cpu_decision() -> None:
    f = facts()
    p = plan_launch(LaunchRequest(Path("/srv/i")), f, {})
    text = render_print_env(p, f)
    assert "# device: on --cpu (no NVIDIA GPU" in text
    assert text.rstrip().splitlines()[-1].endswith("--port 8188 --cpu")
    data = p.as_data()
    assert "--cpu" in data["argv"]
    [device] = [t for t in data["tunings"] if t["name"] == "device"]
    assert (device["status"], device["argument"]) == ("on", "--cpu")


@pytest.mark.parametrize(
    ("outputs", "expected"),
    [
        ({"source": "none", "reason": GPU_NONE_REASON}, GPU_NONE_REASON),
        ({"source": "none", "reason": "no NVIDIA GPU: NVML not found"}, None),
        ({"source": "nvml", "reason": "NVML"}, None),
        ({"source": "override", "reason": "given on the command line (--gpu 8.9)"}, None),
        (None, None),
        ({}, None),
    ],
)
def test_recorded_gpu_none(outputs: dict[str, str] | None, expected: str | None) -> None:
    assert cpu_install_reason(outputs) == expected
