"""The accelerator proof: a few real calls of each installed attention backend on the GPU.

Step 10 (after its installs) and verify call
[`prove_accelerators`][installer.attention.measure.proof.prove_accelerators]. It runs the
measuring module of `benchmark` and `tune`
([`run_attention_module`][installer.attention.measure.runner.run_attention_module]) in the
install's venv with a small config
([`proof_config`][installer.attention.measure.proof.proof_config]:
two ComfyUI shapes, head dims 64 and 128, fp16 and bf16, a few calls each), judges
each call against SDPA on the same inputs with `benchmark`'s tolerances
([`measurement_from_row`][installer.attention.measure.results.measurement_from_row]), gives each
backend its verdict and action ([`installer.plan.proof`][installer.plan.proof]) and
carries the action out ([`installer.optimizations.proof`][installer.optimizations.proof]:
a broken xformers is uninstalled, torch untouched). A measuring process that
crashes (a backend's library can take the interpreter down) is run again with
one backend at a time, and a backend that crashes it alone is broken.

Without a GPU, or with a torch that sees none, nothing is called or uninstalled:
the proof is `skipped` with the reason. It never fails the step, except when
torch changed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from installer.attention.measure.attention_backends import BACKENDS, DISTRIBUTIONS
from installer.attention.measure.attention_module import Shape
from installer.attention.measure.results import measurement_from_row
from installer.attention.measure.runner import run_attention_module
from installer.core.errors import StepFailedError
from installer.core.proof import AcceleratorProof, Place, ProofCell
from installer.optimizations.proof import locate, remove_broken
from installer.plan.proof import (
    REFERENCE,
    Loaded,
    carry_forward,
    decide,
    describe_backend,
    judge,
    sdpa_failure,
    shorten,
    skip_reason,
)

if TYPE_CHECKING:
    from installer.core.facts import GpuReport
    from installer.core.log import InstallerLogger
    from installer.edges.uv import Uv

PROOF_SHAPES = (
    Shape("n1024-d64", "SDXL", "inner UNet self-attention at 1024²", 2, 1024, 20, 64),
    Shape("n4608-d128", "Flux", "joint attention at 1024², 512 text tokens", 1, 4608, 24, 128),
)
"""The calls each backend makes: the head dims of SDXL (64) and Flux/video (128)."""
TIMEOUT_S = 600.0
"""The longest a measuring run may take (Triton kernels compile on their first call)."""
PROVED = tuple(name for name in BACKENDS if name != REFERENCE)
"""Every backend the proof looks for (SDPA is the reference, not proved)."""


def proof_config(backends: Sequence[str]) -> dict[str, Any]:
    """Return the settings the venv's measuring module runs the proof with.

    Args:
        backends: The backends to call (SDPA is always added, as the reference).
    """
    return {
        "shapes": [asdict(shape) for shape in PROOF_SHAPES],
        "backends": [REFERENCE, *backends],
        "dtypes": ["fp16", "bf16"],
        "warmup": 1,
        "iterations": 2,
        "budget_s": 0.05,
        "total_budget_s": None,
        "seed": 0,
        "allow_cpu": False,
    }


def prove_accelerators(
    python_exe: Path,
    uv: Uv,
    gpu: GpuReport,
    log: InstallerLogger,
    step: str,
    earlier: AcceleratorProof | None = None,
) -> AcceleratorProof:
    """Prove each installed attention backend on the GPU; take a broken xformers out.

    Args:
        python_exe: The venv's interpreter.
        uv: The uv that uninstalls (with the run's index options; none are used).
        gpu: The run's GPU report (no NVIDIA GPU: skipped).
        log: Where progress and the verdicts go.
        step: The step that proves: ``optimizations`` or ``verify``.
        earlier: Step 10's proof, for verify (what it uninstalled stays on record).

    Returns:
        The proof: `skipped` (why), `failed` (why), or `proved` with each backend's record.

    Raises:
        StepFailedError: Uninstalling a broken backend changed torch.
    """
    places = locate(python_exe, [DISTRIBUTIONS[name] for name in PROVED])
    skip = skip_reason(gpu, places, {name: DISTRIBUTIONS[name] for name in PROVED})
    if skip is not None:
        log.info(f"attention proof skipped: {skip}")
        return AcceleratorProof(status="skipped", reason=skip, step=step)
    installed = [name for name in PROVED if places[DISTRIBUTIONS[name]].version is not None]
    log.info(f"Proving the attention backends on the GPU: {', '.join(installed)} against SDPA")
    try:
        document = measure(python_exe, installed, log)
    except StepFailedError as exc:
        log.warn(f"attention proof failed: {exc.message}")
        return AcceleratorProof(status="failed", reason=exc.message, step=step)
    return settle(document, places, python_exe, uv, log, step, earlier)


def measure(python_exe: Path, backends: Sequence[str], log: InstallerLogger) -> dict[str, Any]:
    """Run the proof's calls in the venv; a crash is narrowed down to the backend that causes it.

    Args:
        python_exe: The venv's interpreter.
        backends: The installed backends to call.
        log: Where progress goes.

    Returns:
        The measuring module's document; a backend whose run crashed on its own is
        reported as not imported, with the crash as the reason.

    Raises:
        StepFailedError: Even SDPA alone cannot be run (torch itself is broken).
    """
    try:
        return run_attention_module(python_exe, proof_config(backends), log, TIMEOUT_S)
    except StepFailedError as whole:
        if len(backends) == 0:
            raise
        log.warn(f"the proof's run failed ({shorten(whole.message)}); one backend at a time now")
    merged: dict[str, Any] | None = None
    crashed: dict[str, str] = {}
    for name in backends:
        try:
            document = run_attention_module(python_exe, proof_config([name]), log, TIMEOUT_S)
        except StepFailedError as exc:
            crashed[name] = f"the measuring process failed with it alone: {exc.message}"
            continue
        merged = document if merged is None else _merge(merged, document, name)
    if merged is None:
        merged = run_attention_module(python_exe, proof_config([]), log, TIMEOUT_S)
    for name, reason in crashed.items():
        merged["backends"] = [b for b in merged.get("backends", []) if b.get("name") != name]
        merged["backends"].append({"name": name, "available": False, "version": None,
                                   "reason": reason, "crashed": True})  # fmt: skip
    return merged


def _merge(into: dict[str, Any], document: dict[str, Any], name: str) -> dict[str, Any]:
    """Add backend ``name``'s report and calls from a run of its own to ``into``."""
    backends = [b for b in document.get("backends", []) if b.get("name") == name]
    results = [r for r in document.get("results", []) if r.get("backend") == name]
    into["backends"] = [*into.get("backends", []), *backends]
    into["results"] = [*into.get("results", []), *results]
    return into


def settle(
    document: Mapping[str, Any],
    places: Mapping[str, Place],
    python_exe: Path,
    uv: Uv,
    log: InstallerLogger,
    step: str,
    earlier: AcceleratorProof | None = None,
) -> AcceleratorProof:
    """Judge the module's document, decide, carry the actions out and say what was found.

    Args:
        document: The measuring module's document (from
            [`measure`][installer.attention.measure.proof.measure]).
        places: Where the venv has each backend's distribution.
        python_exe: The venv's interpreter.
        uv: The uv that uninstalls.
        log: Where the verdicts go.
        step: The step that proves.
        earlier: Step 10's proof, for verify.

    Returns:
        The proof as recorded in the step's outputs.

    Raises:
        StepFailedError: Uninstalling a broken backend changed torch.
    """
    device = document.get("device") or {}
    if not document.get("measured") or device.get("kind") != "cuda":
        reason = str(document.get("reason") or "the venv's torch measured on no GPU")
        log.info(f"attention proof skipped: {reason}")
        return AcceleratorProof(status="skipped", reason=reason, step=step)
    cells: dict[str, list[ProofCell]] = {}
    for row in document.get("results") or []:
        judged = measurement_from_row(row)
        cells.setdefault(judged.backend, []).append(
            ProofCell(shape=judged.shape, dtype=judged.dtype, status=judged.status,
                      max_abs_error=judged.max_abs_error, tolerance=judged.tolerance,
                      error=judged.error)
        )  # fmt: skip
    torch = (document.get("torch") or {}).get("version")
    base = AcceleratorProof(
        status="proved",
        step=step,
        device=f"{device.get('name')} (cc {device.get('cc')})",
        torch=None if torch is None else str(torch),
    )
    failure = sdpa_failure(cells)
    if failure is not None:
        log.warn(f"attention proof failed: {failure}")
        return base.model_copy(update={"status": "failed", "reason": failure})
    loaded = [_loaded(item, places) for item in document.get("backends") or []]
    decided = decide(judge(loaded, cells), places)
    ended, unchanged = remove_broken(python_exe, uv, decided, log)
    proof = base.model_copy(update={"backends": ended, "torch_unchanged": unchanged})
    proof = carry_forward(proof, earlier)
    for backend in proof.backends:
        if backend.verdict == "absent":
            continue
        line = f"attention proof on {proof.device}: {describe_backend(backend)}"
        if backend.verdict == "broken":
            log.warn(line + (f" — {backend.action_reason}" if backend.action_reason else ""))
        else:
            log.success(line + (f" ({backend.reason})" if backend.reason else ""))
    return proof


def _loaded(item: Mapping[str, Any], places: Mapping[str, Place]) -> Loaded:
    name = str(item.get("name"))
    distribution = DISTRIBUTIONS.get(name, name)
    place = places.get(distribution)
    version = item.get("version") or (place.version if place is not None else None)
    return Loaded(
        name=name,
        distribution=distribution,
        version=None if version is None else str(version),
        imported=bool(item.get("available")),
        reason=item.get("reason"),
    )
