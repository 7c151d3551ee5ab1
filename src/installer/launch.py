"""Start ComfyUI tuned for this GPU, wait until it answers, and stop it again.

`comfy-install launch DIR` runs `DIR/ComfyUI/main.py` with the venv's Python.
The module has two halves:

- **Decisions (pure).** [`plan_launch`][installer.launch.plan_launch] turns the
  request (port, `--no-tune`, ComfyUI arguments), the facts about the machine
  ([`LaunchFacts`][installer.launch.LaunchFacts]: GPU report, installed torch,
  whether SageAttention imports, the state of the tuning shim) and the user's
  environment into a [`LaunchPlan`][installer.launch.LaunchPlan]: the exact
  command, the variables to set, and one [`Tuning`][installer.launch.Tuning]
  per optimization with its status and reason. A variable the user set is
  never overwritten; an invalid value (`MATMUL_PRECISION=fast`) is refused with
  the allowed values before anything starts.
- **Process management (effects).** [`gather_facts`][installer.launch.gather_facts]
  reads the machine; [`run_comfyui`][installer.launch.run_comfyui] checks the
  port (naming the process that holds it, on Linux), installs the tuning shim
  ([`installer.tuning_shim`][installer.tuning_shim]) into
  the venv when in-process tuning is wanted, starts ComfyUI in its own process
  group, tees its output to `DIR/.comfy-install/logs/comfyui-<stamp>.log`,
  waits for `GET /object_info`, and on Ctrl-C stops it (SIGINT, then
  terminate, then kill). With `background` it records
  `DIR/.comfy-install/comfyui.pid` and returns once ComfyUI is ready;
  [`stop_comfyui`][installer.launch.stop_comfyui] ends it.

The tunings: the CUDA allocator's `expandable_segments:True` (in
`PYTORCH_ALLOC_CONF` for torch 2.9 and newer, which reads it first and calls
`PYTORCH_CUDA_ALLOC_CONF` deprecated; in `PYTORCH_CUDA_ALLOC_CONF` before), TF32
and `MATMUL_PRECISION=high` on compute capability 8.0 and newer, the cuDNN
autotuner, opt-in torch.compile for nodes (`ENABLE_TORCH_COMPILE=1`), and
`--use-sage-attention` when SageAttention and Triton can be imported and the
GPU has compute capability 8.0 or newer.

Two interactions with ComfyUI's own allocator choice, seen with torch 2.11 on
an H100: ComfyUI on a CUDA torch sets `backend:cudaMallocAsync` in
`PYTORCH_CUDA_ALLOC_CONF` unless started with `--disable-cuda-malloc`, and that
backend stays in use when `PYTORCH_ALLOC_CONF` is set too; it manages memory
itself, so expandable segments only take effect with `--disable-cuda-malloc`.
And torch.compile's CUDA graphs (inductor's `reduce-overhead` and
`max-autotune` modes, the `cudagraphs` backend) fail under it, so when
`COMFY_TORCH_COMPILE` would record them the launch adds `--disable-cuda-malloc`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Literal

from packaging.version import InvalidVersion, Version

from installer.core.errors import (
    EnvironmentUnsupportedError,
    InterruptedByUserError,
    StepFailedError,
    UsageError,
)
from installer.core.facts import GpuReport, TorchInstalled
from installer.core.log import InstallerLogger
from installer.core.records import now_iso
from installer.edges.environment import current_platform, pid_alive, site_packages_dirs
from installer.edges.gpu import detect_gpus
from installer.edges.probe import installed_torch, layout
from installer.edges.state import atomic_write_text
from installer.edges.state import state_dir as install_state_dir

DEFAULT_PORT = 8188
DEFAULT_TIMEOUT = 600.0
MARKER_ENV = "COMFY_INSTALL_TUNING"
EXTRA_ARGS_ENV = "COMFY_EXTRA_ARGS"
WARMUP_ENV = "ENABLE_STARTUP_WARMUP"
SHIM_MODULE = "comfy_install_tuning"
SHIM_MARKER = "# comfy-install runtime tuning shim"
PID_FILENAME = "comfyui.pid"
TF32_MIN_CC = Version("8.0")
SAGE_MIN_CC = Version("8.0")
ALLOC_CONF_SETTING = "expandable_segments:True"

BOOL_VALUES = ("1", "0", "true", "false", "yes", "no", "on", "off")
MATMUL_PRECISIONS = ("highest", "high", "medium")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
DYNAMIC_VALUES = (*BOOL_VALUES, "auto")
COMMON_BACKENDS = ("inductor", "cudagraphs", "eager", "aot_eager")
BOOL_VARIABLES = (
    "ENABLE_TF32",
    "ENABLE_CUDNN_BENCHMARK",
    "ENABLE_TORCH_COMPILE",
    "TORCH_COMPILE_FULLGRAPH",
    MARKER_ENV,
)
TUNING_VARIABLES = (
    "PYTORCH_ALLOC_CONF",
    "PYTORCH_CUDA_ALLOC_CONF",
    "ENABLE_TF32",
    "ENABLE_CUDNN_BENCHMARK",
    "MATMUL_PRECISION",
    "ENABLE_TORCH_COMPILE",
    "TORCH_COMPILE_BACKEND",
    "TORCH_COMPILE_MODE",
    "TORCH_COMPILE_FULLGRAPH",
    "TORCH_COMPILE_DYNAMIC",
    MARKER_ENV,
)
RELEVANT_VARIABLES = (
    *TUNING_VARIABLES,
    WARMUP_ENV,
    EXTRA_ARGS_ENV,
    "CUDA_VISIBLE_DEVICES",
    "PYTHONIOENCODING",
)
IN_PROCESS = frozenset(
    {
        "tf32",
        "cudnn-benchmark",
        "matmul-precision",
        "torch-compile",
        "compile-backend",
        "compile-mode",
    }
)
# ComfyUI's attention choices are one argparse group: we add ours only when
# the user chose none of them.
ATTENTION_FLAGS = (
    "--use-sage-attention",
    "--use-pytorch-cross-attention",
    "--use-split-cross-attention",
    "--use-quad-cross-attention",
    "--use-flash-attention",
)
# torch.compile settings that record CUDA graphs: these need torch's native
# allocator (its private memory pools); under ComfyUI's default cudaMallocAsync
# backend the first compiled call fails in checkPoolLiveAllocations (seen with
# torch 2.11 on an H100).
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")
CUDA_GRAPH_BACKENDS = ("cudagraphs",)
_BACKEND_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]*$")

TuningStatus = Literal["on", "user", "off"]
ShimStatus = Literal["current", "missing", "outdated", "foreign", "unavailable"]


# --- data --------------------------------------------------------------------


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


@dataclass(frozen=True)
class SageProbe:
    """Whether SageAttention and Triton can be found in the venv (not imported)."""

    sageattention: bool
    triton: bool


@dataclass(frozen=True)
class LaunchRequest:
    """What the user asked for on the command line."""

    install_dir: Path
    listen: str | None = None
    port: int = DEFAULT_PORT
    tune: bool = True
    timeout: float = DEFAULT_TIMEOUT
    background: bool = False
    extra_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class LaunchFacts:
    """What the machine and the install are like, as far as the launch depends on it."""

    platform: str
    venv_python: Path
    comfyui_dir: Path
    gpu: GpuReport
    torch: TorchInstalled | None = None
    sage: SageProbe | None = None
    shim: ShimStatus = "missing"
    site_packages: Path | None = None

    @property
    def state_dir(self) -> Path:
        """`DIR/.comfy-install`."""
        return install_state_dir(self.comfyui_dir.parent)


@dataclass(frozen=True)
class LaunchPlan:
    """Everything a launch will do: command, environment, tunings and where to look."""

    argv: tuple[str, ...]
    cwd: Path
    env_set: dict[str, str]
    user_env: dict[str, str]
    tunings: tuple[Tuning, ...]
    host: str
    port: int
    listen_hosts: tuple[str, ...]
    url: str
    warmup: bool
    needs_shim: bool
    platform: str

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        """Return the child's full environment: ``base`` plus the variables set here.

        Args:
            base: The environment to start from, usually `os.environ`; the plan's variables override
                its values.
        """
        merged = dict(base)
        merged.update(self.env_set)
        return merged

    def command_line(self) -> str:
        """Return the command as one line to paste into this platform's shell."""
        if self.platform == "windows":
            return subprocess.list2cmdline(self.argv)
        return " ".join(shlex.quote(arg) for arg in self.argv)

    def tuning(self, name: str) -> Tuning | None:
        """Return the tuning called ``name``, if the plan has one.

        Args:
            name: The tuning's name, e.g. `tf32`, `allocator` or `sage-attention`.
        """
        return next((t for t in self.tunings if t.name == name), None)

    def as_data(self) -> dict[str, Any]:
        """Return the plan as JSON-ready data (for `--print-env --json`)."""
        return {
            "argv": list(self.argv),
            "command_line": self.command_line(),
            "cwd": str(self.cwd),
            "url": self.url,
            "host": self.host,
            "port": self.port,
            "warmup": self.warmup,
            "env": dict(self.env_set),
            "user_env": dict(self.user_env),
            "tunings": [asdict(t) for t in self.tunings],
            "needs_shim": self.needs_shim,
        }


@dataclass(frozen=True)
class LaunchOutcome:
    """How a launch ended (foreground) or what is running now (background)."""

    pid: int
    url: str
    log_path: Path
    seconds_to_ready: float | None
    background: bool
    exit_code: int | None = None

    def as_data(self) -> dict[str, Any]:
        """Return the outcome as JSON-ready data."""
        return {
            "pid": self.pid,
            "url": self.url,
            "log": str(self.log_path),
            "seconds_to_ready": self.seconds_to_ready,
            "background": self.background,
            "exit_code": self.exit_code,
        }


@dataclass(frozen=True)
class PidRecord:
    """The content of `DIR/.comfy-install/comfyui.pid`."""

    pid: int
    port: int
    url: str
    started_at: str
    log: str
    argv: list[str] = field(default_factory=list)
    mode: str = "background"


@dataclass(frozen=True)
class StopOutcome:
    """What `stop` found and did."""

    was_running: bool
    pid: int | None = None
    stale: bool = False
    forced: bool = False
    message: str = ""

    def as_data(self) -> dict[str, Any]:
        """Return the outcome as JSON-ready data."""
        return asdict(self)


@dataclass(frozen=True)
class PortHolder:
    """The process that listens on a port, as far as the OS lets us see it."""

    pid: int | None
    command: str | None
    user: str | None = None


# --- pure decisions ----------------------------------------------------------


def parse_flag(name: str, value: str) -> bool:
    """Read a boolean environment value the way the shim reads it.

    Args:
        name: The variable's name (for the error message).
        value: Its value: 1/0, true/false, yes/no or on/off, any case.

    Returns:
        The boolean.

    Raises:
        UsageError: The value is none of those.
    """
    text = value.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise _invalid([f"{name}={value} is not a boolean: use one of {', '.join(BOOL_VALUES)}"])


def _invalid(problems: list[str]) -> UsageError:
    return UsageError(
        "Invalid launch setting" + ("s" if len(problems) > 1 else "") + ": " + "; ".join(problems),
        "Fix or unset these environment variables, then launch again.",
    )


def user_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """Return the launch-related variables the user set (empty values count as unset).

    Args:
        environ: The user's environment.

    Returns:
        ``{name: value}`` for every variable of ``RELEVANT_VARIABLES`` with a value.
    """
    return {name: environ[name] for name in RELEVANT_VARIABLES if environ.get(name, "").strip()}


def validate_settings(environ: Mapping[str, str], *, tune: bool = True) -> None:
    """Refuse invalid tuning values before anything starts, listing the allowed ones.

    Args:
        environ: The user's environment.
        tune: Whether tuning is on; with `--no-tune` only `ENABLE_STARTUP_WARMUP`
            is read (the tuning variables are ignored), so only it is checked.

    Raises:
        UsageError: One or more values are invalid (every problem is listed).
    """
    settings = user_settings(environ)
    problems: list[str] = []

    def check(name: str, allowed: Sequence[str]) -> None:
        value = settings.get(name)
        if value is not None and value.strip().lower() not in allowed:
            problems.append(f"{name}={value} is not valid: use one of {', '.join(allowed)}")

    check(WARMUP_ENV, BOOL_VALUES)
    if tune:
        for name in BOOL_VARIABLES:
            check(name, BOOL_VALUES)
        check("MATMUL_PRECISION", MATMUL_PRECISIONS)
        check("TORCH_COMPILE_MODE", COMPILE_MODES)
        check("TORCH_COMPILE_DYNAMIC", DYNAMIC_VALUES)
        backend = settings.get("TORCH_COMPILE_BACKEND")
        if backend is not None and not _BACKEND_NAME.match(backend.strip()):
            problems.append(
                f"TORCH_COMPILE_BACKEND={backend} is not a backend name "
                f"(for example {', '.join(COMMON_BACKENDS)})"
            )
    if problems:
        raise _invalid(problems)


def split_extra_args(text: str, platform: str) -> tuple[str, ...]:
    r"""Split `COMFY_EXTRA_ARGS` into arguments the way the platform's shell would.

    POSIX rules on Linux (quotes and backslash escapes); on Windows, quotes group
    words and backslashes are kept, so `C:\\models\\x` survives.

    Args:
        text: The variable's value.
        platform: `linux` or `windows`.

    Returns:
        The arguments.

    Raises:
        UsageError: A quote is not closed.
    """
    try:
        if platform == "windows":
            parts = shlex.split(text, posix=False)
            return tuple(
                p[1:-1] if len(p) >= 2 and p[0] == p[-1] and p[0] in "\"'" else p for p in parts
            )
        return tuple(shlex.split(text))
    except ValueError as exc:
        raise UsageError(
            f"{EXTRA_ARGS_ENV} cannot be split into arguments: {exc} ({text!r}).",
            "Close the quote, or quote arguments that hold spaces.",
        ) from exc


def _option(args: Sequence[str], name: str) -> tuple[bool, str | None]:
    """Return whether option ``name`` is in ``args``, and its value (the last one wins)."""
    found, value = False, None
    for index, arg in enumerate(args):
        if arg == name:
            found = True
            following = args[index + 1] if index + 1 < len(args) else None
            value = following if following is not None and not following.startswith("-") else None
        elif arg.startswith(name + "="):
            found, value = True, arg.split("=", 1)[1]
    return found, value


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


CPU_ONLY = "ComfyUI runs with --cpu"


def _no_gpu(gpu: GpuReport) -> str:
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
        return Tuning(name, "off", _no_gpu(gpu))
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
        return Tuning(name, "off", _no_gpu(gpu), variable)
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
        return Tuning(name, "off", _no_gpu(gpu), variable)
    if _option(comfy_args, "--deterministic")[0]:
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
    if _option(comfy_args, argument)[0]:
        return Tuning(name, "user", "you chose it", argument=argument)
    if _option(comfy_args, "--cuda-malloc")[0]:
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


def decide_sage(
    tune: bool, gpu: GpuReport, sage: SageProbe | None, comfy_args: Sequence[str]
) -> Tuning:
    """Decide whether to add `--use-sage-attention`.

    Args:
        tune: Tuning on.
        gpu: The GPU report (the lowest compute capability counts).
        sage: What the venv has (None when it was not checked).
        comfy_args: The arguments ComfyUI will get from the user.

    Returns:
        The SageAttention tuning; ``argument`` is set when the flag is added.
    """
    name = "sage-attention"
    if not tune:
        return Tuning(name, "off", "--no-tune")
    chosen = [flag for flag in ATTENTION_FLAGS if _option(comfy_args, flag)[0]]
    if chosen:
        return Tuning(name, "user", f"you chose {chosen[-1]}", argument=chosen[-1])
    cc = gpu.planning_cc
    if cc is None:
        return Tuning(name, "off", _no_gpu(gpu))
    if cc < SAGE_MIN_CC:
        return Tuning(name, "off", f"compute capability {cc} is below 8.0")
    if sage is None:
        return Tuning(name, "off", "the venv could not be checked for sageattention")
    if not sage.sageattention:
        return Tuning(name, "off", "sageattention is not installed in the venv")
    if not sage.triton:
        return Tuning(
            name, "off", "sageattention is installed but triton is not (ComfyUI would fail)"
        )
    return Tuning(
        name,
        "on",
        f"sageattention and triton are installed; compute capability {cc} supports it",
        argument="--use-sage-attention",
    )


def _shim_problem(shim: ShimStatus, site_packages: Path | None) -> str | None:
    if shim == "foreign":
        return (
            f"{site_packages}/{SHIM_MODULE}.py was not written by comfy-install "
            "and is left alone, so in-process tuning is skipped"
        )
    if shim == "unavailable":
        return "the venv has no site-packages folder for the tuning shim"
    return None


def _poll_host(listen: str) -> tuple[str, tuple[str, ...]]:
    """Return the host to poll and the hosts ComfyUI binds for a `--listen` value."""
    hosts = tuple(h.strip() for h in listen.split(",") if h.strip()) or ("127.0.0.1",)
    first = hosts[0]
    poll = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(first, first)  # noqa: S104
    return poll, hosts


def url_for(host: str, port: int) -> str:
    """Return ``http://host:port`` (IPv6 hosts in brackets).

    Args:
        host: Host name or address; one with a `:` (IPv6) is put in brackets.
        port: The TCP port.
    """
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def plan_launch(
    request: LaunchRequest, facts: LaunchFacts, environ: Mapping[str, str]
) -> LaunchPlan:
    """Decide the command, environment and tunings of a launch (no I/O).

    Args:
        request: The command-line request.
        facts: The machine and install (see [`gather_facts`][installer.launch.gather_facts]).
        environ: The user's environment (never changed; variables in it win).

    Returns:
        The plan.

    Raises:
        UsageError: An invalid setting, an unbalanced quote in `COMFY_EXTRA_ARGS`,
            or a `--port` in the ComfyUI arguments that is not a number.
    """
    validate_settings(environ, tune=request.tune)
    user = user_settings(environ)
    comfy_args = (
        *split_extra_args(user.get(EXTRA_ARGS_ENV, ""), facts.platform),
        *request.extra_args,
    )
    gpu = GpuReport("none", CPU_ONLY) if _option(comfy_args, "--cpu")[0] else facts.gpu
    tf32 = decide_tf32(request.tune, gpu, user)
    in_process = _apply_shim_limits(
        [
            tf32,
            decide_cudnn_benchmark(request.tune, gpu, user, comfy_args),
            decide_matmul_precision(request.tune, tf32, user),
            *decide_compile(request.tune, user),
        ],
        request.tune,
        facts,
        user,
    )
    native = decide_cuda_malloc(in_process, comfy_args)
    native_allocator = _option(comfy_args, "--disable-cuda-malloc")[0] or (
        native is not None and native.status == "on"
    )
    tunings = [
        decide_allocator(request.tune, gpu, facts.torch, facts.platform, user, native_allocator),
        *in_process,
        *([native] if native is not None else []),
        decide_sage(request.tune, gpu, facts.sage, comfy_args),
    ]
    needs_shim = any(_needs_shim(t) for t in tunings)

    env_set = {t.variable: t.value for t in tunings if t.status == "on" and t.variable and t.value}
    if needs_shim and MARKER_ENV not in user:
        env_set[MARKER_ENV] = "1"
    if facts.platform == "windows" and "PYTHONIOENCODING" not in user:
        # ComfyUI's output goes through a pipe to be logged; Windows would
        # otherwise encode it with the ANSI code page and fail on other text.
        env_set["PYTHONIOENCODING"] = "utf-8"

    port_given, port_text = _option(comfy_args, "--port")
    port = request.port
    if port_given:
        try:
            port = int(port_text or "")
        except ValueError:
            raise UsageError(
                f"--port {port_text or ''} in the ComfyUI arguments is not a port number.",
                "Give --port a number, e.g. --port 8189.",
            ) from None
    listen_given, listen_text = _option(comfy_args, "--listen")
    if listen_given:
        listen = listen_text if listen_text is not None else "0.0.0.0,::"
    else:
        listen = request.listen or "127.0.0.1"
    host, hosts = _poll_host(listen)

    argv = [str(facts.venv_python), "-u", str(facts.comfyui_dir / "main.py")]
    if request.listen is not None and not listen_given:
        argv += ["--listen", request.listen]
    if not port_given:
        argv += ["--port", str(request.port)]
    argv += [t.argument for t in tunings if t.status == "on" and t.argument]
    argv += comfy_args
    warmup = parse_flag(WARMUP_ENV, user[WARMUP_ENV]) if WARMUP_ENV in user else True
    return LaunchPlan(
        argv=tuple(argv),
        cwd=facts.comfyui_dir,
        env_set=env_set,
        user_env=user,
        tunings=tuple(tunings),
        host=host,
        port=port,
        listen_hosts=hosts,
        url=url_for(host, port),
        warmup=warmup,
        needs_shim=needs_shim,
        platform=facts.platform,
    )


def _needs_shim(tuning: Tuning) -> bool:
    if not tuning.in_process or tuning.status == "off":
        return False
    # ENABLE_TORCH_COMPILE=0 of the user's asks the shim for nothing.
    return tuning.name != "torch-compile" or parse_flag(tuning.name, tuning.value or "")


def _apply_shim_limits(
    tunings: list[Tuning], tune: bool, facts: LaunchFacts, user: Mapping[str, str]
) -> list[Tuning]:
    """Turn in-process tunings off when the shim cannot run them, saying why."""
    if not tune:
        return tunings
    problem = _shim_problem(facts.shim, facts.site_packages)
    if problem is None and MARKER_ENV in user and not parse_flag(MARKER_ENV, user[MARKER_ENV]):
        problem = f"{MARKER_ENV}={user[MARKER_ENV]} is set by you"
    if problem is None:
        return tunings
    return [
        replace(t, status="off", reason=f"{t.reason}; not applied: {problem}")
        if t.in_process and t.status != "off"
        else t
        for t in tunings
    ]


# --- facts about the machine -------------------------------------------------

_SAGE_PROBE = (
    "import importlib.util as u; "
    "print(int(bool(u.find_spec('sageattention'))), int(bool(u.find_spec('triton'))))"
)


def probe_sage(venv_python: Path, environ: Mapping[str, str] | None = None) -> SageProbe | None:
    """Ask the venv's Python whether `sageattention` and `triton` can be found (no import).

    Args:
        venv_python: The venv's interpreter.
        environ: Environment for the check (default: this process's).

    Returns:
        What was found, or None when the interpreter did not answer.
    """
    env = dict(os.environ if environ is None else environ)
    env.pop(MARKER_ENV, None)
    try:
        done = subprocess.run(
            [str(venv_python), "-c", _SAGE_PROBE],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=env,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    words = done.stdout.split()
    if done.returncode != 0 or len(words) != 2:
        return None
    return SageProbe(sageattention=words[0] == "1", triton=words[1] == "1")


def shim_source() -> str:
    """Return the source of the tuning shim as it is written into the venv."""
    from importlib.resources import files

    return files("installer").joinpath("tuning_shim.py").read_text(encoding="utf-8")


def shim_pth() -> str:
    """Return the `.pth` file that activates the shim only when the launcher asks for it."""
    return (
        f"{SHIM_MARKER}: starts {SHIM_MODULE} only under `comfy-install launch`.\n"
        f"import os; os.environ.get({MARKER_ENV!r}) and __import__({SHIM_MODULE!r}).activate()\n"
    )


def shim_paths(site_packages: Path) -> tuple[Path, Path]:
    """Return the shim module and its `.pth` file inside ``site_packages``.

    Args:
        site_packages: The venv's site-packages folder.

    Returns:
        ``(module, pth)``: where the two files are, whether or not they exist.
    """
    return site_packages / f"{SHIM_MODULE}.py", site_packages / f"{SHIM_MODULE}.pth"


def shim_status(site_packages: Path | None) -> ShimStatus:
    """Say whether the venv holds the current tuning shim (reads only).

    Args:
        site_packages: The venv's site-packages, or None when it has none.

    Returns:
        ``current``, ``missing``, ``outdated`` (ours, older), ``foreign`` (a
        file of that name not written by comfy-install) or ``unavailable``.
    """
    if site_packages is None or not site_packages.is_dir():
        return "unavailable"
    wanted = (shim_source(), shim_pth())
    found: list[str | None] = []
    for path in shim_paths(site_packages):
        try:
            found.append(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            found.append(None)
        except OSError:
            return "foreign"
    if any(text is not None and not text.startswith(SHIM_MARKER) for text in found):
        return "foreign"
    if tuple(found) == wanted:
        return "current"
    return "missing" if all(text is None for text in found) else "outdated"


def ensure_shim(site_packages: Path) -> ShimStatus:
    """Write the tuning shim into the venv when it is missing or outdated (atomically).

    A file of the same name that comfy-install did not write is never replaced.

    Args:
        site_packages: The venv's site-packages.

    Returns:
        ``current`` after writing (or when nothing needed writing), else the
        status that prevented it (``foreign`` or ``unavailable``).

    Raises:
        EnvironmentUnsupportedError: The folder is not writable.
    """
    status = shim_status(site_packages)
    if status in ("missing", "outdated"):
        module, pth = shim_paths(site_packages)
        atomic_write_text(module, shim_source())
        atomic_write_text(pth, shim_pth())
        return "current"
    return status


def gather_facts(
    request: LaunchRequest, platform: str | None = None, environ: Mapping[str, str] | None = None
) -> LaunchFacts:
    """Read what a launch depends on: GPU, torch, SageAttention and the shim's state.

    Args:
        request: The command-line request.
        platform: The platform (default: this machine's).
        environ: The user's environment (default: this process's).

    Returns:
        The facts.

    Raises:
        EnvironmentUnsupportedError: DIR has no venv Python or no `ComfyUI/main.py`.
    """
    platform = platform or current_platform()
    paths = layout(request.install_dir, platform)
    python, comfyui = paths["venv_python"], paths["comfyui"]
    for path, what in ((python, "the venv's Python"), (comfyui / "main.py", "ComfyUI/main.py")):
        if not path.is_file():
            raise EnvironmentUnsupportedError(
                f"{request.install_dir} is not a finished install: {what} ({path}) is missing.",
                f"Run `comfy-install install {request.install_dir}` first.",
            )
    gpu = detect_gpus()
    sites = site_packages_dirs(paths["venv"], platform)
    site = sites[0] if sites else None
    cc = gpu.planning_cc
    sage = (
        probe_sage(python, environ)
        if request.tune and cc is not None and cc >= SAGE_MIN_CC
        else None
    )
    return LaunchFacts(
        platform=platform,
        venv_python=python,
        comfyui_dir=comfyui,
        gpu=gpu,
        torch=installed_torch(paths["venv"], platform),
        sage=sage,
        shim=shim_status(site),
        site_packages=site,
    )


# --- reporting -----------------------------------------------------------------


def describe_machine(facts: LaunchFacts) -> list[str]:
    """Return the lines that say which GPU and torch ComfyUI will run on.

    Args:
        facts: The launch facts.

    Returns:
        One line per GPU (or why there is none), then one for torch.
    """
    lines: list[str] = []
    for gpu in facts.gpu.gpus:
        vram = f"{gpu.vram_gib:.1f} GiB VRAM" if gpu.vram_gib is not None else "VRAM unknown"
        lines.append(f"GPU {gpu.index}: {gpu.name}, {vram}, compute capability {gpu.cc}")
    if not facts.gpu.gpus:
        lines.append(f"GPU: none ({facts.gpu.reason})")
    torch = facts.torch
    if torch is None:
        lines.append("torch: not found in the venv")
    else:
        build = f"CUDA {torch.cuda} build ({torch.build})" if torch.cuda else "CPU build"
        lines.append(f"torch: {torch.version}, {build}")
    return lines


def describe_tunings(plan: LaunchPlan) -> list[tuple[TuningStatus, str]]:
    """Return one line per tuning, with its status, for the log and `--print-env`.

    Args:
        plan: The launch plan.

    Returns:
        ``(status, line)`` pairs.
    """
    lines: list[tuple[TuningStatus, str]] = []
    for tuning in plan.tunings:
        what = tuning.argument or (
            f"{tuning.variable}={tuning.value}" if tuning.variable and tuning.value else ""
        )
        label = {"on": "on", "user": "yours", "off": "off"}[tuning.status]
        shown = f" {what}" if what and tuning.status != "off" else ""
        lines.append((tuning.status, f"{tuning.name}: {label}{shown} ({tuning.reason})"))
    return lines


def render_print_env(plan: LaunchPlan, facts: LaunchFacts) -> str:
    """Return the `--print-env` text: machine, tunings, variables and the command.

    Variables are written as `export NAME=value` (`set NAME=value` on Windows)
    so they can be pasted into a shell.

    Args:
        plan: The launch plan.
        facts: The launch facts.

    Returns:
        The text, ending with a newline.
    """
    windows = plan.platform == "windows"

    def assign(name: str, value: str) -> str:
        return f"set {name}={value}" if windows else f"export {name}={shlex.quote(value)}"

    out = ["# comfy-install launch: what would run (nothing was started)"]
    out += [f"# {line}" for line in describe_machine(facts)]
    out += [f"# {line}" for _, line in describe_tunings(plan)]
    out.append("# variables comfy-install sets:")
    out += [assign(k, v) for k, v in sorted(plan.env_set.items())] or ["#   (none)"]
    out.append("# variables you set (kept as they are):")
    out += [assign(k, v) for k, v in sorted(plan.user_env.items())] or ["#   (none)"]
    out.append(f"# in {plan.cwd}; ready when {plan.url}/object_info answers:")
    out.append(plan.command_line())
    return "\n".join(out) + "\n"


def log_plan(plan: LaunchPlan, facts: LaunchFacts, log: InstallerLogger) -> None:
    """Log the machine, torch and every tuning decision (off ones with `--verbose`).

    Args:
        plan: The launch plan.
        facts: The launch facts.
        log: Where to say it.
    """
    for line in describe_machine(facts):
        log.info(line)
    for status, line in describe_tunings(plan):
        (log.debug if status == "off" else log.info)(f"tuning {line}")
    log.debug(f"$ {plan.command_line()}")


# --- ports -----------------------------------------------------------------


def _bind_target(host: str, port: int) -> tuple[int, tuple[Any, ...]] | None:
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return None
    family, _, _, _, address = info[0]
    return int(family), tuple(address)


def port_in_use(host: str, port: int) -> bool:
    """Return True when ``port`` cannot be bound on ``host`` because something holds it.

    Args:
        host: An address ComfyUI will listen on.
        port: The port.

    Returns:
        True when the address is in use. A host that is unknown or whose
        family (IPv6) this machine lacks counts as free: ComfyUI will report it.
    """
    target = _bind_target(host, port)
    if target is None:
        return False
    family, address = target
    try:
        probe = socket.socket(family, socket.SOCK_STREAM)
    except OSError:
        return False
    with probe:
        if os.name != "nt":
            # Like aiohttp's server: a port in TIME_WAIT after a restart is free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            return exc.errno in (errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", -1), 10048)
    return False


def _listening_inodes(port: int) -> list[tuple[int, int]]:
    """Return ``(inode, uid)`` of the sockets bound to ``port``, listening ones first."""
    listening: list[tuple[int, int]] = []
    other: list[tuple[int, int]] = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text(encoding="ascii").splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cells = row.split()
            if len(cells) < 10:
                continue
            try:
                local_port = int(cells[1].rsplit(":", 1)[1], 16)
                uid, inode = int(cells[7]), int(cells[9])
            except (IndexError, ValueError):
                continue
            if local_port != port or inode == 0:
                continue
            (listening if cells[3] == "0A" else other).append((inode, uid))
    return listening + other


def _command_of(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    words = [w.decode(errors="replace") for w in raw.split(b"\0") if w]
    text = " ".join(words)
    return text[:200] + ("..." if len(text) > 200 else "") if text else None


def _user_name(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return f"uid {uid}"


def port_holder(port: int) -> PortHolder | None:
    """Find the process that holds a TCP port (Linux: `/proc/net/tcp{,6}` and `/proc/*/fd`).

    Args:
        port: The port.

    Returns:
        The holder (pid and command when its file descriptors are readable,
        else only its user), or None where the OS does not say.
    """
    sockets = _listening_inodes(port)
    if not sockets:
        return None
    wanted = {f"socket:[{inode}]": uid for inode, uid in sockets}
    proc = Path("/proc")
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = str(fd.readlink())
            except OSError:
                continue
            if target in wanted:
                pid = int(entry.name)
                return PortHolder(pid, _command_of(pid), _user_name(wanted[target]))
    return PortHolder(None, None, _user_name(sockets[0][1]))


def _free_port_near(port: int, host: str) -> int | None:
    for candidate in range(port + 1, min(port + 50, 65535)):
        if not port_in_use(host, candidate):
            return candidate
    return None


def check_port(plan: LaunchPlan) -> None:
    """Make sure ComfyUI's port is free on every address it will listen on.

    Args:
        plan: The launch plan.

    Raises:
        EnvironmentUnsupportedError: The port is in use; the message names the
            process holding it where the OS lets us see it.
    """
    for host in plan.listen_hosts:
        if not port_in_use(host, plan.port):
            continue
        holder = port_holder(plan.port) if current_platform() == "linux" else None
        where = f"Port {plan.port} on {host} is already in use"
        if holder is not None and holder.pid is not None:
            where += f" by pid {holder.pid} ({holder.command or 'command unknown'})"
        elif holder is not None:
            where += f" by a process of {holder.user} (its details are not visible to you)"
        free = _free_port_near(plan.port, host)
        hint = "Stop that process, or choose another port with --port"
        hint += f" (port {free} is free)." if free else "."
        raise EnvironmentUnsupportedError(where + ".", hint)


# --- the ComfyUI process -------------------------------------------------------


def pid_file(state_dir: Path) -> Path:
    """Return `DIR/.comfy-install/comfyui.pid`.

    Args:
        state_dir: The install's state folder, `DIR/.comfy-install`.
    """
    return state_dir / PID_FILENAME


def read_pid_file(state_dir: Path) -> PidRecord | None:
    """Read the pid file; None when there is none or it cannot be used.

    Args:
        state_dir: The install's state folder, `DIR/.comfy-install`.

    Returns:
        The recorded process, or None when the file is missing, not JSON, or lacks the record's
        fields.
    """
    try:
        data = json.loads(pid_file(state_dir).read_text(encoding="utf-8"))
        return PidRecord(**data)
    except (OSError, ValueError, TypeError):
        return None


def _remove_pid_file(state_dir: Path, pid: int) -> None:
    record = read_pid_file(state_dir)
    if record is None or record.pid == pid:
        with contextlib.suppress(FileNotFoundError):
            pid_file(state_dir).unlink()


def process_running(pid: int) -> bool:
    """Return True when ``pid`` is a live process (a zombie waiting to be reaped is not).

    Args:
        pid: The process id.

    Returns:
        Whether it runs.
    """
    if not pid_alive(pid):
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return True  # no /proc (Windows) or it vanished just now: pid_alive said yes
    state = stat.rsplit(")", 1)[-1].split()[:1]
    return state not in (["Z"], ["X"])


def _is_recorded_comfyui(record: PidRecord) -> bool:
    """Return True when the recorded pid still runs the recorded command (not a reused pid)."""
    if not process_running(record.pid):
        return False
    command = _command_of(record.pid)
    if command is None or not record.argv:
        return True
    main = next((a for a in record.argv if a.endswith("main.py")), None)
    return main is None or main in command


def _log_path(state_dir: Path) -> Path:
    folder = state_dir / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = folder / f"comfyui-{stamp}.log"
    counter = 2
    while path.exists():
        path = folder / f"comfyui-{stamp}-{counter}.log"
        counter += 1
    return path


def _popen_options(platform: str, background: bool) -> dict[str, Any]:
    if platform == "windows":
        flags = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
        if background:
            flags |= getattr(subprocess, "DETACHED_PROCESS", 0)
        return {"creationflags": flags}
    # Its own session: the terminal's Ctrl-C reaches only the launcher, which
    # forwards one SIGINT; a background ComfyUI outlives the terminal.
    return {"start_new_session": True}


def _signal_group(pid: int, sig: int) -> None:
    """Send ``sig`` to ``pid``'s process group when it leads one of its own, else to ``pid``."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.name == "nt":
            os.kill(pid, sig)
            return
        pgid = os.getpgid(pid)
        if pgid == pid and pgid != os.getpgrp():
            os.killpg(pgid, sig)
        else:
            os.kill(pid, sig)


def _interrupt_signal() -> int:
    # A child in its own process group on Windows only hears CTRL_BREAK.
    if os.name == "nt":
        return int(getattr(signal, "CTRL_BREAK_EVENT", signal.SIGINT))
    return int(signal.SIGINT)


def _terminate_signal() -> int:
    return int(signal.SIGTERM)


def _kill_signal() -> int:
    return int(getattr(signal, "SIGKILL", signal.SIGTERM))


def _wait_gone(pid: int, seconds: float, process: subprocess.Popen[bytes] | None) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None:
            if process.poll() is not None:
                return True
        elif not process_running(pid):
            return True
        time.sleep(0.05)
    return process.poll() is not None if process is not None else not process_running(pid)


def stop_process(
    pid: int,
    *,
    process: subprocess.Popen[bytes] | None = None,
    grace: float = 10.0,
    terminate_grace: float = 5.0,
) -> bool:
    """Stop ComfyUI and its process group: SIGINT, then terminate, then kill.

    Args:
        pid: The process (leader of its own group on POSIX).
        process: The Popen object when this process started it (to reap it).
        grace: Seconds to wait after SIGINT (ComfyUI shuts down cleanly on it).
        terminate_grace: Seconds to wait after terminate before killing.

    Returns:
        True when it had to be killed.
    """
    with _sigint_ignored():
        return _stop_process(pid, process, grace, terminate_grace)


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Keep a second Ctrl-C from cutting the shutdown of ComfyUI short."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: nothing to protect
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _stop_process(
    pid: int, process: subprocess.Popen[bytes] | None, grace: float, terminate_grace: float
) -> bool:
    forced = False
    for sig, wait in (
        (_interrupt_signal(), grace),
        (_terminate_signal(), terminate_grace),
        (_kill_signal(), terminate_grace),
    ):
        _signal_group(pid, sig)
        if _wait_gone(pid, wait, process):
            break
        forced = True
    if os.name != "nt":
        # Children ComfyUI left in its group (compile workers) go with it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if pid != os.getpgrp():
                os.killpg(pid, _kill_signal())
    return forced


@dataclass
class _Output:
    """ComfyUI's output as the launcher sees it: the remembered tail, and where it started."""

    tail: deque[str] = field(default_factory=lambda: deque(maxlen=40))
    thread: threading.Thread | None = None


_LINE_BREAK = re.compile(r"\r\n|\n|\r")


def _pump(stream: IO[bytes], log_file: IO[str], terminal: IO[str], output: _Output) -> None:
    """Copy ComfyUI's output to the terminal and the log file as it comes.

    Chunks, not lines: progress bars redraw with a carriage return and no
    newline, and must show while they run. Whole lines are kept for the tail.
    """
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    while True:
        try:
            chunk = os.read(stream.fileno(), 65536)
        except OSError:
            chunk = b""
        text = decoder.decode(chunk, final=not chunk)
        for sink in (terminal, log_file):
            with contextlib.suppress(OSError, ValueError):
                sink.write(text)
                sink.flush()
        *lines, pending = _LINE_BREAK.split(pending + text)
        output.tail.extend(line for line in lines if line.strip())
        if not chunk:
            break
    if pending.strip():
        output.tail.append(pending)


# The launcher's own lines in the shared log file (InstallerLogger's format).
_OWN_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d (STEP|INFO|DEBUG|WARN|ERROR|OUT) ")


def _file_tail(path: Path, offset: int, lines: int = 20) -> list[str]:
    """Return ComfyUI's last output lines from the log, from ``offset`` on."""
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    found = [x for x in text.splitlines() if x.strip() and not _OWN_LOG_LINE.match(x)]
    return found[-lines:]


class _EarlyExitError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class _NotReadyError(Exception):
    pass


def wait_until_ready(
    url: str,
    process: subprocess.Popen[bytes],
    timeout: float,
    log: InstallerLogger | None = None,
    *,
    started: float | None = None,
    interval: float = 0.25,
) -> float:
    """Poll `GET url/object_info` until it answers 200.

    Args:
        url: ComfyUI's base URL.
        process: The ComfyUI process (an exit ends the wait).
        timeout: Seconds to wait at most, counted from ``started``.
        log: Where to say that it is still waiting (every 30 s).
        started: `time.monotonic()` when ComfyUI was started (default: now).
        interval: Seconds between polls.

    Returns:
        Seconds from ``started`` until ComfyUI answered.

    Raises:
        _EarlyExitError: ComfyUI exited first.
        _NotReadyError: ``timeout`` passed.
    """
    import http.client
    import urllib.request

    start = time.monotonic() if started is None else started
    # No proxy: one from the environment must not see (or block) localhost.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    next_note = 30.0
    while True:
        code = process.poll()
        if code is not None:
            raise _EarlyExitError(code)
        remaining = max(1.0, min(30.0, timeout - (time.monotonic() - start)))
        with (
            contextlib.suppress(OSError, http.client.HTTPException),
            opener.open(f"{url}/object_info", timeout=remaining) as answer,
        ):
            if answer.status == 200:
                return time.monotonic() - start
        elapsed = time.monotonic() - start
        if elapsed >= timeout:
            raise _NotReadyError
        if log is not None and elapsed >= next_note:
            log.info(f"still waiting for {url}/object_info ({elapsed:.0f} s)")
            next_note += 30.0
        time.sleep(interval)


@contextlib.contextmanager
def _stop_signals_raise() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into KeyboardInterrupt while ComfyUI runs in the foreground."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous: dict[int, Any] = {}
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is None:
            continue
        with contextlib.suppress(ValueError, OSError):
            previous[int(sig)] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig_number, old in previous.items():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(sig_number, old)


def _early_exit_error(
    code: int, tail: list[str], log_path: Path, seconds: float
) -> StepFailedError:
    shown = "\n  ".join(tail[-20:])
    message = f"ComfyUI exited during startup with exit code {code} after {seconds:.1f} s"
    message += ":\n  " + shown if shown else " and printed nothing."
    return StepFailedError(message, f"Read its output above; the full log is {log_path}.")


def run_comfyui(
    plan: LaunchPlan,
    facts: LaunchFacts,
    request: LaunchRequest,
    log: InstallerLogger,
    *,
    environ: Mapping[str, str] | None = None,
    terminal: IO[str] | None = None,
) -> LaunchOutcome:
    """Start ComfyUI as planned and wait until it answers; in the foreground, until it ends.

    Args:
        plan: The launch plan.
        facts: The launch facts.
        request: The request (timeout, background).
        log: Where the launcher's own messages go; its log file is attached to
            `DIR/.comfy-install/logs/comfyui-<stamp>.log`, which gets ComfyUI's
            output too.
        environ: The user's environment (default: this process's).
        terminal: Where ComfyUI's output is shown in the foreground (default: stderr).

    Returns:
        The outcome: in the background once ComfyUI is ready; in the
        foreground once ComfyUI has exited by itself with code 0.

    Raises:
        EnvironmentUnsupportedError: The port is in use, or a ComfyUI launched
            from DIR is still running.
        StepFailedError: ComfyUI exited during startup, did not answer within
            the timeout, or (foreground) exited with an error later.
        InterruptedByUserError: Ctrl-C (or SIGTERM); ComfyUI was stopped.
    """
    state_dir = facts.state_dir
    running = read_pid_file(state_dir)
    if running is not None and _is_recorded_comfyui(running):
        raise EnvironmentUnsupportedError(
            f"ComfyUI launched from {facts.comfyui_dir.parent} is already running "
            f"(pid {running.pid}, {running.url}, since {running.started_at}).",
            f"Stop it with `comfy-install stop {facts.comfyui_dir.parent}` first.",
        )
    check_port(plan)
    problem = _shim_problem(facts.shim, facts.site_packages)
    if request.tune and problem is not None:
        log.warn(f"TF32, cuDNN and torch.compile tuning is skipped: {problem}.")
    if plan.needs_shim and facts.site_packages is not None:
        status = ensure_shim(facts.site_packages)
        if status != "current":
            log.warn(f"in-process tuning is skipped: the tuning shim is {status}")
        elif facts.shim != "current":
            log.debug(f"wrote the tuning shim ({SHIM_MODULE}.py/.pth) to {facts.site_packages}")
    log_path = _log_path(state_dir)
    log.attach_file(log_path)
    log_plan(plan, facts, log)
    env = plan.environment(os.environ if environ is None else environ)
    if request.background:
        return _run_background(plan, request, log, env, log_path)
    return _run_foreground(plan, request, log, env, log_path, terminal or sys.stderr)


def _spawn(
    plan: LaunchPlan, env: Mapping[str, str], stdout: IO[bytes] | int, background: bool
) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(
            list(plan.argv),
            cwd=plan.cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.STDOUT,
            **_popen_options(plan.platform, background),
        )
    except OSError as exc:
        raise EnvironmentUnsupportedError(
            f"ComfyUI could not be started: {plan.argv[0]}: {exc.strerror or exc}.",
            "Check the venv (`comfy-install doctor DIR`), or reinstall with "
            "`comfy-install install DIR --force venv`.",
        ) from exc


def _write_pid(state_dir: Path, plan: LaunchPlan, pid: int, log_path: Path, mode: str) -> None:
    record = PidRecord(
        pid=pid,
        port=plan.port,
        url=plan.url,
        started_at=now_iso(),
        log=str(log_path),
        argv=list(plan.argv),
        mode=mode,
    )
    atomic_write_text(pid_file(state_dir), json.dumps(asdict(record), indent=2) + "\n")


def _run_background(
    plan: LaunchPlan,
    request: LaunchRequest,
    log: InstallerLogger,
    env: Mapping[str, str],
    log_path: Path,
) -> LaunchOutcome:
    state_dir = install_state_dir(plan.cwd.parent)
    with log_path.open("ab") as sink:
        offset = sink.seek(0, os.SEEK_END)
        process = _spawn(plan, env, sink, background=True)
    start = time.monotonic()
    try:
        _write_pid(state_dir, plan, process.pid, log_path, "background")
    except BaseException:
        stop_process(process.pid, process=process)
        raise
    log.info(f"ComfyUI started in the background (pid {process.pid}); log: {log_path}")
    try:
        if plan.warmup:
            seconds: float | None = wait_until_ready(
                plan.url, process, request.timeout, log, started=start
            )
        else:
            time.sleep(0.5)
            code = process.poll()
            if code is not None:
                raise _EarlyExitError(code)
            seconds = None
    except _EarlyExitError as exc:
        _remove_pid_file(state_dir, process.pid)
        raise _early_exit_error(
            exc.code, _file_tail(log_path, offset), log_path, time.monotonic() - start
        ) from None
    except _NotReadyError:
        stop_process(process.pid, process=process)
        _remove_pid_file(state_dir, process.pid)
        raise _not_ready_error(plan, request, _file_tail(log_path, offset), log_path) from None
    except KeyboardInterrupt:
        stop_process(process.pid, process=process)
        _remove_pid_file(state_dir, process.pid)
        raise InterruptedByUserError(
            "Interrupted: ComfyUI was stopped before it was ready.",
            "Launch it again when you are ready.",
        ) from None
    _report_ready(plan, seconds, log)
    return LaunchOutcome(process.pid, plan.url, log_path, seconds, background=True)


def _not_ready_error(
    plan: LaunchPlan, request: LaunchRequest, tail: list[str], log_path: Path
) -> StepFailedError:
    shown = "\n  ".join(tail[-20:])
    message = (
        f"ComfyUI did not answer {plan.url}/object_info within {request.timeout:.0f} s "
        "and was stopped"
    )
    message += ":\n  " + shown if shown else "."
    return StepFailedError(
        message,
        f"Give it longer with --timeout, or set {WARMUP_ENV}=0 not to wait; log: {log_path}.",
    )


def _report_ready(plan: LaunchPlan, seconds: float | None, log: InstallerLogger) -> None:
    everywhere = any(h in ("0.0.0.0", "::") for h in plan.listen_hosts)  # noqa: S104
    note = " (listening on all interfaces)" if everywhere else ""
    if seconds is None:
        log.success(f"ComfyUI is starting at {plan.url}{note} (not waiting: {WARMUP_ENV}=0)")
    else:
        log.success(f"ComfyUI is ready at {plan.url}{note} after {seconds:.1f} s")


def _run_foreground(
    plan: LaunchPlan,
    request: LaunchRequest,
    log: InstallerLogger,
    env: Mapping[str, str],
    log_path: Path,
    terminal: IO[str],
) -> LaunchOutcome:
    state_dir = install_state_dir(plan.cwd.parent)
    output = _Output()
    with log_path.open("a", encoding="utf-8") as log_file, _stop_signals_raise():
        process = _spawn(plan, env, subprocess.PIPE, background=False)
        start = time.monotonic()
        assert process.stdout is not None
        output.thread = threading.Thread(
            target=_pump, args=(process.stdout, log_file, terminal, output), daemon=True
        )
        output.thread.start()
        try:
            _write_pid(state_dir, plan, process.pid, log_path, "foreground")
            seconds: float | None = None
            try:
                if plan.warmup:
                    seconds = wait_until_ready(plan.url, process, request.timeout, started=start)
                _report_ready(plan, seconds, log)
            except _EarlyExitError as exc:
                _finish_output(output)
                raise _early_exit_error(
                    exc.code, list(output.tail), log_path, time.monotonic() - start
                ) from None
            except _NotReadyError:
                stop_process(process.pid, process=process)
                _finish_output(output)
                raise _not_ready_error(plan, request, list(output.tail), log_path) from None
            code = _wait_for_exit(process)
            _finish_output(output)
        except KeyboardInterrupt:
            log.info(f"stopping ComfyUI (pid {process.pid})...")
            forced = stop_process(process.pid, process=process)
            _finish_output(output)
            raise InterruptedByUserError(
                f"ComfyUI was stopped{' (it had to be killed)' if forced else ''}.",
                f"Start it again with `comfy-install launch {plan.cwd.parent}`.",
            ) from None
        finally:
            if process.poll() is None:
                stop_process(process.pid, process=process)
            _remove_pid_file(state_dir, process.pid)
    if code != 0:
        shown = "\n  ".join(list(output.tail)[-20:])
        raise StepFailedError(
            f"ComfyUI exited with code {code}" + (":\n  " + shown if shown else "."),
            f"Read its output above; the full log is {log_path}.",
        )
    log.info("ComfyUI exited.")
    return LaunchOutcome(process.pid, plan.url, log_path, seconds, background=False, exit_code=0)


def _wait_for_exit(process: subprocess.Popen[bytes]) -> int:
    while True:
        try:
            return process.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            continue


def _finish_output(output: _Output) -> None:
    # Children of ComfyUI may keep the pipe open: do not wait for them forever.
    if output.thread is not None:
        output.thread.join(timeout=2.0)


def stop_comfyui(install_dir: Path, log: InstallerLogger, grace: float = 10.0) -> StopOutcome:
    """Stop the ComfyUI that `comfy-install launch` started from ``install_dir``.

    Args:
        install_dir: The install directory.
        log: Where to say what happened.
        grace: Seconds ComfyUI gets to stop after SIGINT before it is terminated.

    Returns:
        What was found and done; a missing or stale pid file is not an error
        (the stale file is removed).
    """
    state_dir = layout(install_dir, current_platform())["state_dir"]
    record = read_pid_file(state_dir)
    if record is None:
        message = f"ComfyUI is not running from {install_dir} (no pid file)."
        log.info(message)
        return StopOutcome(was_running=False, message=message)
    if not _is_recorded_comfyui(record):
        _remove_pid_file(state_dir, record.pid)
        message = f"ComfyUI (pid {record.pid}) was not running; removed the stale pid file."
        log.info(message)
        return StopOutcome(was_running=False, pid=record.pid, stale=True, message=message)
    log.info(f"stopping ComfyUI (pid {record.pid}, {record.url})...")
    forced = stop_process(record.pid, grace=grace)
    _remove_pid_file(state_dir, record.pid)
    message = f"ComfyUI (pid {record.pid}) stopped" + (" (it had to be killed)." if forced else ".")
    log.success(message)
    return StopOutcome(was_running=True, pid=record.pid, forced=forced, message=message)


def launch(
    request: LaunchRequest,
    log: InstallerLogger,
    environ: Mapping[str, str] | None = None,
) -> LaunchOutcome:
    """Gather the facts, plan, and run ComfyUI (the whole `comfy-install launch`).

    Args:
        request: The command-line request.
        log: Where to say what happens.
        environ: The user's environment (default: this process's).

    Returns:
        The outcome (see [`run_comfyui`][installer.launch.run_comfyui]).

    Raises:
        InstallerError: Any failure, with its message, hint and exit code.
    """
    env = os.environ if environ is None else environ
    facts = gather_facts(request, environ=env)
    plan = plan_launch(request, facts, env)
    return run_comfyui(plan, facts, request, log, environ=env)
