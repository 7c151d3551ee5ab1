"""Which device ComfyUI runs on: `--cpu` when no GPU the installed torch can use is there.

ComfyUI does not fall back to the CPU by itself: without `--cpu`, a CUDA build of torch on a
machine without an NVIDIA driver stops at start-up ("RuntimeError: Found no NVIDIA driver on
your system"), and a CPU build of torch stops with "Torch not compiled with CUDA enabled".
[`decide_device`][installer.plan.launch_device.decide_device] adds `--cpu` when the install was
made for the CPU (`--gpu none`, recorded by its gpu step), when the venv's torch is a CPU build,
or when no NVIDIA GPU is found, unless the user chose a device option of ComfyUI's
([`DEVICE_OPTIONS`][installer.plan.launch_device.DEVICE_OPTIONS]). Pure: the facts come from
[`installer.launch.facts`][installer.launch.facts]. It applies with `--no-tune` too: it is not
a tuning but what lets ComfyUI start.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from installer.core.facts import GPU_NONE_REASON, GpuReport, TorchInstalled
from installer.plan.launch_settings import find_option
from installer.plan.launch_tunings import Tuning

CPU_ARGUMENT = "--cpu"

DEVICE_OPTIONS = (
    "--cpu",
    "--directml",
    "--oneapi-device-selector",
    "--cuda-device",
    "--default-device",
    "--gpu-only",
    "--highvram",
    "--normalvram",
    "--lowvram",
    "--novram",
)
"""ComfyUI's options that choose the device or how it uses VRAM (`comfy/cli_args.py` of v0.3.77
and v0.33.0). With any of them the user has chosen, and `--cpu` is not added: ComfyUI also
refuses `--cpu` together with one of the VRAM modes (`--gpu-only` to `--novram`, one
mutually exclusive group)."""


def cpu_install_reason(gpu_outputs: Mapping[str, Any] | None) -> str | None:
    """Return why the install was made for the CPU, from what its gpu step recorded.

    Args:
        gpu_outputs: The outputs of the install's finished `gpu` step (None: no such step).

    Returns:
        The recorded reason when the install was planned with `--gpu none`; None
        otherwise (a GPU, or none found at install time: then the torch build decides).
    """
    if not gpu_outputs or gpu_outputs.get("source") != "none":
        return None
    reason = str(gpu_outputs.get("reason") or "")
    return reason if reason.startswith(GPU_NONE_REASON.split(":")[0]) else None


def decide_device(
    gpu: GpuReport,
    torch: TorchInstalled | None,
    cpu_install: str | None,
    comfy_args: Sequence[str],
) -> Tuning:
    """Decide whether the launch adds `--cpu`.

    Args:
        gpu: The GPUs found now.
        torch: The torch in the venv (None: not found).
        cpu_install: Why the install was made for the CPU, as its gpu step recorded it
            (`--gpu none`); None otherwise.
        comfy_args: The arguments ComfyUI gets from the user.

    Returns:
        A tuning named `device`: ``on`` with `--cpu` and the reason; ``user`` when the
        user chose a device option; ``off`` when ComfyUI runs on the GPU.
    """
    name = "device"
    chosen = next((option for option in DEVICE_OPTIONS if find_option(comfy_args, option)[0]), None)
    reason = _cpu_reason(gpu, torch, cpu_install)
    if chosen == CPU_ARGUMENT:
        return Tuning(name, "user", "you chose --cpu", argument=CPU_ARGUMENT)
    if chosen is not None:
        note = f"; {reason}, so ComfyUI may stop at start-up" if reason else ""
        return Tuning(name, "user", f"you chose {chosen}: ComfyUI picks the device{note}")
    if reason is not None:
        return Tuning(
            name,
            "on",
            f"{reason}: ComfyUI runs on the CPU (slow); without --cpu it would stop at "
            "start-up looking for an NVIDIA GPU",
            argument=CPU_ARGUMENT,
        )
    build = f"CUDA {torch.cuda}" if torch is not None and torch.cuda else "CUDA"
    return Tuning(name, "off", f"ComfyUI runs on the NVIDIA GPU ({build} build of torch)")


def _cpu_reason(
    gpu: GpuReport, torch: TorchInstalled | None, cpu_install: str | None
) -> str | None:
    """Return why ComfyUI must run on the CPU, or None when a GPU can be used."""
    if cpu_install is not None:
        return f"the install was made for the CPU ({cpu_install})"
    if torch is not None and torch.cuda is None:
        return f"torch {torch.version} in the venv is a CPU build"
    if not gpu.has_nvidia:
        return (
            gpu.reason
            if gpu.reason.startswith("no NVIDIA GPU")
            else f"no NVIDIA GPU ({gpu.reason})"
        )
    return None
