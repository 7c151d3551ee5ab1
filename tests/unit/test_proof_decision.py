"""The accelerator proof's rules: verdicts from calls, actions from verdicts, and who reads them.

Pure: the calls' results are data shaped like the H200's (xformers 0.0.35 fails every
call beside torch 2.11.0+cu130, SageAttention 2.2.0 is right), no venv, no GPU.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from installer.attention.measure.proof import PROOF_SHAPES, proof_config
from installer.attention.measure.results import tolerance_for
from installer.attention.rules.routing import AttentionProbe, CalibrationRead
from installer.core.facts import GpuInfo, GpuReport, no_gpu
from installer.core.proof import (
    PROOF_KEY,
    AcceleratorProof,
    BackendProof,
    Place,
    ProofCell,
    latest_proof,
)
from installer.core.records import InstallState, StepRecord
from installer.plan.launch import LaunchFacts, LaunchRequest, plan_launch
from installer.plan.proof import (
    Loaded,
    broken_now,
    carry_forward,
    decide,
    describe_backend,
    judge,
    sdpa_failure,
    skip_reason,
    summary_line,
)
from support.attention import H200_VERSIONS, XFORMERS_ERROR, h200_calibration

H200 = GpuReport("nvml", "test", (GpuInfo(0, "NVIDIA H200", "9.0"),), "580.159.04", "13.0")
SHAPES = [shape.id for shape in PROOF_SHAPES]
DTYPES = ("fp16", "bf16")
DISTS = {"xformers": "xformers", "sageattention": "sageattention", "sageattn3": "sageattn3",
         "comfy_kitchen_int8": "comfy-kitchen"}  # fmt: skip
VENV_SITE = "/srv/i/venv/lib/python3.12/site-packages"


def cell(shape: str, dtype: str, status: str = "ok", error: float | str | None = None) -> ProofCell:
    """One judged call (max error 0.01 when it ran)."""
    return ProofCell(
        shape=shape,
        dtype=dtype,
        status=status,
        max_abs_error=0.01 if status in ("ok", "wrong") else None,
        error=None if error is None else str(error),
    )


def calls(status: str = "ok", error: str | None = None) -> list[ProofCell]:
    return [cell(s, d, status, error) for s in SHAPES for d in DTYPES]


def loaded(name: str, version: str | None = "1.0", imported: bool = True,
           reason: str | None = None) -> Loaded:  # fmt: skip
    return Loaded(name, DISTS.get(name, name), version, imported, reason)


def h200_cells() -> dict[str, list[ProofCell]]:
    """What the proof sees on the H200: SDPA and SageAttention right, xformers failing."""
    return {
        "sdpa": calls(),
        "sageattention": calls(),
        "xformers": calls("error", XFORMERS_ERROR),
        "comfy_kitchen_int8": calls(),
    }


def h200_loaded() -> list[Loaded]:
    return [loaded("sdpa", "2.11.0+cu130"), loaded("xformers", "0.0.35"),
            loaded("sageattention", "2.2.0"), loaded("sageattn3", None, False, "not installed"),
            loaded("comfy_kitchen_int8", "0.2.31")]  # fmt: skip


def places(xformers_in_venv: bool = True) -> dict[str, Place]:
    return {
        "xformers": Place("xformers", "0.0.35", VENV_SITE if xformers_in_venv else "/usr/lib/py",
                          xformers_in_venv),
        "sageattention": Place("sageattention", "2.2.0", VENV_SITE, True),
        "sageattn3": Place("sageattn3", None),
        "comfy-kitchen": Place("comfy-kitchen", "0.2.31", VENV_SITE, True),
    }  # fmt: skip


def verdicts(proofs: list[BackendProof]) -> dict[str, tuple[str, str]]:
    return {p.name: (p.verdict, p.action) for p in proofs}


# --- the calls the proof makes -----------------------------------------------------------


def test_the_proof_calls_every_backend_in_both_dtypes_at_sdxl_and_flux_head_dims() -> None:
    config = proof_config(["xformers", "sageattention"])
    assert config["backends"] == ["sdpa", "xformers", "sageattention"]
    assert config["dtypes"] == ["fp16", "bf16"] and not config["allow_cpu"]
    assert sorted(shape["head_dim"] for shape in config["shapes"]) == [64, 128]
    # benchmark's tolerances are the ones that judge the calls
    assert (
        tolerance_for("xformers", "fp16") == 1e-2 and tolerance_for("sageattention", "bf16") == 0.1
    )


# --- verdicts ----------------------------------------------------------------------------


def test_on_the_h200_xformers_is_broken_and_sageattention_2_works() -> None:
    judged = judge(h200_loaded(), h200_cells())
    assert verdicts(judged) == {
        "xformers": ("broken", "none"),
        "sageattention": ("working", "none"),
        "sageattn3": ("absent", "none"),
        "comfy_kitchen_int8": ("working", "none"),
    }
    xformers = next(p for p in judged if p.name == "xformers")
    assert xformers.reason == f"every fp16 call failed: {XFORMERS_ERROR}"
    assert len(xformers.cells) == 4 and xformers.version == "0.0.35"


def test_one_wrong_output_makes_a_backend_broken() -> None:
    cells = h200_cells()
    error = "max abs error 0.6 vs SDPA exceeds the tolerance 0.1"
    cells["sageattention"][3] = cell(SHAPES[1], "bf16", "wrong", error)
    [sage] = [p for p in judge(h200_loaded(), cells) if p.name == "sageattention"]
    assert sage.verdict == "broken"
    assert sage.reason == (
        "wrong result at bf16 n4608-d128: max abs error 0.6 vs SDPA exceeds the tolerance 0.1"
    )


def test_a_whole_dtype_failing_is_broken_one_head_dim_failing_is_a_limit() -> None:
    cells = h200_cells()
    cells["sageattention"] = [cell(s, "fp16") for s in SHAPES] + [
        cell(s, "bf16", "error", "RuntimeError: bf16 unsupported") for s in SHAPES
    ]
    [sage] = [p for p in judge(h200_loaded(), cells) if p.name == "sageattention"]
    assert (sage.verdict, sage.reason) == (
        "broken", "every bf16 call failed: RuntimeError: bf16 unsupported"
    )  # fmt: skip
    cells["sageattention"] = [
        cell(SHAPES[0], d, "error", "ValueError: head dim 64 unsupported") for d in DTYPES
    ] + [cell(SHAPES[1], d) for d in DTYPES]
    [sage] = [p for p in judge(h200_loaded(), cells) if p.name == "sageattention"]
    assert sage.verdict == "working"
    assert sage.reason == (
        "but failed at fp16 n1024-d64, bf16 n1024-d64: ValueError: head dim 64 unsupported"
    )


def test_calls_without_a_reference_or_out_of_memory_prove_nothing() -> None:
    cells = h200_cells()
    first = SHAPES[0]
    cells["sdpa"] = [cell(s, d, "error" if s == first else "ok", "boom" if s == first else None)
                     for s in SHAPES for d in DTYPES]  # fmt: skip
    # xformers only failed where SDPA failed too: not evidence against it.
    cells["xformers"] = [cell(s, d, "error" if s == SHAPES[0] else "ok", "x") for s in SHAPES
                         for d in DTYPES]  # fmt: skip
    cells["sageattention"] = calls("oom", "OutOfMemoryError: CUDA out of memory")
    judged = {p.name: p for p in judge(h200_loaded(), cells)}
    assert judged["xformers"].verdict == "working" and judged["xformers"].reason is None
    assert judged["sageattention"].verdict == "unproved"
    assert "no call could be compared with SDPA" in str(judged["sageattention"].reason)
    assert sdpa_failure(cells) is None
    cells["sdpa"] = calls("error", "RuntimeError: no kernel image")
    assert sdpa_failure(cells) == (
        "torch SDPA itself failed on this GPU (fp16 n1024-d64: RuntimeError: no kernel image)"
    )


def test_import_failures_broken_unless_the_package_says_it_cannot_run_here() -> None:
    kitchen = loaded(
        "comfy_kitchen_int8", "0.2.31", False,
        "RuntimeError: comfy_kitchen.int8_attention_is_available() is False (it needs CUDA, …)",
    )  # fmt: skip
    sage = loaded("sageattention", "2.2.0", False, "ImportError: undefined symbol: _ZN3c10")
    crashed = loaded("xformers", "0.0.35", False, "the measuring process failed with it alone")
    judged = {p.name: p for p in judge([kitchen, sage, crashed], {"sdpa": calls()})}
    assert judged["comfy_kitchen_int8"].verdict == "unavailable"
    assert judged["sageattention"].verdict == "broken"
    assert judged["sageattention"].reason == "ImportError: undefined symbol: _ZN3c10"
    assert judged["xformers"].verdict == "broken"


# --- actions -----------------------------------------------------------------------------


def test_a_broken_xformers_in_the_venv_is_uninstalled_the_others_are_kept() -> None:
    decided = decide(judge(h200_loaded(), h200_cells()), places())
    assert verdicts(decided) == {
        "xformers": ("broken", "uninstalled"),
        "sageattention": ("working", "kept"),
        "sageattn3": ("absent", "none"),
        "comfy_kitchen_int8": ("working", "kept"),
    }
    xformers = decided[0]
    assert xformers.in_venv and xformers.location == VENV_SITE
    assert "ComfyUI picks xformers for every attention call" in str(xformers.action_reason)


def test_a_broken_xformers_outside_the_venv_is_disabled_not_uninstalled() -> None:
    [xformers] = [p for p in decide(judge(h200_loaded(), h200_cells()), places(False))
                  if p.name == "xformers"]  # fmt: skip
    assert xformers.action == "disabled"
    assert "it lives outside the venv (/usr/lib/py)" in str(xformers.action_reason)
    assert "--disable-xformers" in str(xformers.action_reason)


def test_backends_comfyui_uses_only_when_asked_are_marked() -> None:
    cells = h200_cells()
    cells["sageattention"] = calls("error", "ValueError: Unsupported CUDA architecture: sm100")
    cells["comfy_kitchen_int8"] = calls("wrong", "the output holds NaN or infinite values")
    decided = {p.name: p for p in decide(judge(h200_loaded(), cells), places())}
    assert decided["sageattention"].action == "marked"
    assert "only with --use-sage-attention" in str(decided["sageattention"].action_reason)
    assert decided["comfy_kitchen_int8"].action == "marked"
    assert "stays installed" in str(decided["comfy_kitchen_int8"].action_reason)


def test_no_gpu_or_nothing_installed_skips_with_the_reason() -> None:
    every = places()
    assert skip_reason(no_gpu("no NVIDIA driver found"), every, DISTS) == (
        "no NVIDIA GPU (no NVIDIA driver found)"
    )
    nothing = {name: Place(name, None) for name in every}
    assert skip_reason(H200, nothing, DISTS) == (
        "no attention backend is installed (xformers, SageAttention, comfy-kitchen)"
    )
    assert skip_reason(H200, every, DISTS) is None


# --- what is recorded and shown ----------------------------------------------------------


def h200_proof(step: str = "optimizations") -> AcceleratorProof:
    return AcceleratorProof(
        status="proved", step=step, device="NVIDIA H200 (cc 9.0)", torch="2.11.0+cu130",
        backends=decide(judge(h200_loaded(), h200_cells()), places()), torch_unchanged=True,
    )  # fmt: skip


def test_the_summary_line_says_what_was_found_and_done() -> None:
    line = summary_line(h200_proof())
    assert line.startswith("attention proof: xformers 0.0.35 broken (every fp16 call failed: ")
    assert "xFormers wasn't build with CUDA support), uninstalled" in line
    assert "; SageAttention 2.2.0 working; comfy-kitchen int8 0.2.31 working" in line
    assert "SageAttention 3" not in line  # absent ones are not listed
    skipped = AcceleratorProof(status="skipped", reason="no NVIDIA GPU (none found)")
    assert summary_line(skipped) == "attention proof skipped: no NVIDIA GPU (none found)"
    marked = replace_action(h200_proof().backends[1], "marked")
    assert describe_backend(marked).endswith(", kept installed, never routed")


def replace_action(backend: BackendProof, action: str) -> BackendProof:
    return backend.model_copy(update={"action": action})


def test_what_step_10_uninstalled_stays_on_record_in_verify() -> None:
    earlier = h200_proof()
    later_backends = [
        b.model_copy(update={"verdict": "absent", "action": "none", "reason": None, "cells": []})
        if b.name == "xformers"
        else b
        for b in earlier.backends
    ]
    later = AcceleratorProof(status="proved", step="verify", backends=later_backends)
    carried = carry_forward(later, earlier)
    assert carried.backend("xformers") == earlier.backend("xformers")
    assert carried.step == "verify"
    skipped = AcceleratorProof(status="skipped", step="verify", reason="x")
    assert carry_forward(skipped, earlier) == skipped


def test_the_newest_proof_is_read_back_from_the_state() -> None:
    state = InstallState()
    assert latest_proof(state) is None
    state.steps["optimizations"] = StepRecord(
        status="done", outputs={PROOF_KEY: h200_proof().as_data()}
    )
    assert latest_proof(state) == h200_proof()
    skipped = AcceleratorProof(status="skipped", step="verify", reason="no GPU")
    state.steps["verify"] = StepRecord(status="done", outputs={PROOF_KEY: skipped.as_data()})
    assert latest_proof(state) == h200_proof()  # a skipped verify does not hide step 10's
    state.steps["verify"] = StepRecord(
        status="done", outputs={PROOF_KEY: h200_proof("verify").as_data()}
    )
    assert latest_proof(state) == h200_proof("verify")
    state.steps["verify"] = StepRecord(status="done", outputs={PROOF_KEY: {"status": "odd"}})
    assert latest_proof(state) == h200_proof()


# --- launch never uses a broken backend --------------------------------------------------


def test_broken_now_counts_only_the_version_the_proof_saw() -> None:
    proof = h200_proof()
    marked = proof.model_copy(update={"backends": [
        replace_action(b, "marked") if b.name == "xformers" else b for b in proof.backends
    ]})  # fmt: skip
    assert broken_now(marked, H200_VERSIONS) == {
        "xformers": f"every fp16 call failed: {XFORMERS_ERROR}"
    }
    assert broken_now(marked, {**H200_VERSIONS, "xformers": "0.0.36"}) == {}
    assert broken_now(marked, {**H200_VERSIONS, "xformers": None}) == {}
    assert broken_now(proof, None) == {}  # uninstalled, versions unknown
    assert broken_now(marked, None) == {"xformers": f"every fp16 call failed: {XFORMERS_ERROR}"}
    assert broken_now(None, H200_VERSIONS) == {}


def sage_broken_proof() -> AcceleratorProof:
    cells = h200_cells()
    cells["sageattention"] = calls("wrong", "max abs error 0.9 vs SDPA exceeds the tolerance 0.05")
    return AcceleratorProof(status="proved", step="verify", device="NVIDIA H200 (cc 9.0)",
                            backends=decide(judge(h200_loaded(), cells), places()))  # fmt: skip


def launch_facts(proof: AcceleratorProof | None) -> LaunchFacts:
    return LaunchFacts(
        platform="linux",
        venv_python=Path("/srv/i/venv/bin/python"),
        comfyui_dir=Path("/srv/i/ComfyUI"),
        gpu=H200,
        attention=AttentionProbe(H200_VERSIONS),
        calibration=CalibrationRead(Path("/srv/i/.comfy-install/calibration.json"),
                                    h200_calibration()),
        shim="current",
        site_packages=Path(VENV_SITE),
        proof=proof,
    )  # fmt: skip


def test_launch_never_routes_to_a_backend_the_proof_found_broken() -> None:
    request = LaunchRequest(Path("/srv/i"))
    routed = plan_launch(request, launch_facts(None), {})
    assert routed.attention is not None and "sageattention" in routed.attention.routed
    plan = plan_launch(request, launch_facts(sage_broken_proof()), {})
    attention = plan.tuning("attention")
    assert attention is not None and attention.status == "off"
    assert attention.reason.startswith(
        "every backend measured faster is broken on this GPU (the accelerator proof)"
    )
    assert plan.attention is not None and not plan.attention.routed
    assert any(
        line.startswith("SageAttention 2.2.0 is never routed: the accelerator proof found it")
        for line in plan.attention.details
    )
    assert "COMFY_INSTALL_ATTENTION_ROUTES" not in plan.env_set


def test_a_broken_xformers_left_installed_is_disabled_at_launch_with_the_reason() -> None:
    proof = h200_proof()
    marked = proof.model_copy(update={"backends": [
        replace_action(b, "disabled") if b.name == "xformers" else b for b in proof.backends
    ]})  # fmt: skip
    plan = plan_launch(LaunchRequest(Path("/srv/i")), launch_facts(marked), {})
    assert "--disable-xformers" in plan.argv
    xformers = plan.tuning("xformers")
    assert xformers is not None
    assert "is broken on this GPU (the accelerator proof: every fp16 call failed" in xformers.reason


@pytest.mark.parametrize(("flag", "label"), [("--use-sage-attention", "SageAttention")])
def test_a_users_flag_for_a_broken_backend_wins_with_a_warning(flag: str, label: str) -> None:
    plan = plan_launch(LaunchRequest(Path("/srv/i"), extra_args=(flag,)),
                       launch_facts(sage_broken_proof()), {})  # fmt: skip
    assert plan.argv.count(flag) == 1
    assert plan.attention is not None and plan.attention.warning is not None
    assert plan.attention.warning.startswith(
        f"you chose {flag}, but the accelerator proof found {label} broken on this GPU (wrong"
    )


def test_a_proof_replaced_by_another_version_no_longer_counts() -> None:
    facts = replace(
        launch_facts(sage_broken_proof()),
        attention=AttentionProbe({**H200_VERSIONS, "sageattention": "2.2.1"}),
    )
    plan = plan_launch(LaunchRequest(Path("/srv/i")), facts, {})
    # sageattention 2.2.1 is not the calibrated version either: stale, nothing routed,
    # but not because of the proof.
    attention = plan.tuning("attention")
    assert attention is not None and "broken" not in attention.reason
