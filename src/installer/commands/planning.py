"""Gathering the inputs of a plan: configuration, machine, GPUs, existing install.

This is the effectful counterpart of [`installer.plan.build`][installer.plan.build]: it
loads the configuration files, detects the environment and the GPUs (or takes
the `--gpu` override), probes the install directory, and hands all of it to
the pure [`build_plan`][installer.plan.build.build_plan]. `install`, `doctor` and
`status` all start here, so they always agree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from installer.core.config import Dependencies, ToolsManifest
from installer.core.config_files import load_dependencies, load_tools_manifest
from installer.core.errors import UsageError
from installer.core.facts import (
    GPU_NONE_REASON,
    Environment,
    GpuReport,
    InstallProbe,
    Tool,
    gpu_override,
    no_gpu,
)
from installer.core.records import RecordedInputs
from installer.edges.environment import detect_compiler, detect_environment
from installer.edges.gpu import detect_gpus
from installer.edges.probe import probe_install
from installer.edges.state import read_state
from installer.plan.build import build_plan
from installer.plan.inputs import apply_recorded, inputs_of, recorded_inputs
from installer.plan.records import InstallOptions, Plan, target_platform


@dataclass(frozen=True)
class PlanContext:
    """Everything a plan was made from, and the plan."""

    options: InstallOptions
    deps: Dependencies
    manifest: ToolsManifest
    env: Environment
    gpu: GpuReport
    probe: InstallProbe
    plan: Plan


def gpu_for(options: InstallOptions) -> GpuReport:
    """Return the GPU report the options ask for: detected, overridden, or none.

    Args:
        options: The install options; `gpu` (`auto`, `none` or a compute capability like `8.9`) and
            `cuda_driver` (`X.Y`) are read.

    Raises:
        UsageError: A malformed `--gpu`, or `--cuda-driver` without `--gpu CC`.
    """
    choice = options.gpu.strip().lower()
    if options.cuda_driver is not None:
        if not re.fullmatch(r"[0-9]+\.[0-9]+", options.cuda_driver):
            raise UsageError(f"--cuda-driver {options.cuda_driver}: expected X.Y, like 12.8.")
        if not re.fullmatch(r"[0-9]+\.[0-9]+", choice):
            raise UsageError(
                "--cuda-driver needs --gpu CC (it describes another machine's driver).",
                "Add --gpu 8.9 (the target's compute capability).",
            )
    if choice == "auto":
        return detect_gpus()
    if choice == "none":
        return no_gpu(GPU_NONE_REASON)
    if re.fullmatch(r"[0-9]+\.[0-9]+", choice):
        return gpu_override(choice, options.cuda_driver)
    raise UsageError(f"--gpu {options.gpu}: expected auto, none or a compute capability like 8.9.")


def with_locks(probe: InstallProbe, options: InstallOptions) -> InstallProbe:
    """Add the lock files' headers (shipped, or --lock-dir) to a probe; none with --no-lock.

    Args:
        probe: The probe of DIR.
        options: The install options; `no_lock` and `lock_dir` are read.

    Returns:
        A copy of ``probe`` with its `lock_headers` and `lock_problems` set (``probe`` itself
        with `--no-lock`).

    Raises:
        UsageError: `--lock-dir` is not a folder.
    """
    if options.no_lock:
        return probe
    from dataclasses import replace

    from installer.core.lockfile import shipped_lock_dir
    from installer.lock.files import lock_problems, read_lock_headers

    if options.lock_dir is not None and not options.lock_dir.is_dir():
        raise UsageError(
            f"--lock-dir {options.lock_dir}: "
            + ("not a folder." if options.lock_dir.exists() else "no such folder."),
            "Pass the folder that holds the lock files (`comfy-install lock --lock-dir DIR` "
            "writes them), or leave --lock-dir out for the shipped locks.",
        )
    folder = options.lock_dir or shipped_lock_dir()
    return replace(
        probe, lock_headers=read_lock_headers(folder), lock_problems=lock_problems(folder)
    )


def toolkit_for(env: Environment, options: InstallOptions, platform: str) -> Environment:
    """Return the machine with the build tools the options describe (`--cuda-toolkit`).

    `--cuda-toolkit X.Y` (with `--dry-run`) plans for a machine with nvcc X.Y and the host
    compiler nvcc needs (g++ on Linux, MSVC on Windows); `--cuda-toolkit none` for one
    without a toolkit (on a real install it turns source builds off). Without the option
    the detected tools count; for another `--platform` the compiler of that platform is
    looked for (MSVC's `cl` for Windows).

    Args:
        env: The detected machine.
        options: The install options; `cuda_toolkit` and `dry_run` are read.
        platform: The platform planned for.

    Raises:
        UsageError: A malformed `--cuda-toolkit`, or `X.Y` without `--dry-run`.
    """
    value = options.cuda_toolkit
    if platform != env.platform and (env.compiler.path or env.compiler.error):
        env = replace(env, compiler=detect_compiler(platform))
    if value is None:
        return env
    choice = value.strip().lower()
    if choice == "none":
        return replace(
            env, nvcc=Tool("nvcc", error="--cuda-toolkit none: planned without a CUDA toolkit")
        )
    if not re.fullmatch(r"[0-9]+\.[0-9]+", choice):
        raise UsageError(f"--cuda-toolkit {value}: expected X.Y (like 12.8) or none.")
    if not options.dry_run:
        raise UsageError(
            f"--cuda-toolkit {value} describes another machine; it works only with --dry-run.",
            "On this machine the toolkit is detected (nvcc on PATH or under CUDA_HOME); "
            "--cuda-toolkit none turns source builds off.",
        )
    compiler = env.compiler
    if not compiler.ok:
        name = "cl" if platform == "windows" else "c++"
        compiler = Tool("compiler", path=name, version=f"{name} (assumed with --cuda-toolkit)")
    return replace(env, nvcc=Tool("nvcc", path="nvcc", version=choice), compiler=compiler)


def with_recorded_inputs(options: InstallOptions) -> InstallOptions:
    """Return the options with those the user did not give taken from DIR's recorded inputs.

    Args:
        options: The options of this run (`given` names those typed on the command line).

    Raises:
        StateTooNewError: DIR's state was written by a newer comfy-install.
    """
    if not options.install_dir.is_dir():
        return options
    state, _problem = read_state(options.install_dir)
    return apply_recorded(options, recorded_inputs(state))[0]


def inputs_to_record(options: InstallOptions) -> RecordedInputs:
    """Return the inputs an install run records, with local paths made absolute.

    A re-run may start in another folder: `--config`, `--tools-manifest`, `--lock-dir` and a
    local `--comfyui-url` or `--find-links` are recorded as absolute paths.

    Args:
        options: The run's options (after
            [`with_recorded_inputs`][installer.commands.planning.with_recorded_inputs]).
    """
    inputs = inputs_of(options)
    changes: dict[str, Any] = {}
    for name in ("config_path", "tools_manifest_path", "lock_dir", "comfyui_url"):
        value = getattr(inputs, name)
        if value and "://" not in value and Path(value).expanduser().exists():
            changes[name] = str(Path(value).expanduser().absolute())
    if inputs.find_links:
        changes["find_links"] = [
            str(Path(item).expanduser().absolute())
            if "://" not in item and Path(item).expanduser().exists()
            else item
            for item in inputs.find_links
        ]
    return inputs.model_copy(update=changes)


def make_plan(options: InstallOptions, *, probe_build_tools: bool | None = None) -> PlanContext:
    """Load config, detect the machine and GPUs, probe DIR, and build the plan.

    The options the user did not give are first taken from the inputs DIR's install
    recorded ([`with_recorded_inputs`][installer.commands.planning.with_recorded_inputs]):
    the context holds the options the plan was made from.

    Args:
        options: What the user asked for.
        probe_build_tools: Look for a C++ compiler and nvcc (`doctor` does); None: only when
            something may be built from source (a SageAttention source entry, or a fallback
            built from source).

    Raises:
        StateTooNewError: DIR's state was written by a newer comfy-install (exit code 3).
        ConfigError: A configuration file is invalid (exit code 2).
        UsageError: Contradictory options (exit code 2).
        PlanError: No plan fits (exit code 2).
    """
    options = with_recorded_inputs(options)
    deps = load_dependencies(options.config_path)
    manifest = load_tools_manifest(options.tools_manifest_path)
    fallback = deps.pip_packages.sageattention_fallback
    builds = bool(deps.pip_packages.sageattention_sources) or (
        fallback is not None and fallback.build == "source"
    )
    env = detect_environment(
        options.install_dir,
        probe_build_tools=probe_build_tools if probe_build_tools is not None else builds,
    )
    platform = target_platform(options.platform, env.platform)
    gpu = gpu_for(options)
    env = toolkit_for(env, options, platform)
    probe = with_locks(probe_install(options.install_dir, platform), options)
    plan = build_plan(deps, manifest, env, gpu, options, probe)
    return PlanContext(options, deps, manifest, env, gpu, probe, plan)


def replan(context: PlanContext) -> PlanContext:
    """Probe DIR again and rebuild the plan from the same config, machine and GPUs.

    Called once the install lock is held: what another process did to DIR in the
    meantime is then part of the plan.

    Args:
        context: The context the plan was first made from.

    Returns:
        A new context with a fresh probe of DIR and the plan made from it.
    """
    options = context.options
    platform = target_platform(options.platform, context.env.platform)
    probe = with_locks(probe_install(options.install_dir, platform), options)
    plan = build_plan(context.deps, context.manifest, context.env, context.gpu, options, probe)
    return PlanContext(
        options, context.deps, context.manifest, context.env, context.gpu, probe, plan
    )
