"""The old pin keeps working: ComfyUI v0.3.77 (`--comfyui-ref v0.3.77`) with the new torch.

The shared install of the fixture bundle of ComfyUI v0.3.77 with the shipped torch 2.11.0
trio from the package registry (`--gpu none --torch-index default`, the `real_install_0377`
fixture) is started with `comfy-install launch`, no ComfyUI arguments, until `GET
/object_info` answers, from a DIR of this test's own over it (its venv and ComfyUI linked:
other files launch the shared install at the same time). v0.3.77 imports `requests` without
declaring it (`app/frontend_management.py`), which `extra_requirements` supplies; it does
not require comfy-kitchen, and verify says so. Marked `real`: it needs the registry.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from support.cli import read_state, venv_dists
from support.real import LEGACY_REF, REAL_ENV, launch_and_stop

pytestmark = pytest.mark.real


def test_comfyui_v0_3_77_installs_and_starts_with_the_new_torch(
    real_install_0377: Path, tmp_path: Path
) -> None:
    dists = venv_dists(real_install_0377)
    assert dists["torch"].startswith("2.11.0")
    assert "requests" in dists
    assert "comfy-kitchen" not in dists
    state = read_state(real_install_0377)
    assert state["steps"]["comfyui"]["outputs"]["ref"] == LEGACY_REF
    verify = state["steps"]["verify"]["outputs"]
    assert verify["startup_test"] == "ok"
    assert verify["comfy_kitchen"]["installed"] is False

    own = tmp_path / "inst"
    (own / ".comfy-install").mkdir(parents=True)
    for part in ("venv", "ComfyUI"):
        (own / part).symlink_to(real_install_0377 / part, target_is_directory=True)
    shutil.copy2(
        real_install_0377 / ".comfy-install" / "state.json", own / ".comfy-install" / "state.json"
    )
    data = launch_and_stop(own, REAL_ENV)
    assert "KSampler" in data["nodes"]  # type: ignore[operator]
