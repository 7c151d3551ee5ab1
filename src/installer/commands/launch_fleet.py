"""`comfy-install launch --gpus` and the fleet side of `stop`: one ComfyUI per GPU.

[`launch_gpus`][installer.commands.launch_fleet.launch_gpus] is the whole of
`launch DIR --gpus all|0,2,...`: it reads the machine once, chooses the GPUs
([`installer.plan.fleet`][installer.plan.fleet]), and for one GPU launches exactly as
`launch` does without `--gpus` (plus `--cuda-device N` where the machine has
more than one); for several it gives each member its calibration, plans each one
like a single launch (its own port, `--cuda-device N`, only its GPU in its
report) and starts the set ([`installer.launch.fleet`][installer.launch.fleet]).

Calibrations: GPUs of one model share one. A member's `calibration.json` in its
folder is kept when it describes its GPU now; else one that does (the install's
own, from `tune` or the install's end, or another member's) is copied in; else,
with tuning on and ComfyUI on the GPU, `comfy-install tune` measures the model's
first GPU (`CUDA_VISIBLE_DEVICES=N`, so once per model) and every member of the
model gets the result. The install's own `calibration.json` is left as it was.
[`stop_install`][installer.commands.launch_fleet.stop_install] is `stop DIR`: the
single ComfyUI and every member of the set.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from installer.attention.files import calibration_path, read_calibration_at
from installer.attention.rules.records import CALIBRATION_FILE
from installer.attention.rules.routing import usable_calibration
from installer.core.log import InstallerLogger
from installer.edges.state import state_dir
from installer.launch.facts import gather_facts
from installer.launch.fleet import (
    MemberLaunch,
    copy_calibration,
    fleet_dir,
    full_environment,
    member_dir,
    recorded_members,
    start_fleet,
    stop_fleet,
)
from installer.launch.process import pid_file, stop_comfyui
from installer.launch.run import run_comfyui
from installer.plan.fleet import (
    DEVICE_ORDER_ENV,
    FleetMember,
    FleetPlan,
    check_distinct_ports,
    member_args,
    member_environment,
    member_report,
    plan_fleet,
    select_gpus,
)
from installer.plan.launch import LaunchFacts, LaunchRequest, plan_launch
from installer.plan.launch_settings import EXTRA_ARGS_ENV, find_option, split_extra_args

Tuner = Callable[[Path, FleetMember, InstallerLogger], Path | None]
"""Measures attention on a member's GPU; returns the new calibration file, or None."""


def launch_gpus(
    request: LaunchRequest,
    gpus: str,
    log: InstallerLogger,
    environ: Mapping[str, str] | None = None,
    tuner: Tuner | None = None,
) -> dict[str, Any]:
    """Launch ComfyUI on each GPU `--gpus` names; return the `launch --json` data.

    Args:
        request: The command-line request (`--port` is the first member's port).
        gpus: The `--gpus` value: `all`, or NVML indices like `0,2`.
        log: Where to say what happens.
        environ: The user's environment (default: this process's).
        tuner: Measures a GPU model without a calibration (default: `comfy-install tune`).

    Returns:
        One GPU: the data of a single launch (with `gpu`). Several: `gpus`, one entry per
        member (GPU, name, port, URL, pid, log, seconds to ready), and `background`.

    Raises:
        InstallerError: Bad `--gpus`, no GPU, a ComfyUI of DIR running, a port taken, or a
            member that failed (every member is stopped then).
    """
    env = dict(os.environ if environ is None else environ)
    facts = gather_facts(request, environ=env)
    chosen = select_gpus(gpus, facts.gpu)
    install_dir = request.install_dir
    if len(chosen) == 1:
        gpu = chosen[0]
        extra, child_env = request.extra_args, env
        if len(facts.gpu.gpus) > 1 and not find_option(extra, "--cuda-device")[0]:
            extra = (*extra, "--cuda-device", str(gpu.index))
            child_env = {**env, **member_environment(env)}
        one = replace(request, extra_args=extra)
        single = replace(facts, gpu=member_report(facts.gpu, gpu))
        plan = plan_launch(one, single, env)
        outcome = run_comfyui(plan, single, one, log, environ=child_env)
        return {**outcome.as_data(), "gpu": gpu.index}
    fleet = plan_fleet(chosen, request.port)
    if request.tune and _measures_on_gpu(facts, request, env):
        share_calibrations(fleet, facts, install_dir, log, tuner or tune_member)
    launches = [_member_launch(member, facts, request, env) for member in fleet.members]
    check_distinct_ports([launch.plan.port for launch in launches])
    outcomes = start_fleet(launches, install_dir, request, log)
    return {"gpus": [o.as_data() for o in outcomes], "background": request.background}


def _measures_on_gpu(facts: LaunchFacts, request: LaunchRequest, env: Mapping[str, str]) -> bool:
    """Whether a missing calibration should be measured: a CUDA torch, ComfyUI not on the CPU."""
    words = (*split_extra_args(env.get(EXTRA_ARGS_ENV, ""), facts.platform), *request.extra_args)
    on_gpu_torch = facts.torch is not None and bool(facts.torch.cuda)
    return on_gpu_torch and not find_option(words, "--cpu")[0] and facts.cpu_install is None


def _member_launch(
    member: FleetMember, facts: LaunchFacts, request: LaunchRequest, env: Mapping[str, str]
) -> MemberLaunch:
    folder = member_dir(request.install_dir, member)
    own = replace(
        request,
        port=member.port,
        extra_args=member_args(request.extra_args, member, str(folder)),
    )
    calibration = read_calibration_at(folder / CALIBRATION_FILE)
    member_facts = replace(
        facts,
        gpu=member_report(facts.gpu, member.gpu),
        calibration=calibration if request.tune else None,
    )
    plan = plan_launch(own, member_facts, env)
    return MemberLaunch(
        member, member_facts, plan, full_environment(plan, env, member_environment(env))
    )


def share_calibrations(
    fleet: FleetPlan,
    facts: LaunchFacts,
    install_dir: Path,
    log: InstallerLogger,
    tuner: Tuner,
) -> dict[str, str]:
    """Give every member a calibration of its GPU model: kept, copied, or measured once.

    Args:
        fleet: The set.
        facts: The machine (its report has every GPU; the venv's versions are checked).
        install_dir: DIR.
        log: Where to say what was copied or measured.
        tuner: Measures a model's first GPU when no calibration describes it.

    Returns:
        For each model, where its calibration came from (`kept`, a path, `measured`, or
        `none`).
    """
    found: dict[str, str] = {}
    for model, members in fleet.models.items():
        report = member_report(facts.gpu, members[0].gpu)
        candidates = [member_dir(install_dir, m) / CALIBRATION_FILE for m in members]
        candidates += [calibration_path(install_dir)]
        candidates += sorted(fleet_dir(install_dir).glob(f"gpu-*/{CALIBRATION_FILE}"))
        source = next(
            (
                path
                for path in dict.fromkeys(candidates)
                if usable_calibration(read_calibration_at(path), facts.attention, report)[0]
                is not None
            ),
            None,
        )
        how = "kept" if source is not None else "none"
        if source is None:
            log.info(f"no calibration describes {model}: measuring GPU {members[0].gpu.index}")
            source = tuner(install_dir, members[0], log)
            how = "measured" if source is not None else "none"
        elif source.parent != member_dir(install_dir, members[0]):
            how = str(source)
        if source is None:
            log.warn(f"{model}: attention was not measured; ComfyUI's default attention is used")
        else:
            for member in members:
                copy_calibration(source, member_dir(install_dir, member) / CALIBRATION_FILE)
        found[model] = how
    return found


def tune_member(install_dir: Path, member: FleetMember, log: InstallerLogger) -> Path | None:
    """Run `comfy-install tune DIR` on the member's GPU alone; return its calibration, or None.

    `tune` writes `DIR/.comfy-install/calibration.json`; the install's own file is moved
    aside while it runs and put back after, and the new one goes to the member's folder.

    Args:
        install_dir: DIR.
        member: The first member of its GPU model.
        log: Where a failure is said.
    """
    own = calibration_path(install_dir)
    aside = own.with_name(own.name + ".fleet-aside")
    target = member_dir(install_dir, member) / own.name
    target.parent.mkdir(parents=True, exist_ok=True)
    had = own.is_file()
    if had:
        own.replace(aside)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": str(member.gpu.index)}
    env.setdefault(DEVICE_ORDER_ENV, "PCI_BUS_ID")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "installer", "tune", str(install_dir)],
            env=env,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if done.returncode != 0 or not own.is_file():
            log.warn(f"tune on GPU {member.gpu.index} failed (exit code {done.returncode})")
            return None
        own.replace(target)
        return target
    finally:
        if had:
            aside.replace(own)


def stop_install(install_dir: Path, log: InstallerLogger) -> dict[str, Any]:
    """Stop what `launch` started from DIR: the single ComfyUI and every member of a set.

    Args:
        install_dir: DIR.
        log: Where to say what happened.

    Returns:
        The `stop --json` data: the single ComfyUI's outcome (`was_running`, `pid`, ...) as
        before, plus `fleet` (one outcome per member) when DIR has a set.
    """
    members = recorded_members(install_dir)
    single = pid_file(state_dir(install_dir)).is_file()
    if not members:
        return stop_comfyui(install_dir, log).as_data()
    stopped = [o.as_data() for o in stop_fleet(install_dir, log)]
    data: dict[str, Any]
    if single:
        data = stop_comfyui(install_dir, log).as_data()
    else:
        running = [o for o in stopped if o["was_running"]]
        data = {
            "was_running": bool(running),
            "pid": None,
            "stale": not running,
            "forced": any(o["forced"] for o in stopped),
            "message": f"{len(running)} of {len(stopped)} ComfyUIs of the set stopped.",
        }
    data["fleet"] = stopped
    return data
