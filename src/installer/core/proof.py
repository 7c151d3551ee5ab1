"""The accelerator proof as data: whether each installed attention backend works on this GPU.

After step 10 and in verify, each installed attention backend (xformers,
SageAttention 1/2/3, comfy-kitchen's int8 attention) makes a few real calls on
the GPU in the install's venv, in fp16 and bf16, compared with torch SDPA on
the same inputs (the tolerances of `benchmark`). The result is recorded in the
step's outputs in `state.json` under ``accelerators``
([`AcceleratorProof`][installer.core.proof.AcceleratorProof]): per backend
([`BackendProof`][installer.core.proof.BackendProof]) its verdict (`working`,
`broken` with the reason, `unavailable` when the package itself says it cannot
run here, `unproved` when nothing could be compared, `absent`), what was done
about it (`kept`, `uninstalled`, `disabled`, `marked`) and the calls it made
([`ProofCell`][installer.core.proof.ProofCell]).
[`latest_proof`][installer.core.proof.latest_proof] reads the newest one back
(verify's, else step 10's), for `status`, `doctor` and `launch`. The rules that
make verdicts and actions are pure and live in
[`installer.plan.proof`][installer.plan.proof].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from installer.core.records import InstallState

PROOF_KEY = "accelerators"
"""The key of the proof in the outputs of the `optimizations` and `verify` steps."""
PROOF_STEPS = ("verify", "optimizations")
"""The steps that record a proof, newest first."""

ProofStatus = Literal["proved", "skipped", "failed"]
Verdict = Literal["working", "broken", "unavailable", "unproved", "absent"]
Action = Literal["kept", "uninstalled", "disabled", "marked", "none"]


@dataclass(frozen=True)
class Place:
    """Where the venv has one distribution: its version and whether it lives inside the venv."""

    distribution: str
    version: str | None
    """None: not installed."""
    location: str | None = None
    in_venv: bool = False
    """True when its files are in the venv's own site-packages (uv can uninstall it there)."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ProofCell(_Frozen):
    """One call of a backend at one shape and dtype, judged against SDPA."""

    shape: str
    dtype: str
    status: str
    """``ok``, ``wrong`` (beyond the tolerance, or NaN/inf), ``error`` or ``oom``."""
    max_abs_error: float | None = None
    tolerance: float | None = None
    error: str | None = None


class BackendProof(_Frozen):
    """One attention backend as the proof found it, and what was done about it."""

    name: str
    """The backend, as `benchmark` names it: ``xformers``, ``sageattention``, ..."""
    distribution: str
    version: str | None = None
    verdict: Verdict
    reason: str | None = None
    """Why it is broken, unavailable or unproved (the first failing call, or the import error)."""
    action: Action = "none"
    action_reason: str | None = None
    """What the action means for ComfyUI, e.g. that `launch` adds `--disable-xformers`."""
    location: str | None = None
    """The folder that holds its package (the venv's site-packages, or one outside the venv)."""
    in_venv: bool | None = None
    cells: list[ProofCell] = Field(default_factory=list)


class AcceleratorProof(_Frozen):
    """The proof of one step: skipped (why), failed (why), or each backend's verdict."""

    status: ProofStatus
    reason: str | None = None
    """Why it was skipped or failed (no GPU, a CPU torch, no backend installed, ...)."""
    step: str = ""
    """The step that ran it: ``optimizations`` or ``verify``."""
    device: str | None = None
    """The GPU the calls ran on, e.g. ``NVIDIA H200 (cc 9.0)``."""
    torch: str | None = None
    backends: list[BackendProof] = Field(default_factory=list)
    torch_unchanged: bool | None = None
    """After an uninstall: True when torch, torchvision and torchaudio are exactly as before."""

    def backend(self, name: str) -> BackendProof | None:
        """Return the proof of backend ``name``, if it was looked at.

        Args:
            name: A backend, e.g. ``xformers``.
        """
        return next((b for b in self.backends if b.name == name), None)

    @property
    def broken(self) -> list[BackendProof]:
        """The backends found broken."""
        return [b for b in self.backends if b.verdict == "broken"]

    def as_data(self) -> dict[str, Any]:
        """Return the proof as JSON-ready data (the step's ``accelerators`` output)."""
        return self.model_dump(mode="json")


def proof_from_outputs(outputs: dict[str, Any] | None) -> AcceleratorProof | None:
    """Read the proof from a step's outputs (None when absent or not readable).

    Args:
        outputs: The outputs of the `optimizations` or `verify` step.
    """
    data = (outputs or {}).get(PROOF_KEY)
    if not isinstance(data, dict):
        return None
    try:
        return AcceleratorProof.model_validate(data)
    except ValidationError:
        return None


def latest_proof(state: InstallState | None) -> AcceleratorProof | None:
    """Return the newest proof recorded in an install's state: verify's, else step 10's.

    A proof that was skipped or failed in verify does not hide a proof step 10 made.

    Args:
        state: The install's `state.json` (None: no install).
    """
    if state is None:
        return None
    found: list[AcceleratorProof] = []
    for step in PROOF_STEPS:
        record = state.steps.get(step)
        proof = proof_from_outputs(record.known_outputs if record is not None else None)
        if proof is not None:
            found.append(proof)
    return next((p for p in found if p.status == "proved"), found[0] if found else None)
