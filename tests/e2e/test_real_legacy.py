"""The old pin keeps working: ComfyUI v0.3.77 (`--comfyui-ref v0.3.77`) with the new torch.

The shared install of the fixture bundle of ComfyUI v0.3.77 with the shipped torch 2.11.0
trio from the package registry (`--gpu none --torch-index default`, the `real_install_0377`
fixture) installs, and its verify step's start-up test (`main.py --quick-test-for-ci`: every
start-up import, all nodes) passes. v0.3.77 imports `requests` without declaring it
(`app/frontend_management.py`), which `extra_requirements` supplies; it does not require
comfy-kitchen, and verify says so. `comfy-install launch` of this release until `GET
/object_info` answers with KSampler is test_real_attention.py's launch test for v0.3.77 (a
DIR of its own over this install, the router attached): a plain launch here as well cost the
suite another ComfyUI start, and launch adds `--cpu` the same way for every release (the
pin's plain launch is test_real_comfyui.py's). Marked `real`: it needs the registry.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from support.cli import read_state, venv_dists
from support.real import LEGACY_REF

pytestmark = pytest.mark.real


def test_comfyui_v0_3_77_installs_and_starts_with_the_new_torch(real_install_0377: Path) -> None:
    dists = venv_dists(real_install_0377)
    assert dists["torch"].startswith("2.11.0")
    assert "requests" in dists
    assert "comfy-kitchen" not in dists
    state = read_state(real_install_0377)
    assert state["steps"]["comfyui"]["outputs"]["ref"] == LEGACY_REF
    verify = state["steps"]["verify"]["outputs"]
    assert verify["startup_test"] == "ok"
    assert verify["comfy_kitchen"]["installed"] is False
