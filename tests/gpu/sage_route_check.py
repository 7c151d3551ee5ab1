"""The ``sage_per_warp`` route on the GPU, kernel level, no ComfyUI (issue 30).

Run on the device machine (SageAttention 2.2.0's wheel installed first, nothing installed here):

    PYTHONPATH=src python3 tests/gpu/sage_route_check.py

A stub stands in for `comfy.ldm.modules.attention` (its `attention_pytorch` and
`attention_sage` with ComfyUI v0.33's reshapes). At Wan 2.1's 2×12×14040×128 and
1×40×32760×128, fp16 and bf16, ComfyUI's (B, N, H·D) layout, it times (CUDA events,
50 calls, median) the route built by `installer.attention.shim.sage`, the stub's
`attention_sage` (the `sageattn` dispatcher, what ComfyUI runs), the per-warp kernel
with ``smooth_k`` on, and cuDNN SDPA; and the relative error of each against fp32
math SDPA (max abs difference over the reference's max abs value).
"""

from __future__ import annotations

import statistics
import sys
import types

import sageattention
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from installer.attention.shim.sage import KERNEL, sage_per_warp_function

SHAPES = ((2, 12, 14040, 128), (1, 40, 32760, 128))
CALLS = 50


def _to_heads(t, b, heads):  # (B, N, H·D) -> (B, H, N, D)
    return t.reshape(b, -1, heads, t.shape[-1] // heads).transpose(1, 2)


def attention_pytorch(q, k, v, heads, mask=None, attn_precision=None, skip_reshape=False,
                      skip_output_reshape=False, **kwargs):  # fmt: skip
    b = q.shape[0]
    if not skip_reshape:
        q, k, v = (_to_heads(t, b, heads) for t in (q, k, v))
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return out if skip_output_reshape else out.transpose(1, 2).reshape(b, -1, heads * q.shape[-1])


def attention_sage(q, k, v, heads, mask=None, attn_precision=None, skip_reshape=False,
                   skip_output_reshape=False, **kwargs):  # fmt: skip
    b = q.shape[0]
    dim = q.shape[-1] if skip_reshape else q.shape[-1] // heads
    layout = "HND" if skip_reshape else "NHD"
    if not skip_reshape:
        q, k, v = (t.reshape(b, -1, heads, dim) for t in (q, k, v))
    out = sageattention.sageattn(q, k, v, is_causal=False, tensor_layout=layout, smooth_k=False)
    if layout == "HND":
        return out if skip_output_reshape else out.transpose(1, 2).reshape(b, -1, heads * dim)
    return out.transpose(1, 2) if skip_output_reshape else out.reshape(b, -1, heads * dim)


def cudnn(q, k, v, heads):
    b = q.shape[0]
    qh, kh, vh = (_to_heads(t, b, heads) for t in (q, k, v))
    with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
        out = torch.nn.functional.scaled_dot_product_attention(qh, kh, vh)
    return out.transpose(1, 2).reshape(b, -1, heads * qh.shape[-1])


def per_warp_smooth(q, k, v, heads):
    b, dim = q.shape[0], q.shape[-1] // heads
    qh, kh, vh = (t.reshape(b, -1, heads, dim) for t in (q, k, v))
    kernel = getattr(sageattention, KERNEL)
    out = kernel(qh, kh, vh, tensor_layout="NHD", qk_quant_gran="per_warp", smooth_k=True)
    return out.reshape(b, -1, heads * dim)


def reference(q, k, v, heads):
    """fp32 math SDPA, a few heads at a time (the whole attention matrix would not fit)."""
    b, n = q.shape[0], q.shape[1]
    qh, kh, vh = (_to_heads(t, b, heads) for t in (q, k, v))
    out = torch.empty(b, heads, n, qh.shape[-1], device="cuda", dtype=torch.float32)
    with sdpa_kernel([SDPBackend.MATH]):
        for i in range(b):
            for j in range(0, heads, 2):
                part = (t[i : i + 1, j : j + 2].float() for t in (qh, kh, vh))
                out[i : i + 1, j : j + 2] = torch.nn.functional.scaled_dot_product_attention(*part)
    return out.transpose(1, 2).reshape(b, n, -1)


def median_ms(function, args):
    for _ in range(5):
        function(*args)
    torch.cuda.synchronize()
    times = []
    for _ in range(CALLS):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        function(*args)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def main() -> int:
    fell_back: list[str] = []

    def counted(function):
        def fallback(*args, **kwargs):
            fell_back.append(function.__name__)
            return function(*args, **kwargs)

        return fallback

    stub = types.SimpleNamespace(attention_pytorch=counted(attention_pytorch),
                                 attention_sage=counted(attention_sage),
                                 SAGE_ATTENTION_IS_AVAILABLE=True)  # fmt: skip
    route = sage_per_warp_function(stub)
    version = getattr(sageattention, "__version__", "2.2.0 (the wheel)")
    gpu = torch.cuda.get_device_name()
    cc = torch.cuda.get_device_capability()
    print(f"# {gpu} cc {cc} torch {torch.__version__} sageattention {version}")
    variants = {"route sage_per_warp": route, "attention_sage (sageattn)": attention_sage,
                "per_warp smooth_k": per_warp_smooth, "cuDNN SDPA": cudnn}  # fmt: skip
    print(f"{'shape':>18} {'dtype':>5} {'variant':>26} {'median ms':>10} {'rel err':>9}")
    failures = 0
    for b, h, n, d in SHAPES:
        for dtype in (torch.float16, torch.bfloat16):
            g = torch.Generator(device="cuda").manual_seed(0)
            q, k, v = (torch.randn(b, n, h * d, generator=g, device="cuda", dtype=dtype)
                       for _ in range(3))  # fmt: skip
            ref = reference(q, k, v, h)
            scale = ref.abs().max().item()
            for name, function in variants.items():
                out = None
                try:
                    out = function(q, k, v, h)
                    err = ((out.float() - ref).abs().max().item()) / scale
                    ms = median_ms(function, (q, k, v, h))
                    shown = f"{b}x{h}x{n}x{d}"
                    print(f"{shown:>18} {str(dtype)[6:]:>5} {name:>26} {ms:>10.3f} {err:>9.4f}")
                except Exception as exc:  # report and go on
                    failures += 1
                    print(f"{f'{b}x{h}x{n}x{d}':>18} {str(dtype)[6:]:>5} {name:>26} failed: {exc}")
                del out
            # the route's reshapes with skip_reshape / skip_output_reshape (HND in, HND out)
            heads_in = [_to_heads(t, b, h).contiguous() for t in (q, k, v)]
            hnd = route(*heads_in, h, skip_reshape=True, skip_output_reshape=True)
            flat = route(q, k, v, h)
            same = (hnd.transpose(1, 2).reshape(b, n, h * d) - flat).abs().max().item()
            print(f"{'':>18} {str(dtype)[6:]:>5} {'HND vs NHD max diff':>26} {same:>10.4g}")
            del q, k, v, ref, heads_in, hnd, flat
            torch.cuda.empty_cache()
    print(f"# route calls that fell back to ComfyUI's functions: {len(fell_back)}")
    return 1 if failures or fell_back else 0


if __name__ == "__main__":
    sys.exit(main())
