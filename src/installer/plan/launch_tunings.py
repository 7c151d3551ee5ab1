"""The tunings of a launch other than attention: one pure decision per optimization.

Each `decide_*` function takes data (the request's `--tune`, the
[`GpuReport`][installer.core.facts.GpuReport], the installed
[`TorchInstalled`][installer.core.facts.TorchInstalled], the variables the user
set, the ComfyUI arguments) and returns a [`Tuning`][installer.plan.launch_tunings.Tuning]:
``on`` with the variable or argument comfy-install sets, ``user`` when the
user's own value is kept, or ``off`` with the reason. The attention decision
has its room in [`installer.plan.launch_attention`][installer.plan.launch_attention];
[`plan_launch`][installer.plan.launch.plan_launch] puts them together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Literal

from packaging.version import InvalidVersion, Version

from installer.core.facts import GpuReport, TorchInstalled
from installer.plan.launch_settings import find_option, parse_flag

TF32_MIN_CC = Version("8.0")
ALLOC_CONF_SETTING = "expandable_segments:True"
CPU_ONLY = "ComfyUI runs with --cpu"
IN_PROCESS = frozenset(
    {
        "attention",
        "tf32",
        "cudnn-benchmark",
        "matmul-precision",
        "torch-compile",
        "compile-backend",
        "compile-mode",
    }
)
# torch.compile settings that record CUDA graphs: these need torch's native
# allocator (its private memory pools); under ComfyUI's default cudaMallocAsync
# backend the first compiled call fails in checkPoolLiveAllocations (seen with
# torch 2.11 on an H100).
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")
CUDA_GRAPH_BACKENDS = ("cudagraphs",)

TuningStatus = Literal["on", "user", "off"]


@dataclass(frozen=True)
class Tuning:
    """One optimization of the launch: whether it applies, and why.

    ``status`` is ``on`` (comfy-install sets it), ``user`` (the user's own value
    is kept) or ``off`` (not applied; ``reason`` says why).
    """

    name: str
    status: TuningStatus
    reason: str
    variable: str | None = None
    value: str | None = None
    argument: str | None = None

    @property
    def in_process(self) -> bool:
        """True when the tuning is applied inside ComfyUI by the shim."""
        return self.name in IN_PROCESS


def _torch_at_least(torch: TorchInstalled, major: int, minor: int) -> bool | None:
    try:
        return Version(torch.version).release[:2] >= (major, minor)
    except InvalidVersion:
        return None


def allocator_variable(torch: TorchInstalled) -> str:
    """Return the allocator variable the installed torch reads.

    Args:
        torch: The torch found in the venv.

    Returns:
        `PYTORCH_ALLOC_CONF` for torch 2.9 and newer (it reads that one first
        and warns that `PYTORCH_CUDA_ALLOC_CONF` is deprecated), else
        `PYTORCH_CUDA_ALLOC_CONF`.
    """
    return "PYTORCH_ALLOC_CONF" if _torch_at_least(torch, 2, 9) else "PYTORCH_CUDA_ALLOC_CONF"


def no_gpu_reason(gpu: GpuReport) -> str:
    """Return why a GPU tuning is off when there is no GPU to tune (`--cpu`, or none found).

    Args:
        gpu: The GPU report the launch plans with.
    """
    return CPU_ONLY if gpu.reason == CPU_ONLY else "no NVIDIA GPU detected"


def decide_allocator(
    tune: bool,
    gpu: GpuReport,
    torch: TorchInstalled | None,
    platform: str,
    user: Mapping[str, str],
    native_allocator: bool = False,
) -> Tuning:
    """Decide the CUDA caching allocator setting (expandable segments).

    Args:
        tune: Tuning on (False with `--no-tune`).
        gpu: The GPU report.
        torch: The torch in the venv, if any.
        platform: `linux` or `windows`.
        user: The launch variables the user set.
        native_allocator: ComfyUI runs with `--disable-cuda-malloc`, so torch's
            own caching allocator (which reads the setting) is in use.

    Returns:
        The allocator tuning.
    """
    name = "allocator"
    if not tune:
        return Tuning(name, "off", "--no-tune")
    for variable in ("PYTORCH_ALLOC_CONF", "PYTORCH_CUDA_ALLOC_CONF"):
        if variable in user:
            reason = "set by you; left alone"
            if (
                variable == "PYTORCH_CUDA_ALLOC_CONF"
                and torch is not None
                and _torch_at_least(torch, 2, 9)
            ):
                reason += f" (torch {torch.version} calls it deprecated: PYTORCH_ALLOC_CONF)"
            return Tuning(name, "user", reason, variable, user[variable])
    if platform == "windows":
        return Tuning(name, "off", "torch supports expandable segments only on Linux")
    if torch is None:
        return Tuning(name, "off", "torch was not found in the venv")
    if torch.cuda is None:
        return Tuning(name, "off", f"torch {torch.version} is a CPU build")
    if not gpu.has_nvidia:
        return Tuning(name, "off", no_gpu_reason(gpu))
    variable = allocator_variable(torch)
    reason = (
        "expandable segments reduce fragmentation when models are swapped; "
        f"torch {torch.version} reads {variable}"
    )
    if not native_allocator:
        reason += (
            " (used by torch's own allocator; ComfyUI chooses cudaMallocAsync "
            "instead unless started with --disable-cuda-malloc)"
        )
    return Tuning(name, "on", reason, variable, ALLOC_CONF_SETTING)


def decide_tf32(tune: bool, gpu: GpuReport, user: Mapping[str, str]) -> Tuning:
    """Decide `ENABLE_TF32` (TF32 matmuls and convolutions, compute capability 8.0+).

    Args:
        tune: Tuning on.
        gpu: The GPU report (the lowest compute capability counts).
        user: The launch variables the user set.

    Returns:
        The TF32 tuning.
    """
    name, variable = "tf32", "ENABLE_TF32"
    if not tune:
        return Tuning(name, "off", "--no-tune", variable)
    if variable in user:
        return Tuning(name, "user", "set by you; left alone", variable, user[variable])
    cc = gpu.planning_cc
    if cc is None:
        return Tuning(name, "off", no_gpu_reason(gpu), variable)
    if cc < TF32_MIN_CC:
        return Tuning(name, "off", f"compute capability {cc} has no TF32 (needs 8.0+)", variable)
    return Tuning(
        name,
        "on",
        f"compute capability {cc} has TF32 tensor cores: float32 matmuls and "
        "convolutions run several times faster at nearly float32 accuracy",
        variable,
        "1",
    )


def decide_cudnn_benchmark(
    tune: bool, gpu: GpuReport, user: Mapping[str, str], comfy_args: Sequence[str]
) -> Tuning:
    """Decide `ENABLE_CUDNN_BENCHMARK` (cuDNN picks the fastest convolution per shape).

    Args:
        tune: Tuning on.
        gpu: The GPU report.
        user: The launch variables the user set.
        comfy_args: The arguments ComfyUI will get from the user.

    Returns:
        The cuDNN benchmark tuning.
    """
    name, variable = "cudnn-benchmark", "ENABLE_CUDNN_BENCHMARK"
    if not tune:
        return Tuning(name, "off", "--no-tune", variable)
    if variable in user:
        return Tuning(name, "user", "set by you; left alone", variable, user[variable])
    if not gpu.has_nvidia:
        return Tuning(name, "off", no_gpu_reason(gpu), variable)
    if find_option(comfy_args, "--deterministic")[0]:
        return Tuning(name, "off", "ComfyUI runs with --deterministic", variable)
    return Tuning(
        name,
        "on",
        "cuDNN times its convolution algorithms once per shape and keeps the fastest "
        "(the first image of a new size is slower)",
        variable,
        "1",
    )


def decide_matmul_precision(tune: bool, tf32: Tuning, user: Mapping[str, str]) -> Tuning:
    """Decide `MATMUL_PRECISION` (`torch.set_float32_matmul_precision`).

    Args:
        tune: Tuning on.
        tf32: The TF32 decision (``high`` is only chosen where TF32 is on).
        user: The launch variables the user set.

    Returns:
        The matmul precision tuning.
    """
    name, variable = "matmul-precision", "MATMUL_PRECISION"
    if not tune:
        return Tuning(name, "off", "--no-tune", variable)
    if variable in user:
        return Tuning(name, "user", "set by you; left alone", variable, user[variable])
    if tf32.status == "off":
        return Tuning(name, "off", f"TF32 is off: {tf32.reason}", variable)
    if tf32.status == "user" and not parse_flag("ENABLE_TF32", tf32.value or ""):
        return Tuning(name, "off", "ENABLE_TF32 is off (set by you)", variable)
    return Tuning(name, "on", "float32 matmuls may use TF32, like ENABLE_TF32", variable, "high")


def decide_compile(tune: bool, user: Mapping[str, str]) -> list[Tuning]:
    """Decide the opt-in torch.compile settings for nodes (`COMFY_TORCH_COMPILE`).

    Args:
        tune: Tuning on.
        user: The launch variables the user set.

    Returns:
        The `torch-compile` tuning and, when compile is on, `compile-backend`
        and `compile-mode` (defaults inductor and, for inductor, reduce-overhead).
    """
    variable = "ENABLE_TORCH_COMPILE"
    if not tune:
        return [Tuning("torch-compile", "off", "--no-tune", variable)]
    if variable not in user:
        return [
            Tuning(
                "torch-compile",
                "off",
                f"opt-in: set {variable}=1 to give nodes COMFY_TORCH_COMPILE",
                variable,
            )
        ]
    if not parse_flag(variable, user[variable]):
        return [Tuning("torch-compile", "user", "turned off by you", variable, user[variable])]
    found = [
        Tuning(
            "torch-compile",
            "user",
            "nodes can call COMFY_TORCH_COMPILE(model)",
            variable,
            user[variable],
        )
    ]
    backend = user.get("TORCH_COMPILE_BACKEND", "").strip()
    if backend:
        found.append(
            Tuning("compile-backend", "user", "set by you", "TORCH_COMPILE_BACKEND", backend)
        )
    else:
        backend = "inductor"
        found.append(
            Tuning(
                "compile-backend",
                "on",
                "torch's default compiler",
                "TORCH_COMPILE_BACKEND",
                backend,
            )
        )
    if "TORCH_COMPILE_MODE" in user:
        found.append(
            Tuning(
                "compile-mode",
                "user",
                "set by you",
                "TORCH_COMPILE_MODE",
                user["TORCH_COMPILE_MODE"],
            )
        )
    elif backend == "inductor":
        found.append(
            Tuning(
                "compile-mode",
                "on",
                "CUDA graphs cut the per-step launch overhead of diffusion loops",
                "TORCH_COMPILE_MODE",
                "reduce-overhead",
            )
        )
    else:
        found.append(
            Tuning(
                "compile-mode",
                "off",
                f"modes are an inductor option; backend {backend} gets none",
                "TORCH_COMPILE_MODE",
            )
        )
    return found


COMPILE_CACHES = (
    ("inductor-cache", "TORCHINDUCTOR_CACHE_DIR", "inductor"),
    ("triton-cache", "TRITON_CACHE_DIR", "triton"),
)
"""torch.compile's caches in DIR: (tuning, variable, folder in DIR/.comfy-install/torch-compile)."""


def decide_compile_cache(
    tune: bool, gpu: GpuReport, install_dir: PurePath, user: Mapping[str, str]
) -> list[Tuning]:
    """Keep inductor's and Triton's compile caches in DIR.

    Inductor's default cache is a folder under the system's temporary folder
    (lost at a reboot, and shared by every install), Triton's is in the home
    folder: in DIR, a second `launch` of a workflow with a compile node (or
    SageAttention's Triton kernels) compiles from the first one's cache.

    Args:
        tune: Tuning on.
        gpu: The GPU report (nothing is compiled for the CPU here).
        install_dir: DIR.
        user: The launch variables the user set (theirs are kept).

    Returns:
        The `inductor-cache` and `triton-cache` tunings.
    """
    found = []
    for name, variable, folder in COMPILE_CACHES:
        if not tune:
            found.append(Tuning(name, "off", "--no-tune", variable))
        elif variable in user:
            found.append(Tuning(name, "user", "set by you", variable, user[variable]))
        elif not gpu.has_nvidia:
            found.append(Tuning(name, "off", no_gpu_reason(gpu), variable))
        else:
            where = str(install_dir / ".comfy-install" / "torch-compile" / folder)
            found.append(
                Tuning(
                    name,
                    "on",
                    "compiled kernels are kept in DIR for the next launch",
                    variable,
                    where,
                )
            )
    return found


def decide_cuda_malloc(
    compile_tunings: Sequence[Tuning], comfy_args: Sequence[str]
) -> Tuning | None:
    """Decide whether ComfyUI must use torch's native allocator for CUDA graphs.

    Args:
        compile_tunings: The torch.compile decisions (after the shim's limits).
        comfy_args: The arguments ComfyUI will get from the user.

    Returns:
        A tuning adding `--disable-cuda-malloc` when `COMFY_TORCH_COMPILE`
        records CUDA graphs (inductor's reduce-overhead and max-autotune
        modes, the cudagraphs backend); None when compile does not.
    """
    values = {t.name: t.value for t in compile_tunings if t.status != "off"}
    if "torch-compile" not in values or not parse_flag("", values["torch-compile"] or ""):
        return None
    backend = (values.get("compile-backend") or "").strip()
    mode = (values.get("compile-mode") or "").strip().lower()
    if backend not in CUDA_GRAPH_BACKENDS and mode not in CUDA_GRAPH_MODES:
        return None
    what = f"backend {backend}" if backend in CUDA_GRAPH_BACKENDS else f"mode {mode}"
    name, argument = "native-allocator", "--disable-cuda-malloc"
    if find_option(comfy_args, argument)[0]:
        return Tuning(name, "user", "you chose it", argument=argument)
    if find_option(comfy_args, "--cuda-malloc")[0]:
        return Tuning(
            name,
            "off",
            f"you chose --cuda-malloc: COMFY_TORCH_COMPILE ({what}) records CUDA graphs, "
            "which fail under cudaMallocAsync",
        )
    return Tuning(
        name,
        "on",
        f"COMFY_TORCH_COMPILE ({what}) records CUDA graphs, which need torch's own "
        "allocator: under ComfyUI's default cudaMallocAsync they fail",
        argument=argument,
    )
