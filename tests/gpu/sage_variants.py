"""SageAttention 2.2.0's kernel variants on this GPU at the video shapes (issue 30).

Run on the GPU machine: ``python3 tests/gpu/sage_variants.py OUT.json``. Per shape and dtype, in
ComfyUI's layout (NHD: B×N×H×D views of B×N×(H·D), what `attention_sage` passes) and in HND,
the median milliseconds per call (CUDA events, calls queued back to back, 5 rounds whose order
rotates so that no variant always follows the same one) and the relative L2 error
‖out − ref‖ / ‖ref‖ against SDPA's memory-efficient back end in fp32 of:

- ``sageattn``: the dispatcher (on sm90 `sageattn_qk_int8_pv_fp8_cuda_sm90`, per-thread INT8
  Q·K, FP8 P·V, ``pv_accum_dtype="fp32+fp32"``: the only accumulation sm90 accepts);
- ``sm90-per-warp``: the same kernel with ``qk_quant_gran="per_warp"`` (coarser scales);
- ``fp16-cuda-fp32`` / ``fp16-cuda-fp16+fp32`` / ``fp16-cuda-fp16``: the sm80 kernel
  `sageattn_qk_int8_pv_fp16_cuda` (FP16 P·V) with each accumulation;
- ``fp16-triton``: `sageattn_qk_int8_pv_fp16_triton`;
- ``cudnn``: SDPA's cuDNN back end (the router's route below 12K tokens).

ComfyUI calls SageAttention with ``smooth_k=False``; so does every variant here. A variant is
*correct* when its error is at most 1.5× the dispatcher's (and finite). Prints a table and the
fastest correct variant per shape; writes every row as JSON.
"""

from __future__ import annotations

import json
import statistics
import sys

import sageattention as S
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

out_path = sys.argv[1]
SHAPES = [("wan-480p", 2, 12, 14040, 128), ("video-long", 1, 40, 32760, 128)]  # fmt: skip
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def sdpa_cudnn(q, k, v, layout):
    if layout == "NHD":
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    return out.transpose(1, 2) if layout == "NHD" else out


VARIANTS = {
    "sageattn": lambda q, k, v, lay: S.sageattn(q, k, v, tensor_layout=lay, smooth_k=False),
    "sm90-per-warp": lambda q, k, v, lay: S.sageattn_qk_int8_pv_fp8_cuda_sm90(
        q, k, v, tensor_layout=lay, qk_quant_gran="per_warp", smooth_k=False),
    "fp16-cuda-fp32": lambda q, k, v, lay: S.sageattn_qk_int8_pv_fp16_cuda(
        q, k, v, tensor_layout=lay, pv_accum_dtype="fp32", smooth_k=False),
    "fp16-cuda-fp16+fp32": lambda q, k, v, lay: S.sageattn_qk_int8_pv_fp16_cuda(
        q, k, v, tensor_layout=lay, pv_accum_dtype="fp16+fp32", smooth_k=False),
    "fp16-cuda-fp16": lambda q, k, v, lay: S.sageattn_qk_int8_pv_fp16_cuda(
        q, k, v, tensor_layout=lay, pv_accum_dtype="fp16", smooth_k=False),
    "fp16-triton": lambda q, k, v, lay: S.sageattn_qk_int8_pv_fp16_triton(
        q, k, v, tensor_layout=lay, smooth_k=False),
    "cudnn": sdpa_cudnn,
}  # fmt: skip


def reference(q, k, v, layout):
    if layout == "NHD":
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    with sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION]):
        out = torch.nn.functional.scaled_dot_product_attention(q.float(), k.float(), v.float())
    return out.transpose(1, 2) if layout == "NHD" else out


def time_ms(function, args, count):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(count):
        function(*args)
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / count


rows = []
for shape, b, h, n, d in SHAPES:
    for dtype in ("fp16", "bf16"):
        for layout in ("NHD", "HND"):
            g = torch.Generator(device="cuda").manual_seed(1)
            if layout == "NHD":  # ComfyUI's: a view of B×N×(H·D), no copy
                qkv = [torch.randn(b, n, h * d, generator=g, device="cuda", dtype=DTYPES[dtype])
                       .view(b, n, h, d) for _ in range(3)]  # fmt: skip
            else:
                qkv = [torch.randn(b, h, n, d, generator=g, device="cuda", dtype=DTYPES[dtype])
                       for _ in range(3)]  # fmt: skip
            ref = reference(*qkv, layout)
            row = {"shape": shape, "dims": f"{b}x{h}x{n}x{d}", "dtype": dtype, "layout": layout}
            usable = {}
            for name, function in VARIANTS.items():
                try:
                    out = function(*qkv, layout)
                    torch.cuda.synchronize()
                    err = ((out.float() - ref).norm() / ref.norm()).item()
                    row[f"{name}_err"] = err if err == err else None
                    usable[name] = function
                except Exception as exc:
                    row[f"{name}_error"] = f"{type(exc).__name__}: {str(exc)[:160]}"
            del ref
            count = 3 if n > 16384 else 10
            samples = {name: [] for name in usable}
            names = list(usable)
            for round_ in range(5):
                order = names[round_ % len(names) :] + names[: round_ % len(names)]
                for name in order:
                    samples[name].append(time_ms(usable[name], (*qkv, layout), count))
            for name, values in samples.items():
                row[name] = round(statistics.median(values), 4)
            base_err = row.get("sageattn_err")
            correct = [
                name for name in usable
                if row.get(f"{name}_err") is not None and base_err is not None
                and (name == "cudnn" or row[f"{name}_err"] <= 1.5 * base_err)
            ]  # fmt: skip
            row["fastest_correct"] = min(correct, key=lambda name: row[name]) if correct else None
            rows.append(row)
            print(json.dumps(row), flush=True)
            del qkv
            torch.cuda.empty_cache()

with open(out_path, "w") as handle:
    json.dump({"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "rows": rows},
              handle, indent=1)  # fmt: skip
names = list(VARIANTS)
header = "".join(f"{n[:14]:>15}" for n in names)
print(f"{'shape':<12}{'dtype':<6}{'lay':<5}{header}  fastest ok")
for row in rows:
    cells = "".join(
        f"{row[n]:>8.3f}/{row.get(n + '_err') or 0:<6.1e}" if n in row else f"{'-':>15}"
        for n in names
    )
    print(f"{row['shape']:<12}{row['dtype']:<6}{row['layout']:<5}{cells}  {row['fastest_correct']}")
