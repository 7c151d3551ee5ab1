"""Timing a real ComfyUI: its start-up and a user's workflow through ComfyUI's HTTP API.

ComfyUI is started the way `comfy-install launch --background` starts it,
once per set of attention flags, and stopped after each.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from installer.attention.measure.results import ComfyTiming
from installer.core.errors import InstallerError, StepFailedError, UsageError

if TYPE_CHECKING:
    from installer.core.log import InstallerLogger


STARTUP_TIMEOUT_S = 600.0
WORKFLOW_TIMEOUT_S = 3600.0
SAGE_FLAG = "--use-sage-attention"
SDPA_FLAG = "--use-pytorch-cross-attention"
SEED_INPUTS = ("seed", "noise_seed")
"""Workflow inputs changed for the warm run, so ComfyUI does not serve it from its cache."""


def load_workflow(path: Path) -> dict[str, Any]:
    """Read an API-format workflow (``{node id: {"class_type", "inputs"}}``).

    Args:
        path: The workflow's JSON file (ComfyUI's 'Export (API)').

    Raises:
        UsageError: The file is missing, not JSON, or in the UI format.
    """
    from installer.plan.workflow_check import EXPORT_HINT, api_nodes

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{path} cannot be read ({exc.strerror or exc}).", EXPORT_HINT) from exc
    except ValueError as exc:
        raise UsageError(f"{path} is not valid JSON ({exc}).", EXPORT_HINT) from exc
    return api_nodes(data, str(path))


def bump_seeds(workflow: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of ``workflow`` with every integer seed input increased by one.

    Args:
        workflow: An API-format workflow (left unchanged).
    """
    changed = copy.deepcopy(workflow)
    for node in changed.values():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        if not isinstance(inputs, dict):
            continue
        for name in SEED_INPUTS:
            value = inputs.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                inputs[name] = value + 1
    return changed


def _http_json(url: str, payload: Any = None, timeout: float = 10.0) -> Any:
    """GET (or POST ``payload`` as) JSON to the local ComfyUI; return the decoded answer."""
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(  # noqa: S310 - only http://127.0.0.1 URLs built here
        url, data=data, headers={"Content-Type": "application/json"}
    )
    # No proxy handler: a proxy from the environment must not see the local ComfyUI.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


def run_workflow(url: str, workflow: dict[str, Any], timeout: float) -> float:
    """Queue ``workflow`` on the ComfyUI at ``url`` and wait until it has run.

    Args:
        url: ComfyUI's base URL, e.g. ``http://127.0.0.1:8188``.
        workflow: An API-format workflow.
        timeout: Seconds to wait at most.

    Returns:
        Seconds from `POST /prompt` until `GET /history/<id>` lists the prompt.

    Raises:
        StepFailedError: ComfyUI refused the workflow, a node failed, ComfyUI
            stopped answering, or ``timeout`` passed.
    """
    start = time.monotonic()
    try:
        queued = _http_json(f"{url}/prompt", {"prompt": workflow, "client_id": uuid.uuid4().hex})
        prompt_id = str(queued["prompt_id"])
        while time.monotonic() - start < timeout:
            history = _http_json(f"{url}/history/{prompt_id}")
            entry = history.get(prompt_id) if isinstance(history, dict) else None
            if entry:
                status = entry.get("status") or {}
                if status.get("status_str") == "error":
                    raise StepFailedError(
                        f"The workflow failed in ComfyUI: {_execution_error(status)}",
                        "Run it in ComfyUI's web page to see the failing node.",
                    )
                return time.monotonic() - start
            time.sleep(0.1)
    except urllib.error.HTTPError as exc:
        raise StepFailedError(
            f"ComfyUI refused the workflow: {_prompt_error(exc)}",
            "Open the workflow in ComfyUI and fix the nodes it names.",
        ) from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StepFailedError(
            f"ComfyUI stopped answering while running the workflow ({exc}).",
            "Read ComfyUI's log in DIR/.comfy-install/logs/.",
        ) from exc
    raise StepFailedError(f"The workflow did not finish within {timeout:.0f} s.")


def _prompt_error(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read() or b"{}")
    except ValueError:
        return f"HTTP {exc.code}"
    error = body.get("error") or {}
    message = error.get("message") if isinstance(error, dict) else str(error)
    nodes = ", ".join(sorted(body.get("node_errors") or {}))
    return f"{message or f'HTTP {exc.code}'}" + (f" (nodes {nodes})" if nodes else "")


def _execution_error(status: dict[str, Any]) -> str:
    for kind, detail in status.get("messages") or []:
        if kind == "execution_error" and isinstance(detail, dict):
            return f"{detail.get('node_type')}: {detail.get('exception_message', '').strip()}"
    return "see ComfyUI's log"


def time_comfyui(
    install_dir: Path,
    variants: Sequence[tuple[str, list[str]]],
    workflow: dict[str, Any] | None,
    log: InstallerLogger,
    startup_timeout: float = STARTUP_TIMEOUT_S,
    workflow_timeout: float = WORKFLOW_TIMEOUT_S,
) -> list[ComfyTiming]:
    """Launch ComfyUI once per variant of flags; time start-up and the workflow.

    ComfyUI is started the way `comfy-install launch --background` starts it
    (same tunings), on a free port, with its outputs in a temporary folder,
    and stopped after each variant.

    Args:
        install_dir: The install (`DIR/ComfyUI/main.py` must exist).
        variants: ``(name, ComfyUI arguments)`` pairs, e.g. ``("sageattention",
            ["--use-sage-attention"])``.
        workflow: An API-format workflow to run twice (the second time with
            changed seeds, so the models are loaded but nothing is cached), or
            None for start-up only.
        log: Status lines.
        startup_timeout: Seconds to wait for `/object_info`.
        workflow_timeout: Seconds to wait for each workflow run.

    Returns:
        One timing per variant; a variant that fails records its error and
        the next one still runs.

    Raises:
        InterruptedByUserError: Ctrl-C (ComfyUI is stopped first).
    """
    from installer.core.errors import InterruptedByUserError
    from installer.launch.ports import free_port
    from installer.launch.run import BackgroundComfyUI, launch
    from installer.plan.launch import LaunchRequest
    from installer.plan.launch_settings import WARMUP_ENV

    # The launcher must wait for /object_info, whatever the user's own setting.
    environ = {key: value for key, value in os.environ.items() if key != WARMUP_ENV}
    own_log = log.log_path
    timings = []
    with tempfile.TemporaryDirectory(prefix="comfy-install-bench-comfyui-") as tmp:
        for name, flags in variants:
            output = Path(tmp) / name
            request = LaunchRequest(
                install_dir=install_dir,
                port=free_port(),
                timeout=startup_timeout,
                background=True,
                extra_args=(*flags, "--output-directory", str(output)),
            )
            log.info(f"Timing ComfyUI ({name}: {' '.join(flags)})")
            startup = first = warm = None
            error = None
            comfyui = BackgroundComfyUI(install_dir, log, own_log)
            try:
                outcome = comfyui.start(partial(launch, request, log, environ=environ))
                startup = outcome.seconds_to_ready
                if workflow is not None:
                    first = run_workflow(outcome.url, workflow, workflow_timeout)
                    log.info(f"  workflow: {first:.2f} s (first run)")
                    warm = run_workflow(outcome.url, bump_seeds(workflow), workflow_timeout)
                    log.info(f"  workflow: {warm:.2f} s (again, seeds changed)")
            except InterruptedByUserError:
                raise
            except InstallerError as exc:
                error = exc.message
                log.warn(f"ComfyUI ({name}): {exc.message}")
            finally:
                comfyui.stop()
            timings.append(
                ComfyTiming(
                    variant=name,
                    flags=flags,
                    startup_s=startup,
                    workflow_s=first,
                    workflow_warm_s=warm,
                    error=error,
                )
            )
    return timings
