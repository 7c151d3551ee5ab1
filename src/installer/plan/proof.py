"""The accelerator proof's rules: from a few real calls to a verdict, from a verdict to an action.

After step 10 and in verify, each installed attention backend makes a few real
calls on the GPU (fp16 and bf16, the head dims of SDXL and Flux), each compared
with torch SDPA on the same inputs within the tolerances of `benchmark`. These
rules are pure: the calls' results and where each package lives come in as data.

[`judge`][installer.plan.proof.judge] gives each backend its verdict:

- ``absent``: not installed;
- ``unavailable``: installed, and the package itself says it cannot run here
  (comfy-kitchen's ``int8_attention_is_available()`` is False: ComfyUI asks the
  same question and does not use it either);
- ``broken``: it does not import, one of its outputs is wrong (beyond the
  tolerance, or NaN/inf), or every call of a dtype failed (xformers 0.0.35
  from PyPI beside a CUDA 13 torch imports, then fails every call);
- ``unproved``: no call could be compared (SDPA failed there too, or out of memory);
- ``working``: every comparable call right; a call that failed at one head dim
  only is noted (`tune` measures it again and never routes such a call to it).

[`decide`][installer.plan.proof.decide] says what to do with a broken one. ComfyUI
picks xformers by itself whenever it loads, so a broken xformers in the venv is
**uninstalled** (torch untouched); one outside the venv (a venv over the system's
site-packages) cannot be, and is **disabled**: `launch` starts ComfyUI with
`--disable-xformers`. The others ComfyUI uses only when asked (SageAttention
with `--use-sage-attention`, comfy-kitchen's with `--use-ck-attention`, and
comfy-kitchen is imported by ComfyUI itself, so it must stay): they are
**marked** broken, and `launch` never routes a call to them
([`broken_now`][installer.plan.proof.broken_now]).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from installer.attention.rules.records import backend_label
from installer.core.facts import GpuReport
from installer.core.proof import AcceleratorProof, Action, BackendProof, Place, ProofCell, Verdict

AUTO_SELECTED = {
    "xformers": "ComfyUI picks xformers for every attention call whenever it loads",
}
"""Backends ComfyUI uses on its own, without being asked: a broken one must not stay."""
OPT_IN = {
    "sageattention": "ComfyUI uses it only with --use-sage-attention",
    "sageattn3": "ComfyUI uses it only when a workflow's node asks for it",
    "comfy_kitchen_int8": (
        "ComfyUI uses it only with --use-ck-attention, and imports comfy-kitchen itself, "
        "so it stays installed"
    ),
}
"""What ComfyUI does with each backend it uses only when asked (why marking it is enough)."""
UNAVAILABLE_MARKERS = ("int8_attention_is_available() is False",)
"""Import failures that are the package's own answer that it cannot run on this machine."""
REFERENCE = "sdpa"
REASON_LENGTH = 110
"""The longest reason the one-line summary shows (the full one is in `state.json`)."""


@dataclass(frozen=True)
class Loaded:
    """A backend as the venv's measuring module found it: imported, or why not."""

    name: str
    distribution: str
    version: str | None
    imported: bool
    reason: str | None = None


def skip_reason(
    gpu: GpuReport, places: Mapping[str, Place], backends: Mapping[str, str]
) -> str | None:
    """Say why the proof cannot run here, or None when it can.

    Args:
        gpu: The GPU report of the run (detected, or given with `--gpu`).
        places: Where the venv has each backend's distribution (by distribution).
        backends: The distribution of each backend to prove (by backend name).
    """
    if not gpu.has_nvidia:
        return (
            gpu.reason
            if gpu.reason.startswith("no NVIDIA GPU")
            else f"no NVIDIA GPU ({gpu.reason})"
        )
    if not any(places.get(dist, Place(dist, None)).version for dist in backends.values()):
        return "no attention backend is installed (xformers, SageAttention, comfy-kitchen)"
    return None


def sdpa_failure(cells: Mapping[str, Sequence[ProofCell]]) -> str | None:
    """Return why nothing can be compared when SDPA itself failed on every call, else None.

    Args:
        cells: The calls made, by backend (SDPA's under ``sdpa``).
    """
    reference = cells.get(REFERENCE, [])
    if any(cell.status == "ok" for cell in reference):
        return None
    failed = next((cell for cell in reference if cell.error), None)
    return "torch SDPA itself failed on this GPU" + (
        f" ({failed.dtype} {failed.shape}: {failed.error})" if failed else ""
    )


def judge(loaded: Sequence[Loaded], cells: Mapping[str, Sequence[ProofCell]]) -> list[BackendProof]:
    """Give each backend (SDPA excluded) its verdict from its import and its calls.

    Args:
        loaded: Each backend as the module found it (SDPA may be among them).
        cells: The judged calls, by backend; SDPA's say where a comparison was possible.

    Returns:
        One record per backend other than SDPA, without an action yet.
    """
    compared = {(c.shape, c.dtype) for c in cells.get(REFERENCE, []) if c.status == "ok"}
    proofs = []
    for item in loaded:
        if item.name == REFERENCE:
            continue
        base = BackendProof(
            name=item.name,
            distribution=item.distribution,
            version=item.version,
            verdict="absent",
            cells=list(cells.get(item.name, [])),
        )
        if not item.imported:
            if item.version is None:
                proofs.append(base)
                continue
            why = item.reason or "it does not import"
            unavailable = any(marker in why for marker in UNAVAILABLE_MARKERS)
            proofs.append(
                base.model_copy(
                    update={"verdict": "unavailable" if unavailable else "broken", "reason": why}
                )
            )
            continue
        verdict, reason = _verdict(
            [c for c in base.cells if (c.shape, c.dtype) in compared and c.status != "oom"],
            base.cells,
        )
        proofs.append(base.model_copy(update={"verdict": verdict, "reason": reason}))
    return proofs


def _verdict(evidence: list[ProofCell], every: list[ProofCell]) -> tuple[Verdict, str | None]:
    if not evidence:
        first = next((c for c in every if c.error), None)
        why = f": {first.dtype} {first.shape}: {first.error}" if first else ""
        return "unproved", f"no call could be compared with SDPA{why}"
    wrong = next((c for c in evidence if c.status == "wrong"), None)
    if wrong is not None:
        return "broken", f"wrong result at {wrong.dtype} {wrong.shape}: {wrong.error}"
    for dtype in dict.fromkeys(c.dtype for c in evidence):
        calls = [c for c in evidence if c.dtype == dtype]
        if all(c.status != "ok" for c in calls):
            return "broken", f"every {dtype} call failed: {calls[0].error or calls[0].status}"
    failed = [c for c in evidence if c.status != "ok"]
    if failed:
        shown = ", ".join(f"{c.dtype} {c.shape}" for c in failed)
        return "working", f"but failed at {shown}: {failed[0].error or failed[0].status}"
    return "working", None


def decide(proofs: Sequence[BackendProof], places: Mapping[str, Place]) -> list[BackendProof]:
    """Decide what happens to each backend: kept, uninstalled, disabled or marked.

    Args:
        proofs: The verdicts of [`judge`][installer.plan.proof.judge].
        places: Where the venv has each distribution (by distribution name).

    Returns:
        The same records with ``action``, ``action_reason``, ``location`` and ``in_venv``.
    """
    decided = []
    for proof in proofs:
        place = places.get(proof.distribution)
        where = {"location": place.location, "in_venv": place.in_venv} if place else {}
        action: Action = "none" if proof.verdict == "absent" else "kept"
        why: str | None = None
        if proof.verdict == "broken" and proof.name in AUTO_SELECTED:
            if place is not None and place.in_venv:
                action = "uninstalled"
                why = f"{AUTO_SELECTED[proof.name]}; uninstalled from the venv, torch untouched"
            else:
                action = "disabled"
                why = (
                    f"{AUTO_SELECTED[proof.name]}; it lives outside the venv "
                    f"({place.location if place else 'unknown'}), so it is not uninstalled: "
                    "`comfy-install launch` starts ComfyUI with --disable-xformers"
                )
        elif proof.verdict == "broken":
            action = "marked"
            uses = OPT_IN.get(proof.name, "ComfyUI uses it only when asked")
            why = f"{uses}; launch never routes to it"
        decided.append(proof.model_copy(update={"action": action, "action_reason": why, **where}))
    return decided


def not_removed(proof: BackendProof, problem: str) -> BackendProof:
    """Return a broken backend whose uninstall did not take as `disabled`, saying why.

    Args:
        proof: The backend's record (action ``uninstalled``).
        problem: What went wrong (uv's error, or the package still found after it).
    """
    return proof.model_copy(
        update={
            "action": "disabled",
            "action_reason": (
                f"it could not be uninstalled ({problem}): `comfy-install launch` starts "
                "ComfyUI with --disable-xformers"
            ),
        }
    )


def carry_forward(proof: AcceleratorProof, earlier: AcceleratorProof | None) -> AcceleratorProof:
    """Keep what an earlier proof uninstalled (and is still absent) in a later one.

    Verify proves again after step 10: a backend step 10 uninstalled is absent
    then, and its record (broken, why, uninstalled) is kept so that `status`
    and `doctor` still say what happened.

    Args:
        proof: The new proof.
        earlier: Step 10's proof, if any.
    """
    if earlier is None or proof.status != "proved":
        return proof
    gone = {b.name: b for b in earlier.backends if b.action == "uninstalled"}
    backends = [
        gone[b.name] if b.verdict == "absent" and b.name in gone else b for b in proof.backends
    ]
    return proof.model_copy(update={"backends": backends})


def broken_now(
    proof: AcceleratorProof | None, versions: Mapping[str, str | None] | None
) -> dict[str, str]:
    """Return the backends a proof found broken that are still installed, with the reason.

    Args:
        proof: The install's newest proof.
        versions: The installed version of each distribution now (None: not known;
            then every broken backend not uninstalled counts).

    Returns:
        ``{backend: reason}``; a backend since replaced by another version is left out.
    """
    if proof is None:
        return {}
    found = {}
    for backend in proof.broken:
        if versions is None:
            still = backend.action != "uninstalled"
        else:
            now = versions.get(backend.distribution)
            still = now is not None and now == backend.version
        if still:
            found[backend.name] = backend.reason or "it failed on this GPU"
    return found


def shorten(text: str, length: int = REASON_LENGTH) -> str:
    """Cut a long reason to ``length`` characters, keeping its end (where the cause usually is).

    Args:
        text: The reason.
        length: The most characters kept.
    """
    if len(text) <= length:
        return text
    keep = length - 3
    return f"{text[: keep // 2].rstrip()} … {text[-(keep - keep // 2) :].lstrip()}"


_ACTION_TEXT = {
    "uninstalled": "uninstalled",
    "disabled": "disabled (launch adds --disable-xformers)",
    "marked": "kept installed, never routed",
}


def describe_backend(backend: BackendProof) -> str:
    """Say in a few words what the proof found about one backend and what was done.

    Args:
        backend: The backend's record.

    Returns:
        E.g. ``xformers 0.0.35 broken (every fp16 call failed: …), uninstalled``.
    """
    text = f"{backend_label(backend.name, backend.version)} {backend.verdict}"
    if backend.reason and backend.verdict != "working":
        text += f" ({shorten(backend.reason)})"
    action = _ACTION_TEXT.get(backend.action)
    return f"{text}, {action}" if action else text


def summary_line(proof: AcceleratorProof) -> str:
    """Return the one line the step's summary shows about the proof.

    Args:
        proof: The step's proof.
    """
    if proof.status != "proved":
        return f"attention proof {proof.status}: {shorten(proof.reason or 'no reason recorded')}"
    shown = [describe_backend(b) for b in proof.backends if b.verdict != "absent"]
    return "attention proof: " + ("; ".join(shown) or "no attention backend installed")
