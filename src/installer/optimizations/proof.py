"""The accelerator proof's effects on the venv: where each backend lives; taking broken ones out.

The proof's calls run in the venv through the measuring module of `benchmark`
([`installer.attention.measure.proof`][installer.attention.measure.proof]); its rules are pure
([`installer.plan.proof`][installer.plan.proof]). What touches the venv is here:
[`locate`][installer.optimizations.proof.locate] asks the venv's Python where
each distribution is installed (inside the venv, which uv can uninstall from,
or in a folder outside it: the system's site-packages of a venv made with
`--system-site-packages`, a `.pth` folder), and
[`remove_broken`][installer.optimizations.proof.remove_broken] uninstalls the
broken backends the decision says to (`uv pip uninstall`, which never touches
another distribution), then checks that each is gone and that torch,
torchvision and torchaudio are exactly what they were.
[`with_proof`][installer.optimizations.proof.with_proof] makes step 10's package
outcomes say what the proof uninstalled (`skipped`, with the reason).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from installer.core.errors import InstallerError, StepFailedError
from installer.core.log import InstallerLogger
from installer.core.proof import AcceleratorProof, BackendProof, Place
from installer.edges.uv import Uv
from installer.optimizations.outcome import OptimizationOutcome
from installer.optimizations.venv import inspect_venv_torch
from installer.plan.proof import not_removed, shorten

_LOCATE = r"""
import importlib.metadata as md, json, os, sys
prefix = os.path.realpath(sys.prefix)
isolated = prefix != os.path.realpath(sys.base_prefix)
found = {}
for name in sys.argv[1:]:
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        found[name] = None
        continue
    where = os.path.realpath(str(dist.locate_file("")))
    inside = isolated and os.path.commonpath([where, prefix]) == prefix
    found[name] = {"version": dist.version, "location": where, "in_venv": inside}
print(json.dumps(found))
"""


def locate(python_exe: Path, distributions: Sequence[str]) -> dict[str, Place]:
    """Ask the venv's Python where each distribution is installed (nothing is imported).

    Args:
        python_exe: The venv's interpreter.
        distributions: Distribution names, e.g. ``xformers``.

    Returns:
        A [`Place`][installer.core.proof.Place] per name (version None: not installed).

    Raises:
        StepFailedError: The venv's Python did not answer.
    """
    try:
        done = subprocess.run(
            [str(python_exe), "-c", _LOCATE, *distributions],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        data = json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as exc:
        raise StepFailedError(
            f"The venv's Python ({python_exe}) could not list its attention packages: {exc}.",
            "Repair the venv: `comfy-install install DIR --force venv`.",
        ) from exc
    places = {}
    for name in distributions:
        info = data.get(name)
        places[name] = (
            Place(name, str(info["version"]), str(info["location"]), bool(info["in_venv"]))
            if info
            else Place(name, None)
        )
    return places


def remove_broken(
    python_exe: Path, uv: Uv, backends: Sequence[BackendProof], log: InstallerLogger
) -> tuple[list[BackendProof], bool | None]:
    """Uninstall the backends whose action is ``uninstalled``; check each is gone and torch kept.

    A package uv could not remove, or one still found afterwards (another copy
    outside the venv), becomes ``disabled`` with the reason.

    Args:
        python_exe: The venv's interpreter.
        uv: The uv that uninstalls.
        backends: The decided records.
        log: Where progress goes.

    Returns:
        The records as they ended, and whether torch is unchanged (None: nothing
        was uninstalled, so nothing was checked).

    Raises:
        StepFailedError: torch, torchvision or torchaudio changed (uv never should).
    """
    doomed = [b for b in backends if b.action == "uninstalled"]
    if not doomed:
        return list(backends), None
    before = inspect_venv_torch(python_exe).pins
    names = sorted({b.distribution for b in doomed})
    problem: str | None = None
    try:
        uv.run(["pip", "uninstall", "--python", python_exe, *names], f"uninstall {' '.join(names)}")
    except InstallerError as exc:
        problem = f"uv pip uninstall failed: {shorten(exc.message)}"
        log.warn(f"{', '.join(names)} could not be uninstalled: {exc.message}")
    after = inspect_venv_torch(python_exe).pins
    if after != before:
        raise StepFailedError(
            f"uninstalling {', '.join(names)} changed torch ({before} → {after}).",
            "Reinstall torch with `comfy-install install DIR --force torch`.",
        )
    left = locate(python_exe, names)
    ended = []
    for backend in backends:
        if backend.action != "uninstalled":
            ended.append(backend)
            continue
        place = left[backend.distribution]
        if problem is not None:
            ended.append(not_removed(backend, problem))
        elif place.version is not None:
            still = f"{backend.distribution} {place.version} is still found in {place.location}"
            ended.append(not_removed(backend, still))
        else:
            log.info(f"{backend.distribution} {backend.version} uninstalled; torch unchanged")
            ended.append(backend)
    return ended, True


def with_proof(
    outcomes: Sequence[OptimizationOutcome], proof: AcceleratorProof
) -> list[OptimizationOutcome]:
    """Return step 10's outcomes with each package the proof uninstalled marked `skipped`.

    `skipped`, not `failed`: a failed optional package makes the next install run step
    10 again, which would install the broken package only for the proof to take it out.
    A new torch (or GPU, or config) plans step 10 afresh and proves it again.

    Args:
        outcomes: The package outcomes of step 10.
        proof: Step 10's proof.
    """
    gone = {
        b.distribution.lower().replace("-", "_"): b
        for b in proof.backends
        if b.action == "uninstalled"
    }
    result = []
    for outcome in outcomes:
        backend = gone.get((outcome.import_name or "").lower())
        if outcome.status == "installed" and backend is not None:
            why = shorten(backend.reason or "it failed")
            reason = f"broken on this GPU ({why}); uninstalled by the accelerator proof"
            outcome = replace(outcome, status="skipped", reason=reason)
        result.append(outcome)
    return result
