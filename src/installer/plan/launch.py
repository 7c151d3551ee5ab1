"""The plan of a launch: from the request, the machine's facts and the environment to the command.

[`plan_launch`][installer.plan.launch.plan_launch] turns the request (port,
`--no-tune`, ComfyUI arguments), the facts about the machine
([`LaunchFacts`][installer.plan.launch.LaunchFacts]: GPU report, installed torch,
the attention packages in the venv, the install's calibration, its accelerator
proof, the state of the tuning shim) and the user's
environment into a [`LaunchPlan`][installer.plan.launch.LaunchPlan]: the exact
command, the variables to set, and one
[`Tuning`][installer.plan.launch_tunings.Tuning] per optimization with its status
and reason. A variable the user set is never overwritten; an invalid value
(`MATMUL_PRECISION=fast`) is refused with the allowed values before anything
starts. No I/O: the facts are read by [`installer.launch.facts`][installer.launch.facts]
and the plan is carried out by [`installer.launch.run`][installer.launch.run]. The
text of `--print-env` is rendered here too, from the plan and the facts.

The tunings: the CUDA allocator's `expandable_segments:True` (in
`PYTORCH_ALLOC_CONF` for torch 2.9 and newer, which reads it first and calls
`PYTORCH_CUDA_ALLOC_CONF` deprecated; in `PYTORCH_CUDA_ALLOC_CONF` before), TF32
and `MATMUL_PRECISION=high` on compute capability 8.0 and newer, the cuDNN
autotuner, opt-in torch.compile for nodes (`ENABLE_TORCH_COMPILE=1`)
([`installer.plan.launch_tunings`][installer.plan.launch_tunings]), and attention
routed by measurement: each attention call goes to the backend `comfy-install tune`
measured fastest for its shape on this GPU, SDPA everywhere else, and an
installed xformers that was not measured faster is kept from being picked
([`installer.plan.launch_attention`][installer.plan.launch_attention]).

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

import shlex
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from installer.attention.rules.routing import AttentionProbe, CalibrationRead
from installer.core.errors import UsageError
from installer.core.facts import GpuReport, TorchInstalled
from installer.core.proof import AcceleratorProof
from installer.plan.generations import shared_folder_args
from installer.plan.launch_attention import AttentionChoice, decide_attention, decide_xformers
from installer.plan.launch_device import decide_device
from installer.plan.launch_settings import (
    EXTRA_ARGS_ENV,
    MARKER_ENV,
    WARMUP_ENV,
    find_option,
    join_command_line,
    parse_flag,
    split_extra_args,
    user_settings,
    validate_settings,
)
from installer.plan.launch_tunings import (
    CPU_ONLY,
    Tuning,
    TuningStatus,
    decide_allocator,
    decide_compile,
    decide_compile_cache,
    decide_cuda_malloc,
    decide_cudnn_benchmark,
    decide_matmul_precision,
    decide_tf32,
)
from installer.plan.levers import LeverRecords, decide_levers
from installer.plan.proof import broken_now

DEFAULT_PORT = 8188
DEFAULT_TIMEOUT = 600.0
SHIM_MODULE = "comfy_install_tuning"

ShimStatus = Literal["current", "missing", "outdated", "foreign", "unavailable"]


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
    attention: AttentionProbe | None = None
    calibration: CalibrationRead | None = None
    shim: ShimStatus = "missing"
    site_packages: Path | None = None
    cpu_install: str | None = None
    """Why the install was made for the CPU, as its gpu step recorded it (`--gpu none`)."""
    proof: AcceleratorProof | None = None
    """The install's newest accelerator proof (step 10's or verify's), from its `state.json`."""
    install_dir: Path | None = None
    """DIR, when the checkout is a later generation's (its user folders stay in DIR/ComfyUI)."""
    extra_paths_exists: bool = False
    """`DIR/ComfyUI/extra_model_paths.yaml` exists (a later generation is pointed at it)."""
    levers: LeverRecords | None = None
    """ComfyUI's `--fast` levers measured on this GPU (`DIR/.comfy-install/levers.json`)."""


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
    attention: AttentionChoice | None = None
    """The routing decision, with the table the launch writes for the shim."""
    home: Path | None = None
    """DIR, where the pid file and logs go (None: the checkout's parent, DIR for generation 1)."""

    @property
    def routes_attention(self) -> bool:
        """Whether this launch routes ComfyUI's attention calls (its routing tuning is on)."""
        return self.attention is not None and self.attention.tuning.status == "on"

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
        return join_command_line(self.argv, self.platform)

    def tuning(self, name: str) -> Tuning | None:
        """Return the tuning called ``name``, if the plan has one.

        Args:
            name: The tuning's name, e.g. `tf32`, `allocator` or `attention`.
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
            "attention": None
            if self.attention is None
            else {
                "status": self.attention.tuning.status,
                "reason": self.attention.tuning.reason,
                "details": list(self.attention.details),
                "routes_file": str(self.attention.routes_path)
                if self.attention.routes_path
                else None,
                "routes": self.attention.routes,
            },
        }


def shim_problem(shim: ShimStatus, site_packages: Path | None) -> str | None:
    """Return why the tuning shim cannot run in-process tunings, or None when it can.

    Args:
        shim: The shim's state in the venv.
        site_packages: The venv's site-packages (named in the reason).
    """
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
        facts: The machine and install (see [`gather_facts`][installer.launch.facts.gather_facts]).
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
    device = decide_device(facts.gpu, facts.torch, facts.cpu_install, comfy_args)
    # A GPU that ComfyUI will not use (--cpu, ours or the user's) gets no GPU tunings.
    on_cpu = find_option(comfy_args, "--cpu")[0] or (device.status == "on" and facts.gpu.has_nvidia)
    gpu = GpuReport("none", CPU_ONLY) if on_cpu else facts.gpu
    tf32 = decide_tf32(request.tune, gpu, user)
    broken = broken_now(facts.proof, facts.attention.versions if facts.attention else None)
    verdict = facts.levers.tuned_vs_stock if facts.levers is not None else None
    attention = decide_attention(
        request.tune, gpu, facts.attention, facts.calibration, comfy_args, user, broken, verdict
    )
    in_process = _apply_shim_limits(
        [
            tf32,
            decide_cudnn_benchmark(request.tune, gpu, user, comfy_args),
            decide_matmul_precision(request.tune, tf32, user),
            *decide_compile(request.tune, user),
            attention.tuning,
        ],
        request.tune,
        facts,
        user,
    )
    routing = in_process[-1]
    if routing.status != "on":
        attention = replace(attention, tuning=routing, routes=None, routes_path=None)
    native = decide_cuda_malloc(in_process, comfy_args)
    native_allocator = find_option(comfy_args, "--disable-cuda-malloc")[0] or (
        native is not None and native.status == "on"
    )
    tunings = [
        device,
        decide_allocator(request.tune, gpu, facts.torch, facts.platform, user, native_allocator),
        *in_process,
        *([native] if native is not None else []),
        *decide_compile_cache(request.tune, gpu, request.install_dir, user),
        decide_xformers(
            request.tune,
            gpu,
            facts.attention,
            facts.calibration,
            attention.routed,
            comfy_args,
            broken,
            attention.stock_won,
        ),
    ]
    levers, lever_args = decide_levers(request.tune, gpu, facts.levers, comfy_args)
    tunings += levers
    needs_shim = any(_needs_shim(t) for t in tunings)

    env_set = {t.variable: t.value for t in tunings if t.status == "on" and t.variable and t.value}
    if needs_shim and MARKER_ENV not in user:
        env_set[MARKER_ENV] = "1"
    if facts.platform == "windows" and "PYTHONIOENCODING" not in user:
        # ComfyUI's output goes through a pipe to be logged; Windows would
        # otherwise encode it with the ANSI code page and fail on other text.
        env_set["PYTHONIOENCODING"] = "utf-8"

    port_given, port_text = find_option(comfy_args, "--port")
    port = request.port
    if port_given:
        try:
            port = int(port_text or "")
        except ValueError:
            raise UsageError(
                f"--port {port_text or ''} in the ComfyUI arguments is not a port number.",
                "Give --port a number, e.g. --port 8189.",
            ) from None
    listen_given, listen_text = find_option(comfy_args, "--listen")
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
    argv += lever_args
    if facts.install_dir is not None:
        argv += shared_folder_args(
            facts.install_dir,
            facts.comfyui_dir,
            facts.platform,
            extra_paths_exists=facts.extra_paths_exists,
            user_args=comfy_args,
        )
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
        attention=attention,
        home=facts.install_dir,
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
    problem = shim_problem(facts.shim, facts.site_packages)
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
        if tuning.name == "attention" and plan.attention is not None:
            lines += [(tuning.status, f"attention {line}") for line in plan.attention.details]
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
