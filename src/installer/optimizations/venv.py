"""What the venv really has: its torch trio, the packages already present, and what was installed.

Every question is asked of the venv's own interpreter (never by importing torch
here), so a torch from the system site-packages of a venv made with
`--system-site-packages` counts too.
[`check_installed`][installer.optimizations.venv.check_installed] is the one look after
the installs: versions, torch requirements, torch unchanged.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from installer.core.errors import EnvironmentUnsupportedError, StepFailedError, TorchConflictError
from installer.core.log import InstallerLogger
from installer.edges.uv import TORCH_TRIO
from installer.optimizations.outcome import OptimizationOutcome, outcome_of
from installer.optimizations.target import StepTarget
from installer.plan.compat import spec_contains
from installer.plan.optimizations import PlannedOptimization


@dataclass(frozen=True)
class VenvTorch:
    """The torch trio a venv's interpreter really sees (its own or system site-packages)."""

    pins: dict[str, str]
    cuda: str | None
    python: str

    @property
    def version(self) -> str | None:
        """The torch version, None when torch is absent."""
        return self.pins.get("torch")

    @property
    def build(self) -> str | None:
        """The CUDA build name (`cu128`), None for a CPU build or no torch."""
        return "cu" + self.cuda.replace(".", "") if self.cuda else None


_INSPECT = r"""
import importlib.metadata as md, importlib.util as iu, json, os, re, sys
pins = {}
for name in sys.argv[1:]:
    try:
        pins[name] = md.version(name)
    except md.PackageNotFoundError:
        pass
cuda = None
spec = iu.find_spec("torch")
if spec and spec.origin:
    try:
        text = open(os.path.join(os.path.dirname(spec.origin), "version.py")).read()
        m = re.search(r"^cuda\s*(?::[^=]*)?=\s*'([^']+)'", text, re.M)
        cuda = m.group(1) if m else None
    except OSError:
        pass
print(json.dumps({"pins": pins, "cuda": cuda, "python": "%d.%d.%d" % sys.version_info[:3]}))
"""


def inspect_venv_torch(python_exe: Path) -> VenvTorch:
    """Ask the venv's interpreter which torch trio it has, without importing torch.

    This sees a torch from the system site-packages too (a venv made with
    `--system-site-packages`), which reading the venv's folders would miss.

    Args:
        python_exe: The venv's interpreter.

    Raises:
        EnvironmentUnsupportedError: The interpreter does not run.
    """
    try:
        done = subprocess.run(
            [str(python_exe), "-c", _INSPECT, *TORCH_TRIO],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise EnvironmentUnsupportedError(
            f"The venv's Python ({python_exe}) does not run: {exc}.",
            "Redo the venv with `--force venv`.",
        ) from exc
    data = json.loads(done.stdout.strip().splitlines()[-1])
    return VenvTorch(pins=data["pins"], cuda=data["cuda"], python=data["python"])


def _venv_report(python_exe: Path, names: Sequence[str]) -> dict[str, Any]:
    """Ask the venv's Python for the torch trio and each named distribution's metadata."""
    done = subprocess.run(
        [str(python_exe), "-c", _REQUIRES, *sorted(set(names))],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    try:
        report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        report = {"dists": {}, "pins": inspect_venv_torch(python_exe).pins}
    return report


def already_present(
    specs: dict[int, str],
    planned: Sequence[PlannedOptimization],
    python_exe: Path,
    log: InstallerLogger,
) -> list[int]:
    """Return the index packages the venv already has in a wanted version (no uv call needed).

    This includes packages a torch brought with it (triton on Linux) and ones from the
    system site-packages of a venv made over a machine's own torch.

    Args:
        specs: What each entry would install, by its index in ``planned``.
        planned: The step's entries.
        python_exe: The venv's interpreter.
        log: Where progress goes.

    Returns:
        The indexes of the entries already satisfied (wheel files are never counted).
    """
    from packaging.requirements import InvalidRequirement, Requirement

    wanted: dict[int, Requirement] = {}
    for index, spec in specs.items():
        if planned[index].kind in ("wheel", "source"):
            continue
        try:
            wanted[index] = Requirement(spec)
        except InvalidRequirement:
            continue
    if not wanted:
        return []
    dists = _venv_report(python_exe, [r.name for r in wanted.values()])["dists"]
    present: list[int] = []
    for index, requirement in wanted.items():
        info = dists.get(requirement.name)
        if info and requirement.specifier.contains(info["version"], prereleases=True):
            log.info(
                f"{planned[index].name}: {requirement.name} {info['version']} is already "
                "in the venv"
            )
            present.append(index)
    return present


def _distribution_name(entry: PlannedOptimization) -> str | None:
    from packaging.requirements import InvalidRequirement, Requirement

    if entry.kind == "wheel" and entry.wheel is not None:
        return entry.wheel.filename.split("-", 1)[0]
    if entry.distribution is not None:
        return entry.distribution
    try:
        return Requirement(entry.requirement or "").name
    except InvalidRequirement:
        return None


_REQUIRES = r"""
import importlib.metadata as md, json, sys
report = {"dists": {}, "pins": {}}
for name in ("torch", "torchvision", "torchaudio"):
    try:
        report["pins"][name] = md.version(name)
    except md.PackageNotFoundError:
        pass
for name in sys.argv[1:]:
    try:
        dist = md.distribution(name)
        report["dists"][name] = {"version": dist.version, "requires": dist.requires or []}
    except md.PackageNotFoundError:
        report["dists"][name] = None
print(json.dumps(report))
"""


def torch_problem(
    name: str, version: str, requires: Sequence[str], pins: dict[str, str]
) -> str | None:
    """Say which torch requirement of an installed package the held torch breaks, if any.

    Args:
        name: The distribution.
        version: Its installed version.
        requires: Its `Requires-Dist` entries.
        pins: The torch trio in the venv (name to version).

    Returns:
        A sentence naming the requirement and the torch present, or None.
    """
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    for text in requires:
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            continue
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        have = pins.get(canonicalize_name(requirement.name))
        if have is not None and not spec_contains(str(requirement.specifier) or ">=0", have):
            return (
                f"{name} {version} requires {requirement}, the venv has {requirement.name} {have}"
            )
    return None


def check_installed(
    pending: list[int],
    planned: Sequence[PlannedOptimization],
    python_exe: Path,
    torch: VenvTorch,
    target: StepTarget,
    log: InstallerLogger,
    done: dict[int, OptimizationOutcome],
) -> None:
    """One look at what was installed: versions, torch requirements, torch unchanged.

    A package installed without dependency resolution (`--no-deps`) but built for
    another torch is taken out again rather than left to fail at import.

    Args:
        pending: The indexes (in ``planned``) of the entries installed or already present.
        planned: The step's entries.
        python_exe: The venv's interpreter.
        torch: The torch trio the venv had before the step.
        target: The venv's uv (to take a broken package out again) and the other facts.
        log: Where progress goes.
        done: Outcomes by index; one is added for each of ``pending``.

    Raises:
        StepFailedError: torch changed despite the constraints.
        TorchConflictError: A required package needs another torch.
    """
    names = {index: _distribution_name(planned[index]) for index in pending}
    report = _venv_report(python_exe, [n for n in names.values() if n])
    if report["pins"] != torch.pins:
        raise StepFailedError(
            f"step 10 changed torch ({torch.pins} → {report['pins']}) despite the constraints.",
            "Reinstall torch with `comfy-install install DIR --force torch`.",
        )
    broken: list[str] = []
    for index in pending:
        entry, name = planned[index], names[index]
        info = report["dists"].get(name) if name else None
        version: str | None = info["version"] if info else None
        problem = (
            torch_problem(name, str(version), info["requires"], torch.pins)
            if info and name
            else None
        )
        if problem is None or name is None:
            log.success(f"{entry.name} installed" + (f" ({version})" if version else ""))
            done[index] = outcome_of(entry, "installed", entry.reason, version)
            continue
        if entry.required:
            raise TorchConflictError(f"install {entry.name}: {problem}")
        log.warn(f"{entry.name}: {problem}; it is removed again (torch is held)")
        done[index] = outcome_of(entry, "skipped", f"needs another torch: {problem}")
        broken.append(name)
    if broken:
        target.uv.run(
            ["pip", "uninstall", "--python", python_exe, *broken], f"uninstall {', '.join(broken)}"
        )
