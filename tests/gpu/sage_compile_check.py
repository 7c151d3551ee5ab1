"""The ``sage_per_warp`` route under torch.compile on the GPU, no ComfyUI (issue 30).

Run on the device machine (SageAttention 2.2.0's wheel installed first):

    PYTHONPATH=src python3 tests/gpu/sage_compile_check.py

A block shaped like Wan 2.1's self-attention at 832×480×33 (2×14040 tokens, 12 heads of
128, fp16, ComfyUI's (B, N, H·D) layout) with an op before and after the route is:

- explained by dynamo: the number of graphs and graph breaks (SageAttention's own Python
  breaks the graph at `torch.cuda.set_device`; the route's custom op must not);
- compiled with inductor, ``fullgraph=True`` (which fails on any graph break), and its
  output compared with the eager block's (the same kernel: the difference must be 0 or
  at fp16 rounding);
- timed eager and compiled (CUDA events, 50 calls, median: `sage_route_check.median_ms`);
- profiled both ways (`torch.profiler`, 10 calls): the GPU kernels each runs, with their
  time a call, and the compiled code's copies (where inductor copies the inputs into the
  op's layout, the compiled block pays a copy of each before the kernel).

Exit code 1 where the compiled block breaks, fails or differs.
"""

from __future__ import annotations

import sys
import types

import torch
import torch._dynamo
from sage_route_check import median_ms  # CUDA events, 50 calls, median

from installer.attention.shim.sage import sage_per_warp_function


def attention_pytorch(q, k, v, heads, mask=None, attn_precision=None, skip_reshape=False,
                      skip_output_reshape=False, **kwargs):  # fmt: skip
    raise AssertionError("the route fell back to attention_pytorch")


def main() -> int:
    stub = types.SimpleNamespace(attention_pytorch=attention_pytorch,
                                 attention_sage=attention_pytorch,
                                 SAGE_ATTENTION_IS_AVAILABLE=False)  # fmt: skip
    route = sage_per_warp_function(stub)
    heads = 12

    def block(q, k, v):
        return route(q * 0.5, k, v, heads).sin() + q

    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (torch.randn(2, 14040, heads * 128, generator=g, device="cuda",
                           dtype=torch.float16) for _ in range(3))  # fmt: skip
    print(f"# {torch.cuda.get_device_name()} torch {torch.__version__}")
    explained = torch._dynamo.explain(block)(q, k, v)
    print(f"dynamo: {explained.graph_count} graph(s), {explained.graph_break_count} break(s)")
    for reason in explained.break_reasons[:3]:
        print(f"  break: {reason.reason[:200]}")
    torch._dynamo.reset()
    failures = int(explained.graph_break_count != 0)
    try:
        compiled = torch.compile(block, fullgraph=True)
        got = compiled(q, k, v)
    except Exception as exc:  # report and fail
        print(f"compile failed: {type(exc).__name__}: {str(exc)[:400]}")
        return 1
    eager = block(q, k, v)
    diff = (got.float() - eager.float()).abs().max().item()
    print(f"compiled vs eager: max abs diff {diff:.3g}")
    failures += int(diff > 2e-2)
    eager_ms = median_ms(block, (q, k, v))
    compiled_ms = median_ms(compiled, (q, k, v))
    print(f"block median ms: eager {eager_ms:.3f}, compiled {compiled_ms:.3f}")
    for name, fn in (("eager", block), ("compiled", compiled)):
        print(f"{name} kernels (ms a call, 10 calls):")
        for line in kernel_table(fn, (q, k, v)):
            print(f"  {line}")
    try:
        from torch._inductor.utils import run_and_get_code

        torch._dynamo.reset()
        _, codes = run_and_get_code(torch.compile(block, fullgraph=True), q, k, v)
        code = "\n".join(codes)
        words = ("copy_", "clone", "as_strided", "reinterpret")
        copies = [ln.strip() for ln in code.splitlines() if any(w in ln for w in words)]
        print(f"compiled code: {code.count('@triton.jit')} triton kernel(s), "
              f"{len(copies)} copy line(s)")  # fmt: skip
        for line in copies[:8]:
            print(f"  {line[:160]}")
        for line in code.splitlines():
            if "comfy_install" in line:
                print(f"  op call: {line.strip()[:200]}")
    except Exception as exc:  # the diagnosis is optional
        print(f"compiled code: not read ({type(exc).__name__}: {str(exc)[:200]})")
    return 1 if failures else 0


def kernel_table(fn, args, calls: int = 10) -> list[str]:
    """The GPU kernels ``fn(*args)`` runs, longest first: ms a call and the name."""
    from torch.profiler import ProfilerActivity, profile

    fn(*args)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            fn(*args)
        torch.cuda.synchronize()
    rows = []
    for event in prof.key_averages():
        total = getattr(event, "device_time_total", None) or getattr(event, "cuda_time_total", 0)
        if total > 0:
            rows.append((total / 1000 / calls, event.count // calls, event.key))
    rows.sort(reverse=True)
    return [f"{ms:.3f} ms x{n} {key[:110]}" for ms, n, key in rows[:12]]


if __name__ == "__main__":
    sys.exit(main())
