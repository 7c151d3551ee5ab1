"""A fleet of ComfyUIs, one per GPU: start them all, wait for each, stop and list the set.

The decisions are [`installer.plan.fleet`][installer.plan.fleet]'s; each member has
its own [`LaunchPlan`][installer.plan.launch.LaunchPlan] and its folder
`DIR/.comfy-install/fleet/gpu-N/` holds what a single launch keeps in
`DIR/.comfy-install/`: its pid file, its logs, its calibration and routing table.
[`start_fleet`][installer.launch.fleet.start_fleet] refuses a set while a ComfyUI of
DIR runs or a port is taken, starts every member in a process group of its own,
waits for each one's `GET /object_info` at once, and stops them all when one fails;
in the background it returns once all answer, in the foreground it waits until one
ends or Ctrl-C, then stops the rest. [`stop_fleet`][installer.launch.fleet.stop_fleet]
ends every recorded member; [`fleet_status`][installer.launch.fleet.fleet_status]
lists them (GPU, port, pid, ready).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from installer.attention.files import write_routes
from installer.core.errors import (
    InstallerError,
    InterruptedByUserError,
    StepFailedError,
)
from installer.core.log import InstallerLogger
from installer.core.records import now_iso
from installer.edges.state import atomic_write_text, state_dir
from installer.launch.output import file_tail, new_log_path
from installer.launch.ports import check_port
from installer.launch.process import (
    StopOutcome,
    is_recorded_comfyui,
    pid_file,
    read_pid_file,
    refuse_if_running,
    remove_pid_file,
    spawn,
    stop_process,
    stop_signals_raise,
    write_pid_file,
)
from installer.launch.ready import (
    EarlyExitError,
    NotReadyError,
    early_exit_error,
    not_ready_error,
    report_ready,
    wait_until_ready,
)
from installer.launch.shim import ensure_shim
from installer.plan.fleet import FLEET_DIR, FLEET_FILE, FleetMember
from installer.plan.launch import LaunchFacts, LaunchPlan, LaunchRequest


@dataclass(frozen=True)
class MemberLaunch:
    """One member ready to start: its place in the set, its facts and its plan."""

    member: FleetMember
    facts: LaunchFacts
    plan: LaunchPlan
    env: dict[str, str]
    """ComfyUI's full environment for this member."""


@dataclass(frozen=True)
class MemberOutcome:
    """A started member: what runs where."""

    gpu: int
    name: str
    port: int
    url: str
    pid: int
    log: Path
    seconds_to_ready: float | None

    def as_data(self) -> dict[str, Any]:
        """Return the member as JSON-ready data."""
        return {
            "gpu": self.gpu,
            "name": self.name,
            "port": self.port,
            "url": self.url,
            "pid": self.pid,
            "log": str(self.log),
            "seconds_to_ready": self.seconds_to_ready,
        }


def fleet_dir(install_dir: Path) -> Path:
    """Return `DIR/.comfy-install/fleet`.

    Args:
        install_dir: DIR, the install directory.
    """
    return state_dir(install_dir) / FLEET_DIR


def member_dir(install_dir: Path, member: FleetMember) -> Path:
    """Return the member's folder, `DIR/.comfy-install/fleet/gpu-N`.

    Args:
        install_dir: DIR, the install directory.
        member: The member.
    """
    return fleet_dir(install_dir) / member.folder


def recorded_members(install_dir: Path) -> list[tuple[int, Path]]:
    """Return ``(GPU index, folder)`` of every member folder with a pid file, by GPU.

    Args:
        install_dir: DIR, the install directory.
    """
    found = []
    for folder in sorted(fleet_dir(install_dir).glob("gpu-*")):
        index = folder.name.removeprefix("gpu-")
        if index.isdigit() and pid_file(folder).is_file():
            found.append((int(index), folder))
    return sorted(found)


def _prepare(launches: Sequence[MemberLaunch], install_dir: Path, log: InstallerLogger) -> None:
    """Check the ports, install the shim once, write each member's routing table."""
    for launch in launches:
        check_port(launch.plan)
    wanted = next((m for m in launches if m.plan.needs_shim), None)
    if wanted is not None and wanted.facts.site_packages is not None:
        status = ensure_shim(wanted.facts.site_packages)
        if status != "current":
            log.warn(f"in-process tuning is skipped: the tuning shim is {status}")
    for launch in launches:
        member_dir(install_dir, launch.member).mkdir(parents=True, exist_ok=True)
        attention = launch.plan.attention
        if attention is not None and attention.routes is not None and attention.routes_path:
            Path(attention.routes["counts_file"]).unlink(missing_ok=True)
            write_routes(attention.routes_path, attention.routes)


@dataclass
class _Started:
    launch: MemberLaunch
    process: Any
    log_path: Path
    offset: int
    started: float
    seconds: float | None = None
    error: InstallerError | None = None


def _spawn_all(
    launches: Sequence[MemberLaunch], install_dir: Path, log: InstallerLogger, mode: str
) -> list[_Started]:
    started: list[_Started] = []
    try:
        for launch in launches:
            folder = member_dir(install_dir, launch.member)
            log_path = new_log_path(folder)
            with log_path.open("ab") as sink:
                offset = sink.seek(0, os.SEEK_END)
                process = spawn(launch.plan, launch.env, sink, background=True)
            started.append(_Started(launch, process, log_path, offset, time.monotonic()))
            write_pid_file(folder, launch.plan, process.pid, log_path, mode)
            log.info(
                f"GPU {launch.member.gpu.index} ({launch.member.gpu.name}): ComfyUI started "
                f"(pid {process.pid}, port {launch.plan.port}); log: {log_path}"
            )
    except BaseException:
        _stop_all(started, install_dir)
        raise
    return started


def _wait_one(item: _Started, request: LaunchRequest, log: InstallerLogger) -> None:
    plan = item.launch.plan
    gpu = f"GPU {item.launch.member.gpu.index}"
    try:
        if plan.warmup:
            item.seconds = wait_until_ready(
                plan.url, item.process, request.timeout, log, started=item.started
            )
        else:
            time.sleep(0.5)
            code = item.process.poll()
            if code is not None:
                raise EarlyExitError(code)
    except EarlyExitError as exc:
        error = early_exit_error(
            exc.code,
            file_tail(item.log_path, item.offset),
            item.log_path,
            time.monotonic() - item.started,
        )
        item.error = StepFailedError(f"{gpu}: {error.message}", error.hint)
    except NotReadyError:
        error = not_ready_error(plan, request, file_tail(item.log_path, item.offset), item.log_path)
        item.error = StepFailedError(f"{gpu}: {error.message}", error.hint)


def _wait_all(started: Sequence[_Started], request: LaunchRequest, log: InstallerLogger) -> None:
    threads = [
        threading.Thread(target=_wait_one, args=(item, request, log), daemon=True)
        for item in started
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(timeout=0.25)


def _stop_all(started: Sequence[_Started], install_dir: Path) -> bool:
    forced = False
    for item in started:
        if item.process.poll() is None:
            forced = stop_process(item.process.pid, process=item.process) or forced
        remove_pid_file(member_dir(install_dir, item.launch.member), item.process.pid)
    return forced


def _outcomes(started: Sequence[_Started]) -> list[MemberOutcome]:
    return [
        MemberOutcome(
            gpu=item.launch.member.gpu.index,
            name=item.launch.member.gpu.name,
            port=item.launch.plan.port,
            url=item.launch.plan.url,
            pid=item.process.pid,
            log=item.log_path,
            seconds_to_ready=None if item.seconds is None else round(item.seconds, 2),
        )
        for item in started
    ]


def _write_record(install_dir: Path, outcomes: Sequence[MemberOutcome], mode: str) -> None:
    record = {
        "started_at": now_iso(),
        "mode": mode,
        "members": [o.as_data() for o in outcomes],
    }
    atomic_write_text(fleet_dir(install_dir) / FLEET_FILE, json.dumps(record, indent=2) + "\n")


def start_fleet(
    launches: Sequence[MemberLaunch],
    install_dir: Path,
    request: LaunchRequest,
    log: InstallerLogger,
) -> list[MemberOutcome]:
    """Start every member, wait until each answers; in the foreground, until one ends.

    Args:
        launches: The members with their plans and environments.
        install_dir: DIR, the install directory.
        request: The request (timeout, background).
        log: Where the launcher's messages go.

    Returns:
        The members (background: running and ready; foreground: after they were stopped).

    Raises:
        EnvironmentUnsupportedError: A ComfyUI of DIR runs, or a port is taken.
        StepFailedError: A member exited during startup or did not answer in time (all were
            stopped), or (foreground) one exited with an error later.
        InterruptedByUserError: Ctrl-C (or SIGTERM); every member was stopped.
    """
    refuse_if_running(install_dir)
    _prepare(launches, install_dir, log)
    mode = "background" if request.background else "foreground"
    with stop_signals_raise():
        started = _spawn_all(launches, install_dir, log, mode)
        try:
            _wait_all(started, request, log)
            failed = [item.error for item in started if item.error is not None]
            if failed:
                _stop_all(started, install_dir)
                if len(failed) > 1:
                    log.error("; ".join(e.message.splitlines()[0] for e in failed[1:]))
                raise failed[0]
            for item in started:
                report_ready(item.launch.plan, item.seconds, log)
            outcomes = _outcomes(started)
            _write_record(install_dir, outcomes, mode)
            if request.background:
                return outcomes
            log.info("Ctrl-C stops them all.")
            _watch(started, install_dir, log)
            return outcomes
        except KeyboardInterrupt:
            log.info("stopping every ComfyUI of the set...")
            forced = _stop_all(started, install_dir)
            raise InterruptedByUserError(
                f"ComfyUI was stopped on every GPU{' (some had to be killed)' if forced else ''}.",
                f"Start them again with `comfy-install launch {install_dir} --gpus ...`.",
            ) from None


def _watch(started: Sequence[_Started], install_dir: Path, log: InstallerLogger) -> None:
    """Wait until a member ends (then stop the rest); an error exit is a failure."""
    while True:
        ended = [item for item in started if item.process.poll() is not None]
        if ended:
            break
        time.sleep(0.5)
    _stop_all(started, install_dir)
    bad = [item for item in ended if item.process.returncode != 0]
    if bad:
        item = bad[0]
        shown = "\n  ".join(file_tail(item.log_path, item.offset))
        raise StepFailedError(
            f"ComfyUI on GPU {item.launch.member.gpu.index} exited with code "
            f"{item.process.returncode}; the others were stopped" + (":\n  " + shown),
            f"The full log is {item.log_path}.",
        )
    log.info("a ComfyUI of the set exited; the others were stopped.")


def stop_fleet(install_dir: Path, log: InstallerLogger, grace: float = 10.0) -> list[StopOutcome]:
    """Stop every recorded member of DIR's fleet (SIGINT, then terminate, then kill).

    Args:
        install_dir: DIR, the install directory.
        log: Where to say what happened.
        grace: Seconds each ComfyUI gets after SIGINT.

    Returns:
        One outcome per member folder that had a pid file (stale ones are removed).
    """
    outcomes = []
    for index, folder in recorded_members(install_dir):
        record = read_pid_file(folder)
        if record is None or not is_recorded_comfyui(record):
            pid = None if record is None else record.pid
            remove_pid_file(folder, pid or 0)
            outcomes.append(StopOutcome(False, pid, stale=True, message=f"GPU {index}: stale"))
            continue
        log.info(f"stopping ComfyUI on GPU {index} (pid {record.pid}, {record.url})...")
        forced = stop_process(record.pid, grace=grace)
        remove_pid_file(folder, record.pid)
        message = f"ComfyUI on GPU {index} (pid {record.pid}) stopped" + (
            " (it had to be killed)." if forced else "."
        )
        log.success(message)
        outcomes.append(StopOutcome(True, record.pid, forced=forced, message=message))
    return outcomes


def _answers(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{url}/object_info", timeout=2) as answer:
            return bool(answer.status == 200)
    except (OSError, ValueError):
        return False


def fleet_status(
    install_dir: Path, probe: Callable[[str], bool] = _answers
) -> list[dict[str, Any]]:
    """List DIR's fleet: each member's GPU, port, pid, whether it runs and answers.

    Args:
        install_dir: DIR, the install directory.
        probe: Asks a URL's `/object_info` (a running member only).

    Returns:
        One entry per member the last `launch --gpus` started (or that still has a pid file),
        by GPU: `gpu`, `name`, `port`, `url`, `pid`, `running`, `ready`, `log`.
    """
    known: dict[int, dict[str, Any]] = {}
    try:
        record = json.loads((fleet_dir(install_dir) / FLEET_FILE).read_text(encoding="utf-8"))
        for member in record.get("members", []):
            known[int(member["gpu"])] = dict(member)
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        pass
    for index, _folder in recorded_members(install_dir):
        known.setdefault(index, {"gpu": index})
    listed = []
    for index in sorted(known):
        entry = known[index]
        pid = read_pid_file(fleet_dir(install_dir) / f"gpu-{index}")
        running = pid is not None and is_recorded_comfyui(pid)
        url = pid.url if pid is not None else entry.get("url")
        listed.append(
            {
                "gpu": index,
                "name": entry.get("name"),
                "port": pid.port if pid is not None else entry.get("port"),
                "url": url,
                "pid": pid.pid if pid is not None else None,
                "running": running,
                "ready": running and isinstance(url, str) and probe(url),
                "log": pid.log if pid is not None else entry.get("log"),
            }
        )
    return listed


def copy_calibration(source: Path, target: Path) -> None:
    """Copy a calibration file to a member's folder (atomically, through a temporary name).

    Args:
        source: The calibration measured on a GPU of the same model.
        target: The member's `calibration.json`.
    """
    if source == target:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    shutil.copyfile(source, partial)
    partial.replace(target)


def full_environment(
    plan: LaunchPlan, base: Mapping[str, str], extra: Mapping[str, str]
) -> dict[str, str]:
    """Return a member's full environment: ``base``, the plan's variables, the fleet's.

    Args:
        plan: The member's plan.
        base: The user's environment.
        extra: The fleet's variables (the device order).
    """
    env = plan.environment(base)
    env.update(extra)
    return env
