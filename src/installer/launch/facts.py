"""What a launch depends on, read from the machine: GPU, torch, SageAttention, the shim's state.

[`gather_facts`][installer.launch.facts.gather_facts] reads them into the plain
[`LaunchFacts`][installer.plan.launch.LaunchFacts] that
[`plan_launch`][installer.plan.launch.plan_launch] decides from.
[`probe_sage`][installer.launch.facts.probe_sage] asks the venv's Python whether
`sageattention` and `triton` can be found, without importing them.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from installer.core.errors import EnvironmentUnsupportedError
from installer.edges.environment import current_platform, site_packages_dirs
from installer.edges.gpu import detect_gpus
from installer.edges.probe import installed_torch, layout
from installer.launch.shim import shim_status
from installer.plan.launch import LaunchFacts, LaunchRequest
from installer.plan.launch_attention import SAGE_MIN_CC, SageProbe
from installer.plan.launch_settings import MARKER_ENV

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
