"""Steps 2–4: uv, the Python interpreter, and the virtual environment."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from installer.core.errors import CommandFailedError, EnvironmentUnsupportedError
from installer.core.records import now_iso
from installer.plan.records import PlannedStep, parse_steps
from installer.steps.context import StepContext


def run_uv(ctx: StepContext, step: PlannedStep) -> dict[str, Any]:
    """Check that the bundled uv runs and record its version.

    Args:
        ctx: The run's context.
        step: The planned `uv` step (not used: ``ctx.plan`` holds what to do).

    Returns:
        The uv binary's `path` and `version`.

    Raises:
        EnvironmentUnsupportedError: uv cannot be started or fails.
    """
    version = ctx.uv.version()
    ctx.log.info(f"uv {version} ({ctx.uv.binary})")
    return {"path": ctx.uv.binary, "version": version}


def python_version_of(interpreter: str) -> str:
    """Return the full version of a Python interpreter by running it.

    Args:
        interpreter: The interpreter's path.

    Returns:
        The version it prints, e.g. `3.12.8`.

    Raises:
        EnvironmentUnsupportedError: It does not run.
    """
    try:
        done = subprocess.run(
            [interpreter, "-c", "import platform; print(platform.python_version())"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise EnvironmentUnsupportedError(
            f"The Python at {interpreter} does not run ({exc}).",
            "Pass another interpreter with --python.",
        ) from exc
    return done.stdout.strip()


def run_python(ctx: StepContext, step: PlannedStep) -> dict[str, Any]:
    """Find the wanted Python (`uv python find`), downloading it with uv if missing.

    When the configured default cannot be found or downloaded (no network), the
    newest installed Python in the supported range is used, with a warning; a
    version the user asked for with --python is never swapped.

    Args:
        ctx: The run's context.
        step: The planned `python` step (not used: ``ctx.plan`` holds what to do).

    Returns:
        The `interpreter`'s path and its `version`.

    Raises:
        EnvironmentUnsupportedError: No Python could be found or downloaded, or the one found is
            outside the supported range.
    """
    request, supported = ctx.plan.python, ctx.plan.python_supported
    interpreter = ctx.uv.python_find(request)
    failure = ""
    if interpreter is None and not ctx.plan.index.offline:
        ctx.log.info(f"Python {request} not found; asking uv to download it")
        try:
            ctx.uv.python_install(request)
            interpreter = ctx.uv.python_find(request)
        except CommandFailedError as exc:
            failure = exc.message.splitlines()[-1].strip()
    if interpreter is None and ctx.options.python is None:
        interpreter = ctx.uv.python_find(supported)
        if interpreter is not None:
            lock = ctx.plan.lock
            ctx.log.warn(
                f"Python {request} is not available here"
                + (f" ({failure})" if failure else "")
                + f"; using {interpreter}, which is in the supported range {supported}"
                + (
                    f"; the lock {Path(lock.path).name} is for Python {request} only, so it no "
                    "longer applies: step 8 resolves live"
                    if lock is not None and lock.path
                    else ""
                )
            )
    if interpreter is None:
        raise EnvironmentUnsupportedError(
            f"Python {request} was not found and could not be downloaded"
            + (f" ({failure})" if failure else "")
            + ".",
            f"Install Python {request}, or pass --python with a version or path that exists "
            "here (`uv python list` shows them).",
        )
    version = python_version_of(interpreter)
    try:
        ok = Version(version) in ctx.deps.python.supported_specifier
    except InvalidVersion:
        ok = False
    if not ok:
        raise EnvironmentUnsupportedError(
            f"{interpreter} is Python {version}, outside the supported {supported}.",
            f"Pass --python with a version in {supported}.",
        )
    ctx.log.info(f"Python {version} at {interpreter}")
    return {"interpreter": interpreter, "version": version}


def run_venv(ctx: StepContext, step: PlannedStep) -> dict[str, Any]:
    """Create the venv, or keep the one DIR has when its Python works and is the one wanted.

    A venv is recreated (`uv venv --clear`) only when its Python is missing or broken, is
    another minor version than the python step found, or with `--force venv`: the venv may
    hold packages the user added, and a lost or damaged state file is no reason to lose them.

    Args:
        ctx: The run's context.
        step: The planned `venv` step (not used: ``ctx.plan`` holds what to do).

    Returns:
        The venv's interpreter (`python`), its `version`, and when it was `created`.

    Raises:
        EnvironmentUnsupportedError: The python step recorded no interpreter, or the venv's Python
            does not run.
        CommandFailedError: `uv venv` failed.
    """
    interpreter = ctx.outputs("python").get("interpreter")
    if not interpreter:
        raise EnvironmentUnsupportedError(
            "No Python was recorded by the python step.",
            "Run without --only/--skip so it runs first.",
        )
    venv = ctx.paths["venv"]
    forced = "venv" in parse_steps(ctx.options.force, "--force")
    kept = None if forced else _working_venv(ctx, str(ctx.outputs("python").get("version", "")))
    if kept is not None:
        ctx.log.info(f"kept the venv at {venv} (Python {kept} runs; nothing was cleared)")
        previous = ctx.state.steps.get("venv")
        known = previous.known_outputs if previous else None
        created = (known or {}).get("created") or _made_at(venv)
        return {"python": str(ctx.venv_python), "version": kept, "created": created}
    ctx.uv.venv(venv, interpreter, clear=venv.exists())
    version = python_version_of(str(ctx.venv_python))
    ctx.log.info(f"venv at {venv} (Python {version})")
    # A new venv holds no packages: the creation time makes every step after it that
    # installs into it see the change.
    return {"python": str(ctx.venv_python), "version": version, "created": now_iso()}


def _working_venv(ctx: StepContext, wanted: str) -> str | None:
    """The version of the venv's Python when it runs and is of the ``wanted`` minor, else None.

    Such a venv is kept as it is: it may hold packages the user added by hand, and a
    lost or damaged record is no reason to clear it (only a missing or broken Python, a
    different Python, or `--force venv` is).
    """
    if not ctx.venv_python.is_file():
        return None
    try:
        have = python_version_of(str(ctx.venv_python))
    except EnvironmentUnsupportedError:
        return None
    same = have.split(".")[:2] == wanted.split(".")[:2]
    return have if wanted and same else None


def _made_at(venv: Path) -> str:
    """When the venv was made, from its `pyvenv.cfg` (stable across runs, unlike now)."""
    import datetime as dt

    try:
        stamp = (venv / "pyvenv.cfg").stat().st_mtime
    except OSError:
        return now_iso()
    return dt.datetime.fromtimestamp(stamp, dt.timezone.utc).isoformat(timespec="milliseconds")
