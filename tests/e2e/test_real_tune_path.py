"""`tune`'s measuring code through the real ComfyUI v0.33.0 attention functions (on the CPU).

The shared real install's venv runs the shipped measuring package exactly as `tune` does
([`run_attention_module`][installer.attention.measure.runner.run_attention_module]), with `tune`'s
`comfyui` setting (the router's function mapping) and the hidden ``allow_cpu`` on one
tiny shape: it imports ComfyUI's real `comfy.ldm.modules.attention` and times
`attention_pytorch` in ComfyUI's layout, its output the reference. Marked `real`.
"""

from __future__ import annotations

import io
from dataclasses import asdict
from pathlib import Path

import pytest

from installer.attention.measure.attention_module import Shape
from installer.attention.measure.runner import run_attention_module
from installer.attention.measure.tune import TuneOptions, module_config
from installer.core.log import InstallerLogger
from installer.edges.environment import current_platform
from installer.edges.probe import layout

pytestmark = pytest.mark.real

TINY = Shape("tiny", "tiny", "CPU test shape", 1, 64, 2, 64)


def test_the_measuring_code_goes_through_comfyuis_functions(real_install: Path) -> None:
    python = layout(real_install, current_platform())["venv_python"]
    config = {
        **module_config(TuneOptions(install_dir=real_install, budget_s=20)),
        "shapes": [asdict(TINY)],
        "dtypes": ["bf16"],
        "warmup": 1,
        "iterations": 3,
        "allow_cpu": True,
    }
    log = InstallerLogger(stream=io.StringIO())
    document = run_attention_module(python, config, log, timeout=120)
    assert document["measured"], document["reason"]
    assert (document["method"], document["method_reason"]) == ("comfyui", None)
    lines = {line["name"]: line for line in document["backends"]}
    assert lines["sdpa"]["function"] == "attention_pytorch" and lines["sdpa"]["available"]
    # No CUDA: ComfyUI loads no SageAttention, so it is reported, not measured.
    assert not lines["sageattention"]["available"]
    assert lines["sageattention"]["function"] == "attention_sage"
    rows = [row for row in document["results"] if row["backend"] == "sdpa"]
    assert len(rows) == 1 and rows[0]["status"] == "ok", rows
    assert len(rows[0]["times_ms"]) == 3
    # The reference is SDPA's math back end in fp32: ComfyUI's bf16 path differs by rounding.
    assert 0 <= rows[0]["max_abs_error"] < 2e-2, rows


def test_without_comfyui_it_measures_the_kernels(real_install: Path, tmp_path: Path) -> None:
    python = layout(real_install, current_platform())["venv_python"]
    config = {
        **module_config(TuneOptions(install_dir=tmp_path)),
        "shapes": [asdict(TINY)],
        "dtypes": ["bf16"],
        "warmup": 1,
        "iterations": 3,
        "allow_cpu": True,
        "backends": ["sdpa"],
    }
    document = run_attention_module(
        python, config, InstallerLogger(stream=io.StringIO()), timeout=120
    )
    assert document["method"] == "kernels"
    assert "holds no ComfyUI" in document["method_reason"]
    assert [row["status"] for row in document["results"]] == ["ok"]
