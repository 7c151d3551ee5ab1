"""The SageAttention route's custom op under the real torch.compile (on the CPU).

The shared real install's venv (torch from the package registry) imports the shipped
`sage.py` exactly as the venv's `comfy_install_sage` is (a file of its own, standard
library at import) and wraps a stand-in kernel (SDPA with the per-warp kernel's keywords,
since the real one needs a cc 9.0 GPU) with
[`compile_safe_kernel`][installer.attention.shim.sage.compile_safe_kernel]. It asserts:

- dynamo traces a block that calls the op (ops on both sides) as one graph with no graph
  break;
- the compiled block (``fullgraph=True``, AOT autograd) gives the eager block's output, in
  both layouts, and the op reached the kernel with per-warp scales and ``smooth_k``;
- a kernel that refuses a call inside the graph falls back to SDPA's same attention;
- the op passes `torch.library.opcheck` (its fake gives the kernel's shapes, strides and dtype);
- the op is registered once per kernel: asking again returns the same op.

Marked `real` (the shared real install: ComfyUI and torch from the package registry).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from installer.edges.environment import current_platform
from installer.edges.probe import layout

pytestmark = pytest.mark.real

SAGE = Path(__file__).parents[2] / "src" / "installer" / "attention" / "shim" / "sage.py"

SCRIPT = """
import importlib.util, json, sys
import torch
import torch._dynamo

spec = importlib.util.spec_from_file_location("comfy_install_sage", {sage!r})
sage = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sage)
F = torch.nn.functional
calls = []

def kernel(q, k, v, tensor_layout="HND", is_causal=False, qk_quant_gran="per_thread",
           sm_scale=None, smooth_k=True):
    calls.append([tensor_layout, qk_quant_gran, smooth_k])
    heads_first = tensor_layout == "NHD"
    qh, kh, vh = (t.transpose(1, 2) if heads_first else t for t in (q, k, v))
    out = F.scaled_dot_product_attention(qh, kh, vh, scale=sm_scale)
    return out.transpose(1, 2) if heads_first else out

def refusing(q, k, v, **kwargs):
    raise AssertionError("Last dim of qkv must be contiguous.")

op = sage.compile_safe_kernel(kernel, torch)
again = sage.compile_safe_kernel(kernel, torch)
refused_op = sage.compile_safe_kernel(refusing, torch)

def block(q, k, v, layout):
    return op(q * 2.0, k, v, layout, None).sin() + 1.0

def refused_block(q, k, v):
    return refused_op(q * 2.0, k, v, "NHD", 0.125) + 1.0

torch.manual_seed(0)
q, k, v = (torch.randn(2, 64, 4, 32) for _ in range(3))
report = {{"same_op": again is op}}
# The fake against the kernel (shapes, strides, dtypes) and the op's registration, torch's own test.
for layout in ("NHD", "HND"):
    torch.library.opcheck(op, (q, k, v, layout, None))
    torch.library.opcheck(refused_op, (q, k, v, layout, 0.125))
explained = torch._dynamo.explain(block)(q, k, v, "NHD")
report["graphs"] = explained.graph_count
report["breaks"] = explained.graph_break_count
for layout in ("NHD", "HND"):
    torch._dynamo.reset()
    compiled = torch.compile(block, fullgraph=True, backend="aot_eager")
    expected = block(q, k, v, layout)
    got = compiled(q, k, v, layout)
    report[layout] = float((got - expected).abs().max())
    report[layout + "_shape"] = list(got.shape)
torch._dynamo.reset()
expected = (F.scaled_dot_product_attention(
    (q * 2.0).transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), scale=0.125
).transpose(1, 2) + 1.0)
got = torch.compile(refused_block, fullgraph=True, backend="aot_eager")(q, k, v)
report["refused"] = float((got - expected).abs().max())
report["calls"] = calls
print(json.dumps(report))
"""


def test_the_sage_op_keeps_a_compiled_block_one_graph(real_install: Path, tmp_path: Path) -> None:
    python = layout(real_install, current_platform())["venv_python"]
    script = tmp_path / "sage_compile.py"
    script.write_text(SCRIPT.format(sage=str(SAGE)), encoding="utf-8")
    done = subprocess.run(
        [str(python), str(script)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["same_op"] is True
    assert (report["graphs"], report["breaks"]) == (1, 0)
    assert report["NHD"] < 1e-5
    assert report["HND"] < 1e-5
    assert report["NHD_shape"] == report["HND_shape"] == [2, 64, 4, 32]
    assert report["refused"] < 1e-5
    assert report["calls"]
    assert {tuple(call) for call in report["calls"]} <= {
        ("NHD", "per_warp", True),
        ("HND", "per_warp", True),
    }
