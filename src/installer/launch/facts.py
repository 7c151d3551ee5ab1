"""What a launch depends on, read from the machine: GPU, torch, attention packages, calibration.

[`gather_facts`][installer.launch.facts.gather_facts] reads them into the plain
[`LaunchFacts`][installer.plan.launch.LaunchFacts] that
[`plan_launch`][installer.plan.launch.plan_launch] decides from, with the state of
the tuning shim and the install's calibration (read, with the venv's attention
package versions, by [`installer.attention.files`][installer.attention.files]).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from installer.attention.files import probe_attention, read_calibration
from installer.core.errors import EnvironmentUnsupportedError
from installer.core.proof import AcceleratorProof, latest_proof
from installer.edges.environment import current_platform, site_packages_dirs
from installer.edges.generations import current_root
from installer.edges.gpu import detect_gpus
from installer.edges.probe import installed_torch, layout
from installer.edges.state import read_state
from installer.launch.levers import read_levers
from installer.launch.shim import shim_status
from installer.plan.launch import LaunchFacts, LaunchRequest
from installer.plan.launch_device import cpu_install_reason


def gather_facts(
    request: LaunchRequest, platform: str | None = None, environ: Mapping[str, str] | None = None
) -> LaunchFacts:
    """Read what a launch depends on: GPU, torch, attention, calibration, shim, recorded GPU.

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
    # The current generation's venv and checkout (DIR's own for generation 1).
    root = current_root(request.install_dir, platform)
    paths = layout(root, platform)
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
    wanted = request.tune and gpu.planning_cc is not None
    attention = probe_attention(python, environ) if wanted else None
    cpu_install, proof = _recorded(root)
    shared = root != request.install_dir
    return LaunchFacts(
        platform=platform,
        venv_python=python,
        comfyui_dir=comfyui,
        gpu=gpu,
        torch=installed_torch(paths["venv"], platform),
        attention=attention,
        calibration=read_calibration(request.install_dir) if request.tune else None,
        shim=shim_status(site),
        site_packages=site,
        cpu_install=cpu_install,
        proof=proof,
        install_dir=request.install_dir if shared else None,
        extra_paths_exists=shared
        and (request.install_dir / "ComfyUI" / "extra_model_paths.yaml").is_file(),
        levers=read_levers(request.install_dir, gpu) if request.tune else None,
    )


def _recorded(install_dir: Path) -> tuple[str | None, AcceleratorProof | None]:
    """Return why the install was made for the CPU (`--gpu none`), if so, and its newest proof."""
    state, _problem = read_state(install_dir)
    record = state.done("gpu") if state is not None else None
    return cpu_install_reason(record.outputs if record is not None else None), latest_proof(state)
