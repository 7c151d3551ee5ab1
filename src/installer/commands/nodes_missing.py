"""`comfy-install nodes missing DIR WORKFLOW`: the node classes a workflow needs that DIR lacks.

The classes a workflow uses come from its JSON (API or UI format,
[`workflow_classes`][installer.plan.nodes.workflow_classes]); the classes the install has come
from `/object_info` of a ComfyUI: the one at `--url`, the one `comfy-install launch
--background` started for DIR, or one started for the question (launch decides GPU or CPU;
`--cpu` forces the CPU) and stopped after it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from installer.core.errors import StepFailedError, UsageError
from installer.core.log import InstallerLogger
from installer.nodes.context import open_install


def read_workflow(path: Path) -> Any:
    """Read a workflow file (API or UI format).

    Args:
        path: The JSON file.

    Raises:
        UsageError: It cannot be read or is not JSON.
    """
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{path} cannot be read ({exc.strerror or exc}).") from exc
    except ValueError as exc:
        raise UsageError(f"{path} is not valid JSON ({exc}).") from exc


def missing_nodes(
    install_dir: Path,
    workflow_path: Path,
    log: InstallerLogger,
    *,
    url: str | None = None,
    cpu: bool = False,
    timeout: float = 600.0,
) -> dict[str, Any]:
    """List the node classes a workflow uses that the install's ComfyUI lacks.

    The classes come from `/object_info` of the ComfyUI at ``url``, or of the one
    `comfy-install launch --background` recorded for DIR, or of one started for the question
    (with `--cpu` when this machine has no NVIDIA GPU) and stopped after it.

    Args:
        install_dir: DIR.
        workflow_path: The workflow (API or UI JSON format).
        log: Logger.
        url: A running ComfyUI's base URL to ask.
        cpu: Start it with `--cpu` (else launch decides: the GPU, or the CPU for a CPU install
            or a machine without an NVIDIA GPU).
        timeout: Seconds to wait for a started ComfyUI.

    Raises:
        UsageError: The workflow is not one, or DIR holds no install.
        StepFailedError: ComfyUI did not start or answer.
    """
    from installer.plan.nodes import missing_classes, workflow_classes

    used = workflow_classes(read_workflow(workflow_path))
    available, source = _object_info(install_dir, log, url, cpu, timeout)
    missing = missing_classes(used, available)
    return {
        "install_dir": str(install_dir),
        "workflow": str(workflow_path),
        "used": used,
        "missing": missing,
        "asked": source,
    }


def _object_info(
    install_dir: Path, log: InstallerLogger, url: str | None, cpu: bool, timeout: float
) -> tuple[list[str], str]:
    from installer.launch.process import process_running, read_pid_file

    if url is None:
        record = read_pid_file(install_dir / ".comfy-install")
        if record is not None and process_running(record.pid):
            url = record.url
    if url is not None:
        return _fetch_classes(url), url
    open_install(install_dir)
    return _started_classes(install_dir, log, cpu, timeout)


def _fetch_classes(url: str) -> list[str]:
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url.rstrip("/") + "/object_info", timeout=30) as response:
            data = json.loads(response.read())
    except (OSError, ValueError) as exc:
        raise StepFailedError(
            f"ComfyUI at {url} did not answer /object_info ({exc}).",
            "Check that it runs (or leave out --url to start one).",
        ) from exc
    if not isinstance(data, dict):
        raise StepFailedError(f"ComfyUI at {url} answered /object_info with no object.")
    return sorted(data)


def _started_classes(
    install_dir: Path, log: InstallerLogger, cpu: bool, timeout: float
) -> tuple[list[str], str]:
    import os
    import tempfile

    from installer.launch.ports import free_port
    from installer.launch.process import stop_comfyui
    from installer.launch.run import launch
    from installer.plan.launch import LaunchRequest
    from installer.plan.launch_settings import WARMUP_ENV

    environ = {key: value for key, value in os.environ.items() if key != WARMUP_ENV}
    with tempfile.TemporaryDirectory(prefix="comfy-install-nodes-") as tmp:
        request = LaunchRequest(
            install_dir=install_dir,
            port=free_port(),
            timeout=timeout,
            background=True,
            extra_args=(*(["--cpu"] if cpu else []), "--output-directory", tmp),
        )
        own_log = log.log_path
        outcome = launch(request, log, environ=environ)
        try:
            return _fetch_classes(outcome.url), f"{outcome.url} (started for this)"
        finally:
            stop_comfyui(install_dir, log)
            if own_log is not None:
                log.attach_file(own_log)
