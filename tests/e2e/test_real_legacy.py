"""The old pin keeps working: ComfyUI v0.3.77 (`--comfyui-ref v0.3.77`) with the new torch.

Installs the fixture bundle of ComfyUI v0.3.77 with the shipped torch 2.11.0 trio from the
package registry (`--gpu none --torch-index default`) into a DIR of its own and starts it
with `comfy-install launch`, no ComfyUI arguments, until `GET /object_info` answers. (The
shared `real_install_0377` is not used: the attention tests launch ComfyUI from it on
another worker, and two launches from one DIR collide.) v0.3.77 imports `requests` without
declaring it (`app/frontend_management.py`), which `extra_requirements` supplies; it does
not require comfy-kitchen, and verify says so. Marked `real`: it needs the registry (the
torch trio comes from the uv cache the other real tests fill).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from support.cli import read_state, run, venv_dists
from support.real import LEGACY_REF, REAL_ENV, launch_and_stop, real_install_args

pytestmark = pytest.mark.real


def test_comfyui_v0_3_77_installs_and_starts_with_the_new_torch(tmp_path: Path) -> None:
    target = tmp_path / "legacy"
    done = run(real_install_args(target, LEGACY_REF), REAL_ENV, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    dists = venv_dists(target)
    assert dists["torch"].startswith("2.11.0")
    assert "requests" in dists
    assert "comfy-kitchen" not in dists
    state = read_state(target)
    assert state["steps"]["comfyui"]["outputs"]["ref"] == LEGACY_REF
    verify = state["steps"]["verify"]["outputs"]
    assert verify["startup_test"] == "ok"
    assert verify["comfy_kitchen"]["installed"] is False
    data = launch_and_stop(target, REAL_ENV)
    assert "KSampler" in data["nodes"]  # type: ignore[operator]
