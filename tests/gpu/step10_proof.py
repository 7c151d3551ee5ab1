"""Step 10's accelerator proof on a real GPU: a broken xformers goes, SageAttention 2 stays.

Run by `tests/gpu/proof.sh` on the GPU machine (no network). In a venv over the
machine's python3 and its torch (2.11.0+cu130 on the H200), with SITE (ComfyUI's
requirements, comfy-kitchen, sageattention 1.0.6) on its path:

1. step 10 for real (`installer.steps.optimizations.run_optimizations`, with a context
   holding what it reads): xformers 0.0.35 from PyPI's wheel (a CUDA 12 build that
   imports beside a CUDA 13 torch and fails every call) installed by uv offline from
   the carried file, triton already there, and SageAttention 2.2.0 (built on the H200)
   as the prebuilt wheel for cc 9.0, downloaded from a server on 127.0.0.1 and checked
   against its sha256; then the proof: every installed backend against SDPA on the GPU;
2. verify for real (`installer.steps.verify.run_verify`, on ComfyUI v0.33.0 from the
   carried bundle when there is one, else the fixture ComfyUI): its proof again, after
   ComfyUI's import check and before its start-up test;
3. SageAttention 2 uninstalled, so that SITE's sageattention 1.0.6 (outside the venv)
   is the one the venv sees, and the proof once more.

Writes to OUT: `step10-outputs.json` and `verify-outputs.json` (the outputs
`state.json` would hold), `sage1-proof.json`, `proof.log` and `proof-summary.txt`.
Exits 1 when step 10's proof does not mark xformers broken and uninstall it with
torch unchanged, or does not mark SageAttention 2 working.

Usage: ``python3 tests/gpu/step10_proof.py OUT XFORMERS_WHEEL SAGE2_WHEEL [SITE [BUNDLE]]``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import traceback
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from installer.attention.measure.proof import prove_accelerators
from installer.core.config import Dependencies, IndexOptions, ToolsManifest
from installer.core.errors import InstallerError
from installer.core.facts import BuildHost, Tool
from installer.core.log import InstallerLogger
from installer.core.proof import proof_from_outputs
from installer.core.records import InstallState, StepRecord
from installer.edges.environment import find_uv_binary
from installer.edges.gpu import detect_gpus
from installer.edges.probe import installed_distributions
from installer.edges.uv import Uv
from installer.optimizations.venv import inspect_venv_torch
from installer.plan.proof import summary_line
from installer.steps.context import StepContext
from installer.steps.optimizations import run_optimizations
from installer.steps.verify import run_verify
from support.cli import SHIPPED_DEPS
from support.comfy_repo import MAIN_PY
from support.http_server import LocalHTTPServer
from support.wheels import sha256_of

ROOT = Path("/tmp/proof-dir")


def sh(*args: str | Path) -> str:
    return subprocess.run([str(a) for a in args], check=True, capture_output=True, text=True).stdout


def make_venv(site: Path | None) -> Path:
    """A venv over the machine's python3 (its torch), with SITE on its path; returns its Python."""
    shutil.rmtree(ROOT, ignore_errors=True)
    ROOT.mkdir(parents=True)
    sh(sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", ROOT / "venv")
    python = ROOT / "venv" / "bin" / "python"
    purelib = Path(sh(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
                   .strip())  # fmt: skip
    machine = sh(sys.executable, "-c", "import site; print('\\n'.join(site.getsitepackages()))")
    (purelib / "machine-torch.pth").write_text(machine)
    if site is not None and site.is_dir():
        (purelib / "requirements-site.pth").write_text(f"{site}\n")
    return python


def comfyui(bundle: Path | None) -> Path:
    """ComfyUI v0.33.0 from the bundle, or the fixture ComfyUI's main.py."""
    target = ROOT / "ComfyUI"
    if bundle is not None and bundle.is_file():
        sh("git", "clone", "-q", bundle, target)
        sh("git", "-C", target, "checkout", "-q", "v0.33.0")
        (target / "custom_nodes").mkdir(exist_ok=True)  # as the comfyui step makes it
    else:
        target.mkdir()
        (target / "main.py").write_text(MAIN_PY)
    return target


def context(python: Path, gpu: Any, uv: Uv, deps: Dependencies, manifest: ToolsManifest,
            log: InstallerLogger, comfy: Path) -> StepContext:  # fmt: skip
    """A step context holding what step 10 and verify read (the plan's parts as plain data)."""
    torch = inspect_venv_torch(python)
    plan = SimpleNamespace(
        platform="linux",
        lock=None,
        gpu=gpu,
        torch=SimpleNamespace(index_url=None, cuda=torch.cuda),
    )
    # No source build here: SageAttention 2 comes as the prebuilt wheel (built on this GPU).
    host = BuildHost(compiler=Tool("compiler", error="not used by this check"),
                     nvcc=Tool("nvcc", error="not used by this check"), offline=True)  # fmt: skip
    env = SimpleNamespace(compiler=host.compiler, nvcc=host.nvcc,
                          build_host=lambda offline=False: host)  # fmt: skip
    return StepContext(
        plan=plan,  # type: ignore[arg-type]
        deps=deps,
        manifest=manifest,
        env=env,  # type: ignore[arg-type]
        gpu=gpu,
        options=SimpleNamespace(allow_unverified=False, offline=True),  # type: ignore[arg-type]
        log=log,
        uv=uv,
        state=InstallState(),
        paths={"install_dir": ROOT, "venv_python": python, "comfyui": comfy},
    )


def main() -> int:
    # The venv's Python and uv must see the venv, not the folders this script runs from
    # (SITE first on PYTHONPATH would hide the venv's SageAttention 2 behind SITE's 1.0.6).
    os.environ.pop("PYTHONPATH", None)
    out = Path(sys.argv[1])
    xformers_wheel, sage_wheel = Path(sys.argv[2]).resolve(), Path(sys.argv[3]).resolve()
    site = Path(sys.argv[4]) if len(sys.argv) > 4 else None
    bundle = Path(sys.argv[5]) if len(sys.argv) > 5 else None
    out.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []

    def say(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    gpu = detect_gpus()
    say(f"GPU: {gpu.reason}; {[(g.name, g.cc) for g in gpu.gpus]}, driver {gpu.driver_version}")
    python = make_venv(site)
    comfy = comfyui(bundle)
    before = inspect_venv_torch(python)
    say(f"venv torch: {before.pins} cuda {before.cuda}")
    uv_bin = find_uv_binary()
    if uv_bin is None:
        say("FAIL: no uv (carry its wheel in .whl/ or put it in SITE)")
        return 1
    log = InstallerLogger(verbosity=1, log_file=out / "proof.log")
    uv = Uv(binary=uv_bin, log=log,
            index=IndexOptions(find_links=[str(xformers_wheel.parent)], offline=True))  # fmt: skip
    # The shipped plan never installs PyPI's xformers (a CUDA 12 build) beside a CUDA 13 torch,
    # so put it in the venv first, as a user or another tool would: the proof must find it.
    sh(uv_bin, "pip", "install", "--python", python, "--no-deps", "--offline", xformers_wheel)
    say(f"xformers pre-installed in the venv from {xformers_wheel.name}")
    deps_data = json.loads(SHIPPED_DEPS.read_text())
    failures: list[str] = []
    with LocalHTTPServer() as server:
        server.add(f"/releases/{sage_wheel.name}", sage_wheel.read_bytes())
        deps_data["pip_packages"]["sageattention_wheels"] = [{
            "name": "sageattention2-sm90-h200", "cc": ">=9.0,<10.0", "torch": ">=2.11,<2.12",
            "cuda": ["cu130"], "python": ">=3.12,<3.13", "platform": "linux",
            "import_name": "sageattention", "url": server.url(f"/releases/{sage_wheel.name}"),
        }]  # fmt: skip
        manifest = ToolsManifest.model_validate({"schema_version": 1, "files": {
            sage_wheel.name: {"sha256": sha256_of(sage_wheel), "size": sage_wheel.stat().st_size}
        }})  # fmt: skip
        (ROOT / ".comfy-install").mkdir(exist_ok=True)
        os.environ["COMFY_INSTALL_CACHE_DIR"] = str(ROOT / "cache")
        ctx = context(python, gpu, uv, Dependencies.model_validate(deps_data), manifest, log, comfy)
        outputs = run_optimizations(ctx, None)  # type: ignore[arg-type]
    (out / "step10-outputs.json").write_text(json.dumps(outputs, indent=2))
    proof = proof_from_outputs(outputs)
    assert proof is not None
    say(f"step 10: {outputs['installed']} installed, {outputs['skipped']} skipped, "
        f"{outputs['failed']} failed; {summary_line(proof)}")  # fmt: skip
    for package in outputs["packages"]:
        say(f"  {package['name']}: {package['status']} ({package['reason']})")
    after = inspect_venv_torch(python)
    dists = installed_distributions(ROOT / "venv", "linux")
    xformers, sage = proof.backend("xformers"), proof.backend("sageattention")
    checks = {
        "proof proved on the GPU": proof.status == "proved",
        "xformers broken": xformers is not None and xformers.verdict == "broken",
        "xformers uninstalled": xformers is not None and xformers.action == "uninstalled",
        "xformers gone from the venv": "xformers" not in dists,
        "torch unchanged": after.pins == before.pins and proof.torch_unchanged is True,
        "SageAttention 2.2.0 working": sage is not None and sage.verdict == "working"
        and str(sage.version).startswith("2.2.0"),
    }  # fmt: skip
    for name, ok in checks.items():
        say(f"{'ok  ' if ok else 'FAIL'} {name}")
        if not ok:
            failures.append(name)

    # 2. verify: the import check, the proof again (what step 10 removed stays on record),
    # ComfyUI's start-up test.
    ctx.state.steps["optimizations"] = StepRecord(status="done", outputs=outputs)
    try:
        verified = run_verify(ctx, None)  # type: ignore[arg-type]
        say(f"verify: ok, startup_test {verified.get('startup_test')}")
    except InstallerError as exc:
        say(f"verify: {type(exc).__name__}: {exc.message.splitlines()[0]} (its proof again:)")
        earlier = proof_from_outputs(outputs)
        again = prove_accelerators(python, uv, gpu, log, "verify", earlier)
        verified = {"error": exc.message, "accelerators": again.as_data()}
    (out / "verify-outputs.json").write_text(json.dumps(verified, indent=2, default=str))
    verify_proof = proof_from_outputs(verified)
    say(f"verify: {summary_line(verify_proof) if verify_proof else 'no proof recorded'}")

    # 3. SageAttention 1.0.6 from SITE (outside the venv) once SageAttention 2 is gone.
    if site is not None and (site / "sageattention").is_dir():
        uv.run(["pip", "uninstall", "--python", python, "sageattention"], "uninstall sageattention")
        sage1 = prove_accelerators(python, uv, gpu, log, "verify")
        (out / "sage1-proof.json").write_text(json.dumps(sage1.as_data(), indent=2))
        say(f"with SITE's SageAttention: {summary_line(sage1)}")
    say("RESULT: " + ("ok" if not failures else "FAILED: " + ", ".join(failures)))
    (out / "proof-summary.txt").write_text("\n".join(lines) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:
        traceback.print_exc()
        sys.exit(2)
