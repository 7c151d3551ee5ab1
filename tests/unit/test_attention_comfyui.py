"""Measuring through ComfyUI's attention functions: a fake `comfy.ldm.modules.attention` (no torch).

The fake ComfyUI is a real folder imported the way `tune`'s module imports the
install's ComfyUI; its functions record the calls they get, so the tests see
which function each backend goes through, with which layout and heads.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from installer.attention.measure.attention_comfyui import comfyui_backends, import_attention
from installer.attention.rules.records import Calibration
from installer.attention.rules.routing import usable_calibration
from installer.attention.shim.router import LOADED, TARGETS

FAKE_ATTENTION = """
import os
CALLS = []
CWD_AT_IMPORT = os.getcwd()
SAGE_ATTENTION_IS_AVAILABLE = {sage}
COMFY_KITCHEN_INT8_ATTENTION_IS_AVAILABLE = False

def _make(name):
    def function(q, k, v, heads, mask=None, attn_precision=None, skip_reshape=False,
                 skip_output_reshape=False, **kwargs):
        CALLS.append((name, q, heads))
        return name
    function.__name__ = name
    return function

attention_pytorch = _make("attention_pytorch")
attention_sage = _make("attention_sage")
attention_comfy_kitchen_int8 = _make("attention_comfy_kitchen_int8")
"""


class Tensor:
    """Stands in for a (B, H, N, D) torch tensor: records the layout changes made to it."""

    def __init__(self, *shape: int, steps: tuple[str, ...] = ()) -> None:
        self.shape = shape
        self.steps = steps

    def transpose(self, a: int, b: int) -> Tensor:
        shape = list(self.shape)
        shape[a], shape[b] = shape[b], shape[a]
        return Tensor(*shape, steps=(*self.steps, f"transpose{a}{b}"))

    def reshape(self, *shape: int) -> Tensor:
        known = 1
        for size in shape:
            known *= size if size != -1 else 1
        total = 1
        for size in self.shape:
            total *= size
        fixed = tuple(total // known if size == -1 else size for size in shape)
        return Tensor(*fixed, steps=(*self.steps, "reshape"))

    def contiguous(self) -> Tensor:
        return Tensor(*self.shape, steps=(*self.steps, "contiguous"))


@pytest.fixture
def comfyui(tmp_path: Path) -> Iterator[Any]:
    def make(sage: bool = True, body: str | None = None) -> Path:
        folder = tmp_path / "ComfyUI"
        package = folder / "comfy" / "ldm" / "modules"
        package.mkdir(parents=True)
        for level in (folder / "comfy", folder / "comfy" / "ldm", package):
            (level / "__init__.py").write_text("")
        (package / "attention.py").write_text(body or FAKE_ATTENTION.format(sage=sage))
        return folder

    before = list(sys.path)
    yield make
    sys.path[:] = before
    for name in [n for n in sys.modules if n == "comfy" or n.startswith("comfy.")]:
        del sys.modules[name]


def test_each_backend_goes_through_the_routers_comfyui_function(comfyui: Any) -> None:
    folder = comfyui(sage=True)
    module, reason = import_attention(str(folder))
    assert reason is None and module is not None
    assert str(folder) == module.CWD_AT_IMPORT  # imported from its own folder, like ComfyUI
    assert Path.cwd() != folder
    names = list(TARGETS)
    usable, report = comfyui_backends(module, names, TARGETS, LOADED)
    assert sorted(usable) == ["sageattention", "sdpa"]
    lines = {line["name"]: line for line in report}
    assert lines["sdpa"]["function"] == "attention_pytorch" and lines["sdpa"]["available"]
    assert lines["xformers"]["reason"] == (
        "ComfyUI's comfy.ldm.modules.attention has no attention_xformers"
    )
    assert lines["sageattn3"]["reason"].endswith("has no attention3_sage")
    kitchen = lines["comfy_kitchen_int8"]
    assert not kitchen["available"] and kitchen["reason"] in {
        "not installed",
        "ComfyUI did not load it (COMFY_KITCHEN_INT8_ATTENTION_IS_AVAILABLE is false)",
    }
    # ComfyUI's layout: (B, H, N, D) inputs become (B, N, H·D) copies, and heads=H.
    q = Tensor(2, 10, 4096, 64)
    backend = usable["sageattention"]
    args = backend.prepare(q, q, q)
    assert args[0].shape == (2, 4096, 640) and args[3] == 10
    assert args[0].steps == ("transpose12", "reshape", "contiguous")
    assert backend.to_bhnd(backend.call(args)) == "attention_sage"
    assert usable["sdpa"].call(args) == "attention_pytorch"
    assert [(name, heads) for name, _, heads in module.CALLS] == [
        ("attention_sage", 10),
        ("attention_pytorch", 10),
    ]


def test_a_backend_comfyui_did_not_load_is_unavailable(comfyui: Any) -> None:
    module, _ = import_attention(str(comfyui(sage=False)))
    usable, report = comfyui_backends(module, ["sdpa", "sageattention"], TARGETS, LOADED)
    assert list(usable) == ["sdpa"]
    sage = report[1]
    assert not sage["available"] and sage["function"] == "attention_sage"
    assert sage["reason"] in {
        "not installed",
        "ComfyUI did not load it (SAGE_ATTENTION_IS_AVAILABLE is false)",
    }


def test_no_comfyui_or_a_broken_one_falls_back(comfyui: Any, tmp_path: Path) -> None:
    module, reason = import_attention(str(tmp_path / "nothing"))
    assert module is None and "holds no ComfyUI" in str(reason)
    folder = comfyui(body="import sys\nsys.exit(-1)\n")
    module, reason = import_attention(str(folder))
    assert module is None and "cannot be imported (SystemExit" in str(reason)
    assert str(folder) not in sys.path


def test_the_method_shows_in_the_launch_line() -> None:
    from installer.attention.rules.routing import AttentionProbe, CalibrationRead
    from installer.core.facts import GpuInfo, GpuReport

    calibration = Calibration.model_validate(
        {
            "tool_version": "0",
            "method": "comfyui",
            "margin": 1.05,
            "measured_on": {"gpu_name": "NVIDIA H200", "gpu_cc": "9.0", "driver": "580",
                            "torch": "2.11.0", "measured_at": "2026-11-30T10:00:00+00:00",
                            "budget_s": 60.0, "versions": {"torch": "2.11.0"}},
        }
    )  # fmt: skip
    gpu = GpuReport("nvml", "test", (GpuInfo(0, "NVIDIA H200", "9.0"),), "580", "13.0")
    read = CalibrationRead(Path("calibration.json"), calibration, None)
    found, summary = usable_calibration(read, AttentionProbe({"torch": "2.11.0"}), gpu)
    assert found is calibration
    assert summary.endswith("an NVIDIA H200 (through ComfyUI's attention functions)")
