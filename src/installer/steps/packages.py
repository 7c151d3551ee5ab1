"""Steps 7 and 8: torch from the planned index, then ComfyUI's requirements with torch held.

After torch is installed, its exact versions (torch, torchvision, torchaudio)
go into `DIR/.comfy-install/constraints.txt`; every later install passes that
file to uv, so no requirement can swap torch for another version or build.
Each held install also checks afterwards that torch really is unchanged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from installer.core.config import RetryOptions
from installer.core.errors import NetworkError, StepFailedError
from installer.edges.probe import installed_distributions, installed_torch
from installer.edges.proc import CommandResult
from installer.edges.uv import write_constraints
from installer.lock.check import lock_sources_mismatch
from installer.lock.install import install_from_lock
from installer.plan.records import PlannedStep
from installer.steps.context import StepContext


def torch_pins(ctx: StepContext) -> dict[str, str]:
    """Return the exact versions of the torch trio installed in the venv.

    Args:
        ctx: The run's context.

    Returns:
        ``{name: version}`` of each of torch, torchvision and torchaudio installed.
    """
    from installer.nodes.install import torch_pins as venv_torch_pins

    return venv_torch_pins(ctx.paths["venv"], ctx.plan.platform)


def lock_path(ctx: StepContext) -> Path | None:
    """Return the lock file the plan installs from (None: resolve live).

    Args:
        ctx: The run's context.
    """
    lock = ctx.plan.lock
    if lock is None or not lock.path:
        return None
    path = Path(lock.path)
    # The plan chose the lock for the Python it asked for; when that Python was not
    # available and the python step took another supported one, the lock does not apply.
    from installer.core.lockfile import read_header
    from installer.edges.probe import venv_version
    from installer.plan.lock import python_minor

    header = read_header(path)
    have = venv_version(ctx.paths["venv"])
    if header is not None and have is not None and python_minor(have) != header.target.python:
        if path not in _WARNED:
            _WARNED.add(path)
            ctx.log.warn(
                f"{path.name} is for Python {header.target.python} but the venv has Python "
                f"{have}; resolving live instead"
            )
        return None
    return path


_WARNED: set[Path] = set()


def constraints_path(ctx: StepContext) -> Path:
    """Return the path of the torch constraints file.

    Args:
        ctx: The run's context.

    Returns:
        `DIR/.comfy-install/constraints.txt`.
    """
    return ctx.paths["state_dir"] / "constraints.txt"


def held_install(
    ctx: StepContext,
    requirements: Sequence[str] = (),
    *,
    requirement_files: Sequence[Path] = (),
    options: Sequence[str] = (),
    extra_index_urls: Sequence[str] = (),
    what: str,
    retry: RetryOptions | None = None,
    extra_constraints: Sequence[Path] = (),
) -> CommandResult:
    """Install into the venv with the installed torch trio pinned, and prove it unchanged.

    Args:
        ctx: The run's context.
        requirements: Requirement strings or wheel file paths.
        requirement_files: `-r` files.
        options: Further uv options (e.g. `--no-deps`).
        extra_index_urls: Indexes with priority for this call.
        what: Name of the action for messages, e.g. `install ComfyUI's requirements`.
        retry: Attempts and backoff for network failures (default: 2 attempts, 2 s backoff).
        extra_constraints: `-c` files besides the torch constraints file (e.g. the lock).

    Raises:
        TorchConflictError: A package wanted another torch.
        StepFailedError: The install failed, or torch changed despite the pins.
    """
    from installer.nodes.install import held_pip_install

    return held_pip_install(
        ctx.uv,
        ctx.venv_python,
        ctx.paths["venv"],
        ctx.plan.platform,
        constraints_path(ctx),
        requirements,
        requirement_files=requirement_files,
        options=options,
        extra_index_urls=extra_index_urls,
        what=what,
        retry=retry,
        extra_constraints=extra_constraints,
    )


def torch_network_hint(index_url: str | None) -> str:
    """The hint when torch's index cannot be reached: the option that moves torch is --torch-index.

    Args:
        index_url: The index the plan takes torch from; None: uv's default index (which
            `--index-url` replaces).
    """
    choices = "cpu, a build like cu128, default (uv's default index) or a mirror's URL"
    if index_url is None:
        return (
            "Check the network, then run again; torch comes from uv's default index here, so "
            f"--index-url URL (a mirror) moves it, as does --torch-index ({choices})."
        )
    return (
        f"Check the network, then run again; torch comes from its own index ({index_url}), "
        f"which --index-url and --find-links do not change: pass --torch-index ({choices})."
    )


def run_torch(ctx: StepContext, step: PlannedStep) -> dict[str, Any]:
    """Install the pinned torch trio from the planned index and record what arrived.

    Args:
        ctx: The run's context.
        step: The planned `torch` step (not used: ``ctx.plan`` holds what to do).

    Returns:
        The trio's versions by name, `cuda` (torch's CUDA version; None for a CPU build), `variant`
        and `index_url`.

    Raises:
        StepFailedError: The install failed, or torch is not in the venv after it.
        NetworkError: The index stayed unreachable after the retries.
    """
    torch = ctx.plan.torch
    extra = [torch.index_url] if torch.index_url else []
    try:
        ctx.uv.pip_install(
            ctx.venv_python,
            torch.packages,
            constraints=[lock] if (lock := lock_path(ctx)) else [],
            extra_index_urls=extra,
            what="install torch",
            retry=RetryOptions(attempts=3, backoff_seconds=3),
        )
    except NetworkError as exc:
        exc.hint = torch_network_hint(torch.index_url)
        raise
    pins = torch_pins(ctx)
    info = installed_torch(ctx.paths["venv"], ctx.plan.platform)
    if "torch" not in pins:
        raise StepFailedError(
            "torch is not in the venv after installing it.",
            "Run again with --verbose to see uv's output.",
        )
    write_constraints(constraints_path(ctx), pins)
    cuda = info.cuda if info else None
    ctx.log.info(
        f"torch {pins['torch']} ({'CUDA ' + cuda if cuda else 'CPU build'}), "
        f"torchvision {pins.get('torchvision')}, torchaudio {pins.get('torchaudio')}"
    )
    if torch.cuda and cuda is None:
        ctx.log.warn(
            f"the plan wanted a {torch.cuda} build but the index gave a CPU build of "
            "torch; the GPU will not be used"
        )
    return {**pins, "cuda": cuda, "variant": torch.variant, "index_url": torch.index_url}


def run_requirements(ctx: StepContext, step: PlannedStep) -> dict[str, Any]:
    """Install ComfyUI's requirements.txt (and extra requirements) with torch held.

    Args:
        ctx: The run's context.
        step: The planned `requirements` step (not used: ``ctx.plan`` holds what to do).

    Returns:
        `requirements_sha256` of ComfyUI's `requirements.txt`, `distributions` (how many the venv
        holds) and `lock` (the lock used; None: resolved live).

    Raises:
        StepFailedError: `requirements.txt` is missing, the install failed, or torch changed.
        TorchConflictError: A requirement wants another torch.
    """
    requirements = ctx.comfyui_dir / "requirements.txt"
    if not requirements.is_file():
        raise StepFailedError(
            f"{requirements} does not exist.", "Check that DIR/ComfyUI is a ComfyUI checkout."
        )
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    lock = lock_path(ctx)
    mismatch = lock_sources_mismatch(lock, ctx.comfyui_dir, ctx.custom_nodes_dir) if lock else None
    if lock is not None and mismatch is not None:
        ctx.log.warn(f"{mismatch}; resolving live instead")
        lock = None
    if lock is not None:
        before = torch_pins(ctx)
        install_from_lock(
            ctx.uv, ctx.venv_python, lock, write_constraints(constraints_path(ctx), before), ctx.log
        )
        if torch_pins(ctx) != before:
            raise StepFailedError(f"installing {lock.name} changed torch.", "Report this.")
    else:
        held_install(
            ctx,
            list(ctx.deps.extra_requirements),
            requirement_files=[requirements],
            what="install ComfyUI's requirements",
        )
    count = len(installed_distributions(ctx.paths["venv"], ctx.plan.platform))
    ctx.log.info(f"{count} distributions in the venv; torch held at {torch_pins(ctx)['torch']}")
    return {
        "requirements_sha256": digest,
        "distributions": count,
        "lock": str(lock) if lock else None,
    }
