"""The attention router against the real ComfyUI v0.3.77 and v0.33.0 (on the CPU).

Each release is installed once per session (`--gpu none`, the registry's CPU torch).
A calibration file is present, but ComfyUI runs with `--cpu`, so `launch`'s own decision
routes nothing; the tests give the shim a routing table of their own
(`COMFY_INSTALL_ATTENTION_ROUTES`, which `launch` keeps as the user's), routing one band
to `attention_split` (a function both releases have and that needs no GPU library), and:

- start ComfyUI with `launch`: it answers `/object_info`, and the shim's start-up line
  and counters file say the router attached, to ComfyUI's real functions;
- import ComfyUI's modules with a table naming a function ComfyUI does not have: the router
  does not attach, says why, and ComfyUI keeps its own choice;
- import ComfyUI's real modules in a process the shim is active in: the model modules
  (`comfy.ldm.flux.math`) bind the router, and a call with real CPU tensors reaches
  ComfyUI's `attention_pytorch` through it and is counted.

Marked `real` (slow: installs ComfyUI and torch from the package registry).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from installer.attention.rules.records import dump_calibration
from installer.launch.shim import ensure_shim
from support.attention import h200_calibration
from support.cli import cli_path, run
from support.real import REAL_ENV, free_port

pytestmark = pytest.mark.real

TABLE = {
    "schema_version": 1,
    "flush_every": 1,
    "routes": [
        {"head_dim": 64, "dtype": "fp16",
         "bands": [{"min_tokens": 1024, "max_tokens": None, "backend": "split"}]},
    ],
    "targets": {"split": "attention_split"},
}  # fmt: skip

PROBE = """
import json, sys
sys.argv = ["main.py", "--cpu"]
sys.path.insert(0, {comfyui!r})
import comfy.options
comfy.options.enable_args_parsing()
import torch
import comfy.ldm.modules.attention as attention
import comfy.ldm.flux.math as flux_math
q = torch.randn(2, 4096, 640)
out = attention.optimized_attention(q, q, q, 10)
print(json.dumps({{
    "router": attention.optimized_attention.__name__,
    "flux_binds_router": flux_math.optimized_attention is attention.optimized_attention,
    "masked": attention.optimized_attention_masked.__name__,
    "shape": list(out.shape),
}}))
"""


@pytest.fixture(params=["v0.3.77", "v0.33.0"])
def install(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A DIR of this test's own over the shared real install (its venv and ComfyUI linked).

    Other files launch the shared install at the same time (xdist); a DIR of its own keeps
    this test's pid file, calibration and `stop` away from theirs.
    """
    name = "real_install_0377" if request.param == "v0.3.77" else "real_install_033"
    shared: Path = request.getfixturevalue(name)
    target = tmp_path / "inst"
    state = target / ".comfy-install"
    state.mkdir(parents=True)
    for part in ("venv", "ComfyUI"):
        (target / part).symlink_to(shared / part, target_is_directory=True)
    shutil.copy2(shared / ".comfy-install" / "state.json", state / "state.json")
    (state / "calibration.json").write_text(dump_calibration(h200_calibration()))
    return target


def routes_env(install: Path, tmp_path: Path, **changes: Any) -> dict[str, str]:
    table = tmp_path / "routes.json"
    table.write_text(json.dumps({**TABLE, **changes}))
    counts = tmp_path / "calls.json"
    return {
        **REAL_ENV,
        "COMFY_INSTALL_ATTENTION_ROUTES": str(table),
        "COMFY_INSTALL_ATTENTION_COUNTS": str(counts),
    }


def start_and_stop(install: Path, env: dict[str, str]) -> str:
    """Launch in the background with --cpu, check /object_info, stop; return ComfyUI's log."""
    port = free_port()
    started = subprocess.run(
        [cli_path(), "launch", str(install), "--port", str(port), "--background", "--json",
         "--", "--cpu"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    try:
        assert started.returncode == 0, started.stderr[-3000:]
        log_path = Path(json.loads(started.stdout)["data"]["log"])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/object_info", timeout=30) as r:
            assert r.status == 200 and "KSampler" in json.loads(r.read())
    finally:
        stopped = run([cli_path(), "stop", str(install)], env, timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    return log_path.read_text()


def test_launch_attaches_the_router(install: Path, tmp_path: Path) -> None:
    """For v0.3.77 this is also the old pin's `launch` until `/object_info` lists KSampler
    (test_real_legacy.py checks its install and start-up test only)."""
    env = routes_env(install, tmp_path)
    shown = run([cli_path(), "launch", str(install), "--print-env", "--json", "--", "--cpu"], env)
    assert shown.returncode == 0, shown.stderr
    attention = json.loads(shown.stdout)["data"]["attention"]
    assert attention["status"] == "user" and attention["routes"] is None

    log = start_and_stop(install, env)
    assert (
        "comfy-install tuning: attention routing attached to comfy.ldm.modules.attention: "
        "D=64 fp16: attention_split from 1024 tokens; attention_pytorch elsewhere" in log
    ), log[-3000:]
    counts = json.loads((tmp_path / "calls.json").read_text())
    assert counts["attached"] is True
    assert counts["functions"] == {"sdpa": "attention_pytorch", "split": "attention_split"}


def run_probe(
    install: Path, env: dict[str, str], tmp_path: Path
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """Run PROBE (ComfyUI's real modules imported, one call) where the shim wakes up.

    Returns the finished process and what the probe printed.
    """
    from installer.edges.environment import site_packages_dirs

    [site] = site_packages_dirs(install / "venv", "linux")[:1]
    assert ensure_shim(site) == "current"
    probe = tmp_path / "probe" / "main.py"  # the shim only wakes up in a `main.py`
    probe.parent.mkdir()
    probe.write_text(PROBE.format(comfyui=str(install / "ComfyUI")))
    done = subprocess.run(
        [str(install / "venv" / "bin" / "python"), str(probe)],
        env={**env, "COMFY_INSTALL_TUNING": "1"}, cwd=install / "ComfyUI",
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done, json.loads(done.stdout.strip().splitlines()[-1])


def test_model_modules_bind_the_router_and_calls_reach_comfyui(
    install: Path, tmp_path: Path
) -> None:
    done, seen = run_probe(install, routes_env(install, tmp_path), tmp_path)
    assert seen == {
        "router": "comfy_install_attention_router",
        "flux_binds_router": True,
        "masked": "comfy_install_attention_router",
        "shape": [2, 4096, 640],
    }
    assert "attention routing attached" in done.stderr
    counts = json.loads((tmp_path / "calls.json").read_text())
    assert counts["calls"] == {"sdpa": 1}  # a CPU tensor: SDPA, ComfyUI's attention_pytorch


def test_a_table_naming_a_missing_function_leaves_comfyuis_own(
    install: Path, tmp_path: Path
) -> None:
    """The router does not attach, says why, and ComfyUI's modules keep their own function.

    Checked by importing ComfyUI's real modules (as above) rather than a second start of
    ComfyUI, which costs the suite about 20 s per release for the same evidence.
    """
    broken = routes_env(install, tmp_path, targets={"split": "attention_split",
                                                    "sdpa": "attention_renamed"})  # fmt: skip
    done, seen = run_probe(install, broken, tmp_path)
    assert (
        "comfy-install tuning: attention routing not attached "
        "(comfy.ldm.modules.attention has no attention_renamed)" in done.stderr
    ), done.stderr[-3000:]
    assert seen["router"] != "comfy_install_attention_router" and seen["shape"] == [2, 4096, 640]
    assert json.loads((tmp_path / "calls.json").read_text())["attached"] is False
