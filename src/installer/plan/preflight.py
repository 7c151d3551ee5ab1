"""The preflight checks of step 1, decided from detected facts before anything is written.

[`preflight_blockers`][installer.plan.preflight.preflight_blockers] finds what would stop an
install at its first step: an unsupported OS, DIR that is a file or cannot be created or
written, git missing for a step that clones, too little free disk for a step that installs.
The plan lists them in `blocking`, so `install --dry-run` shows them and exits with the code
the real run would (3), and the real run stops before it writes anything (no state folder, no
lock, no log in DIR). Pure: the facts come from
[`detect_environment`][installer.edges.environment.detect_environment]
([`Environment`][installer.core.facts.Environment] and its
[`TargetDir`][installer.core.facts.TargetDir]); the preflight step runs the same checks, then
proves DIR writable by creating a file in it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from pydantic import BaseModel

from installer.core.errors import EnvironmentUnsupportedError
from installer.core.facts import SUPPORTED_PLATFORMS, Environment
from installer.core.log import command_text

HEAVY_STEPS = (
    "python",
    "venv",
    "comfyui",
    "torch",
    "requirements",
    "custom_nodes",
    "optimizations",
    "models",
)
"""Steps that need the free disk space preflight asks for."""

GIT_STEPS = ("comfyui", "custom_nodes")
"""Steps that need git."""


class Blocker(BaseModel):
    """A problem that stops the install before its first step, and what to do about it."""

    step: str = "preflight"
    code: str = EnvironmentUnsupportedError.code
    exit_code: int = int(EnvironmentUnsupportedError.exit_code)
    message: str
    hint: str


def format_gib(value: float) -> str:
    """Format a GiB amount without exponent or trailing zeros (15, 0.5, 1000000).

    Args:
        value: An amount in GiB; it is rounded to one decimal.
    """
    return f"{value:.1f}".rstrip("0").rstrip(".")


def preflight_blockers(
    env: Environment, *, platform: str, will_run: Collection[str], min_free_gb: float
) -> list[Blocker]:
    """Return what would stop the install at step 1 on this machine (empty: nothing).

    Args:
        env: The detected machine, with `target` (DIR) when it was looked at.
        platform: The OS the plan is for; a plan for another OS (`--platform`, dry run only)
            is not checked against this machine.
        will_run: The ids of the steps that will run.
        min_free_gb: The free disk space the heavy steps need, in GiB.

    Returns:
        Each problem, in the order the install would meet them.
    """
    if platform != env.platform:
        return []
    found: list[Blocker] = []
    if env.platform not in SUPPORTED_PLATFORMS:
        found.append(
            Blocker(
                message=f"{env.os_name} is not supported.",
                hint="comfy-install supports Linux and Windows.",
            )
        )
    found += _dir_blockers(env)
    if set(will_run) & set(GIT_STEPS) and not env.git.ok:
        found.append(
            Blocker(
                message=f"git is needed to clone ComfyUI, but {env.git.error}.",
                hint="Install git (https://git-scm.com/downloads), make sure it is on PATH, "
                "run again.",
            )
        )
    needed = min_free_gb * 2**30
    free = env.free_disk_bytes
    if set(will_run) & set(HEAVY_STEPS) and free is not None and free < needed:
        found.append(
            Blocker(
                message=f"Not enough free disk space at {env.disk_path}: {free / 2**30:.1f} GiB "
                f"free, {format_gib(min_free_gb)} GiB needed.",
                hint="Free some space or choose a DIR on another drive (--min-free-gb changes "
                "the threshold, at your own risk).",
            )
        )
    return found


def _dir_blockers(env: Environment) -> list[Blocker]:
    """Return why DIR cannot be used: a file, a file in the way, or nothing can be written."""
    target = env.target
    if target is None:
        return []
    if target.exists and not target.is_dir:
        return [
            Blocker(
                message=f"{target.path} exists and is not a directory.",
                hint="Choose another DIR, or move that file away.",
            )
        ]
    if not target.nearest_is_dir:
        return [
            Blocker(
                message=f"{target.path} cannot be created: {target.nearest} is a file.",
                hint="Choose another DIR, or move that file away.",
            )
        ]
    if not target.writable:
        where = (
            f"{target.path} is not writable"
            if target.exists
            else f"{target.path} cannot be created: {target.nearest} is not writable"
        )
        return [
            Blocker(
                message=f"{where} (no permission, or a read-only file system).",
                hint="Choose a DIR you can write to, or fix its permissions.",
            )
        ]
    return []


def blocking_error(
    blockers: Sequence[Blocker], command_line: Sequence[str] | None = None
) -> EnvironmentUnsupportedError:
    """Return the error an install blocked by ``blockers`` ends with (exit code 3).

    Args:
        blockers: The plan's `blocking` list; not empty.
        command_line: The arguments (after `comfy-install`) of the real run that was
            blocked, which shows no plan: an `install` is repeated with `--dry-run`, whose
            plan lists every problem; another command building an install (an update's new
            generation) has no dry run that lists them, so the others are named. None: the
            dry run, whose plan is shown with the error.

    Returns:
        The first problem's message and hint, with a count of the others and where to see
        them.
    """
    first = blockers[0]
    more = len(blockers) - 1
    if not more:
        return EnvironmentUnsupportedError(first.message, first.hint)
    count = f"{more} more problem{'s' if more > 1 else ''}"
    if command_line is None:
        where = "see the plan"
    elif command_line and command_line[0] == "install":
        where = f"`{command_text([*command_line, '--dry-run'])}` shows them all"
    else:
        where = " ".join(blocker.message for blocker in blockers[1:])
    return EnvironmentUnsupportedError(f"{first.message} (and {count}: {where})", first.hint)
