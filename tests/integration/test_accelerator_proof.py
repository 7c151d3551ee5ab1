"""The accelerator proof for real: a venv made by uv, tiny backend packages, the real uv uninstall.

This machine has no GPU, so no attention call can be made here. The proof's path is
real up to that point: it asks the venv's Python where each backend lives and runs
`benchmark`'s measuring module in the venv, whose (stand-in, CPU-only) torch sees no
GPU, so the proof is skipped with that reason and nothing is uninstalled. What the
proof does with a broken backend is shown by feeding its judge the module's document
as the H200 gives it (xformers 0.0.35 beside torch 2.11.0+cu130 fails every call):
the decision, the uninstall by the real uv and the check that torch is untouched run
for real against the venv.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from installer.attention.measure.proof import PROOF_SHAPES, prove_accelerators, settle
from installer.core.config import IndexOptions
from installer.core.facts import GpuInfo, GpuReport, no_gpu
from installer.core.log import InstallerLogger
from installer.edges.environment import find_uv_binary
from installer.edges.probe import installed_distributions
from installer.edges.uv import Uv
from installer.optimizations.outcome import OptimizationOutcome
from installer.optimizations.proof import locate, with_proof
from installer.optimizations.venv import inspect_venv_torch
from support.attention import XFORMERS_ERROR
from support.cli import (
    BASE_PYTHON,
    Fixtures,
    cli_path,
    install_args,
    installer_env,
    read_state,
    run,
    venv_dists,
    write_config,
)
from support.wheels import WheelSpec, build_wheel

H200 = GpuReport("nvml", "test", (GpuInfo(0, "NVIDIA H200", "9.0"),), "580.159.04", "13.0")
TRIO = {"torch": "2.9.1+cu128", "torchvision": "0.24.1", "torchaudio": "2.9.1"}
XFORMERS_OPS = '''
def memory_efficient_attention(q, k, v, *args, **kwargs):
    """Like xformers 0.0.35's wheel beside a CUDA 13 torch: it imports, every call fails."""
    raise NotImplementedError(
        "No operator found for `memory_efficient_attention_forward` with inputs:\\n"
        "`cutlassF-pt` is not supported because:\\n    xFormers wasn't build with CUDA support"
    )
'''
SAGE_INIT = """
__version__ = "2.2.0"
def sageattn(q, k, v, tensor_layout="HND", is_causal=False):
    raise RuntimeError("this stand-in is never called on a machine without a GPU")
"""


@pytest.fixture(scope="module")
def backend_wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the stand-in xformers 0.0.35 and SageAttention 2.2.0 wheels."""
    folder = tmp_path_factory.mktemp("backends")
    build_wheel(
        WheelSpec(
            "xformers",
            "0.0.35",
            tag="py39-none-manylinux_2_28_x86_64",
            files={"xformers/__init__.py": '__version__ = "0.0.35"\n',
                   "xformers/ops.py": XFORMERS_OPS},
        ),
        folder,
    )  # fmt: skip
    build_wheel(
        WheelSpec("sageattention", "2.2.0", files={"sageattention/__init__.py": SAGE_INIT}),
        folder,
    )
    return folder


def uv_binary() -> str:
    found = find_uv_binary()
    assert found, "uv is part of comfy-install's dependencies"
    return found


@pytest.fixture
def venv(tmp_path: Path, fixtures: Fixtures, backend_wheels: Path) -> Path:
    """A venv made by uv: the stand-in torch 2.9.1+cu128 trio, xformers and SageAttention 2."""
    env = installer_env(fixtures)
    python = tmp_path / "venv" / "bin" / "python"
    subprocess.run([uv_binary(), "venv", "-q", str(tmp_path / "venv"), "--python", BASE_PYTHON],
                   check=True, env=env)  # fmt: skip
    subprocess.run(
        [uv_binary(), "pip", "install", "-q", "--python", str(python), "--offline",
         "--find-links", str(fixtures.links), "--find-links", str(backend_wheels),
         "torch==2.9.1", "torchvision==0.24.1", "torchaudio==2.9.1", "xformers==0.0.35",
         "sageattention==2.2.0"],
        check=True, env=env,
    )  # fmt: skip
    return python


def uv_and_log(tmp_path: Path, fixtures: Fixtures) -> tuple[Uv, InstallerLogger]:
    log = InstallerLogger(verbosity=-1, log_file=tmp_path / "proof.log")
    env = installer_env(fixtures)
    return Uv(binary=uv_binary(), index=IndexOptions(offline=True), log=log, env=env), log


def dists(python: Path) -> dict[str, str]:
    return installed_distributions(python.parent.parent, "linux")


def test_without_a_gpu_it_is_skipped_with_the_reason_and_nothing_is_uninstalled(
    venv: Path, tmp_path: Path, fixtures: Fixtures
) -> None:
    uv, log = uv_and_log(tmp_path, fixtures)
    before = dists(venv)
    skipped = prove_accelerators(venv, uv, no_gpu("no NVIDIA driver found"), log, "optimizations")
    assert (skipped.status, skipped.reason) == ("skipped", "no NVIDIA GPU (no NVIDIA driver found)")
    # The GPU report says H200, but the venv's torch is a CPU-only one: the measuring
    # module runs in the venv and says so.
    cpu_torch = prove_accelerators(venv, uv, H200, log, "verify")
    assert cpu_torch.status == "skipped"
    assert cpu_torch.reason == (
        "torch 2.9.1+cu128 in this venv sees no CUDA GPU (CUDA build: 12.8)"
    )
    assert cpu_torch.backends == [] and cpu_torch.step == "verify"
    assert dists(venv) == before
    assert before["xformers"] == "0.0.35" and before["sageattention"] == "2.2.0"
    assert inspect_venv_torch(venv).pins == TRIO


def h200_document(xformers: str = "0.0.35") -> dict[str, Any]:
    """The measuring module's document for the proof's calls, as the H200 gives it."""
    results = []
    for shape in PROOF_SHAPES:
        for dtype in ("fp16", "bf16"):
            common = {"shape": shape.id, "dtype": dtype, "warmup": 2, "nonfinite": False,
                      "reference_max_abs": 4.1, "peak_memory_bytes": None,
                      "baseline_memory_bytes": None}  # fmt: skip
            results += [
                {**common, "backend": "sdpa", "status": "ok", "times_ms": [0.04, 0.04],
                 "max_abs_error": 0.0, "error": None},
                {**common, "backend": "xformers", "status": "error", "times_ms": [],
                 "max_abs_error": None, "error": XFORMERS_ERROR},
                {**common, "backend": "sageattention", "status": "ok", "times_ms": [0.09, 0.09],
                 "max_abs_error": 0.021, "error": None},
            ]  # fmt: skip
    return {
        "schema_version": 1,
        "measured": True,
        "reason": None,
        "device": {"kind": "cuda", "name": "NVIDIA H200", "cc": "9.0"},
        "torch": {"version": "2.11.0+cu130", "cuda": "13.0", "cuda_available": True},
        "backends": [
            {"name": "sdpa", "available": True, "version": "2.11.0+cu130", "reason": None},
            {"name": "xformers", "available": True, "version": xformers, "reason": None},
            {"name": "sageattention", "available": True, "version": "2.2.0", "reason": None},
            {"name": "sageattn3", "available": False, "version": None, "reason": "not installed"},
        ],
        "results": results,
    }


def test_a_broken_xformers_is_uninstalled_by_uv_with_torch_untouched(
    venv: Path, tmp_path: Path, fixtures: Fixtures
) -> None:
    uv, log = uv_and_log(tmp_path, fixtures)
    places = locate(venv, ["xformers", "sageattention", "sageattn3", "comfy-kitchen"])
    assert places["xformers"].in_venv and places["xformers"].version == "0.0.35"
    assert places["sageattn3"].version is None
    proof = settle(h200_document(), places, venv, uv, log, "optimizations")
    assert proof.status == "proved" and proof.device == "NVIDIA H200 (cc 9.0)"
    xformers = proof.backend("xformers")
    assert xformers is not None
    assert (xformers.verdict, xformers.action) == ("broken", "uninstalled")
    assert xformers.reason == f"every fp16 call failed: {XFORMERS_ERROR}"
    sage = proof.backend("sageattention")
    assert sage is not None and (sage.verdict, sage.action) == ("working", "kept")
    assert proof.torch_unchanged is True
    after = dists(venv)
    assert "xformers" not in after
    assert after["sageattention"] == "2.2.0"
    assert {name: after[name] for name in TRIO} == TRIO
    assert inspect_venv_torch(venv).pins == TRIO
    assert "xformers 0.0.35 uninstalled; torch unchanged" in (tmp_path / "proof.log").read_text()
    # Step 10's outcome of xformers says so: skipped (not failed, which the next install
    # would retry only for the proof to take it out again).
    outcomes = [
        OptimizationOutcome("xformers", "package", "installed", "built for torch 2.9",
                            "xformers==0.0.35", "xformers", "0.0.35"),
        OptimizationOutcome("sageattention2-sm90", "wheel", "installed", "fits",
                            "sageattention-2.2.0-cp39-abi3-linux_x86_64.whl", "sageattention",
                            "2.2.0"),
    ]  # fmt: skip
    xformers_outcome, sage_outcome = with_proof(outcomes, proof)
    assert xformers_outcome.status == "skipped"
    assert xformers_outcome.reason.startswith("broken on this GPU (every fp16 call failed: ")
    assert xformers_outcome.reason.endswith("); uninstalled by the accelerator proof")
    assert sage_outcome == outcomes[1]


def test_a_broken_xformers_outside_the_venv_is_disabled_and_left_alone(
    venv: Path, tmp_path: Path, fixtures: Fixtures, backend_wheels: Path
) -> None:
    uv, log = uv_and_log(tmp_path, fixtures)
    env = installer_env(fixtures)
    subprocess.run([uv_binary(), "pip", "uninstall", "-q", "--python", str(venv), "xformers"],
                   check=True, env=env)  # fmt: skip
    outside = tmp_path / "machine-site"
    subprocess.run(
        [uv_binary(), "pip", "install", "-q", "--offline", "--target", str(outside),
         "--find-links", str(backend_wheels), "xformers==0.0.35"],
        check=True, env=env,
    )  # fmt: skip
    site = next((venv.parent.parent / "lib").glob("python*/site-packages"))
    (site / "machine-site.pth").write_text(f"{outside}\n")
    places = locate(venv, ["xformers", "sageattention", "sageattn3", "comfy-kitchen"])
    assert places["xformers"].version == "0.0.35" and not places["xformers"].in_venv
    proof = settle(h200_document(), places, venv, uv, log, "optimizations")
    xformers = proof.backend("xformers")
    assert xformers is not None and xformers.action == "disabled"
    assert f"it lives outside the venv ({outside.resolve()})" in str(xformers.action_reason)
    assert proof.torch_unchanged is None  # nothing was uninstalled
    assert (outside / "xformers" / "ops.py").is_file()
    assert inspect_venv_torch(venv).pins == TRIO


def test_install_records_the_skipped_proof_and_status_and_doctor_show_it(
    tmp_path: Path, fixtures: Fixtures, index_server
) -> None:
    """The real install on a GPU given with --gpu: step 10 installs xformers and SageAttention
    1 (stand-ins), the proof runs in the venv and is skipped (CPU torch), nothing is removed."""
    _, index_url = index_server
    target = tmp_path / "inst"
    config = write_config(tmp_path / "deps.json", fixtures)
    env = installer_env(fixtures, COMFY_INSTALL_CACHE_DIR=str(tmp_path / "cache"))
    args = [*install_args(target, config, index_url), "--gpu", "9.0", "--cuda-driver", "12.8"]
    done = run(args, env, timeout=600)
    assert done.returncode == 0, done.stderr
    reason = "torch 2.9.1+cu128 in this venv sees no CUDA GPU (CUDA build: 12.8)"
    steps = read_state(target)["steps"]
    for step in ("optimizations", "verify"):
        proof = steps[step]["outputs"]["accelerators"]
        assert (proof["status"], proof["reason"], proof["step"]) == ("skipped", reason, step)
    packages = {p["name"]: p["status"] for p in steps["optimizations"]["outputs"]["packages"]}
    assert packages["xformers"] == "installed"
    assert "xformers" in venv_dists(target)
    assert f"attention proof skipped: {reason}" in done.stdout + done.stderr
    status = run([cli_path(), "status", str(target), "--json"], env)
    summary = json.loads(status.stdout)["data"]["summary"]
    assert summary["accelerators"]["status"] == "skipped"
    assert summary["accelerators"]["step"] == "verify"
    text = run([cli_path(), "status", str(target)], env)
    assert f"attention proof (verify): skipped: {reason}" in text.stdout + text.stderr
    doctor = run([cli_path(), "doctor", str(target), "--json"], env)
    checks = json.loads(doctor.stdout)["data"]["checks"]
    assert {"section": "accelerators", "name": "proof", "status": "info",
            "detail": f"skipped: {reason}", "hint": None} in checks  # fmt: skip


CRASHING_PYTHON = """#!{python}
import json, os, sys
args = sys.argv[1:]
config = json.load(open(args[args.index("--config") + 1]))
if "xformers" in config["backends"]:
    os.abort()  # a backend's library taking the interpreter down
document = json.load(open({document!r}))
document["backends"] = [b for b in document["backends"] if b["name"] in config["backends"]]
document["results"] = [r for r in document["results"] if r["backend"] in config["backends"]]
json.dump(document, open(args[args.index("--output") + 1], "w"))
"""


def test_a_backend_that_crashes_the_measuring_process_is_found_and_broken(
    tmp_path: Path,
) -> None:
    """The measuring module runs again one backend at a time; the one that crashes is broken."""
    import sys

    from installer.attention.measure.proof import measure
    from installer.core.proof import Place

    recorded = tmp_path / "document.json"
    recorded.write_text(json.dumps(h200_document()))
    python = tmp_path / "python"
    python.write_text(CRASHING_PYTHON.format(python=sys.executable, document=str(recorded)))
    python.chmod(0o755)
    log = InstallerLogger(verbosity=-1, log_file=tmp_path / "proof.log")
    document = measure(python, ["xformers", "sageattention"], log)
    reports = {b["name"]: b for b in document["backends"]}
    assert reports["xformers"]["available"] is False
    assert reports["xformers"]["reason"].startswith(
        "the measuring process failed with it alone: The attention benchmark failed in the venv"
    )
    assert reports["sageattention"]["available"] is True
    assert {r["backend"] for r in document["results"]} == {"sdpa", "sageattention"}
    # Judged as prove_accelerators judges it (xformers here lives outside the venv, so
    # nothing is uninstalled: the fake interpreter is no venv).
    places = {
        "xformers": Place("xformers", "0.0.35", "/usr/lib/python3/dist-packages", False),
        "sageattention": Place("sageattention", "2.2.0", "/srv/venv/site-packages", True),
    }
    uv = Uv(binary=uv_binary(), index=IndexOptions(offline=True), log=log)
    proof = settle(document, places, python, uv, log, "optimizations")
    assert {b.name: (b.verdict, b.action) for b in proof.backends} == {
        "xformers": ("broken", "disabled"),
        "sageattention": ("working", "kept"),
    }
