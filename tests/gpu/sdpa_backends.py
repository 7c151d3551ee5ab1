"""torch's SDPA back ends on this GPU, beside ComfyUI's own SDPA and SageAttention (issue 30).

Run on the GPU machine with the venv's Python: ``python sdpa_backends.py COMFYUI OUT.json``.
Per shape and dtype, median milliseconds per call (CUDA events, 20 calls queued back to back,
7 interleaved rounds) of: SDPA pinned to flash, cuDNN and memory-efficient; SDPA with torch's
default priority; ComfyUI v0.33's `attention_pytorch` (its flash-first priority); the router's
cuDNN function (`comfy_install_attention.sdpa_backend_function`, ComfyUI's layout); ComfyUI's
`attention_sage`. Each output's max abs error against SDPA's math back end in fp32 (where the
attention matrix fits in 2 GiB). Prints a table; writes the rows as JSON.
"""

from __future__ import annotations

import json
import statistics
import sys

comfyui, out_path = sys.argv[1], sys.argv[2]
sys.argv = ["main.py"]
sys.path.insert(0, comfyui)
import comfy.options  # noqa: E402

comfy.options.enable_args_parsing()
import comfy.ldm.modules.attention as A  # noqa: E402
import torch  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402

from installer.attention.shim import router as R  # noqa: E402 - the router's own code

SHAPES = [
    ("sdxl-1024-low", 2, 20, 1024, 64), ("sdxl-1024", 2, 10, 4096, 64),
    ("sd15-512", 2, 8, 4096, 40), ("flux-1024", 1, 24, 4608, 128),
    ("wan-480p", 2, 12, 14040, 128), ("video-long", 1, 40, 32760, 128),
]  # fmt: skip
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
sdpa = torch.nn.functional.scaled_dot_product_attention


def priority_names():
    try:
        names = {int(b.value): name for name, b in SDPBackend.__members__.items()}
        return [names.get(int(i), str(i)) for i in torch._C._get_sdp_priority_order()]
    except Exception as exc:  # a private API: say why there is no answer
        return f"unknown ({type(exc).__name__}: {exc})"


default_order = priority_names()


def pinned(backend):
    def call(q, k, v, heads):
        with sdpa_kernel([backend]):
            return sdpa(q, k, v)

    return call


def comfy_layout(function):
    def call(q, k, v, heads):
        return function(q, k, v, heads)

    return call


cudnn_route = R.sdpa_backend_function(A, "cudnn", torch)
after_order = priority_names()
RAW = {
    "flash": pinned(SDPBackend.FLASH_ATTENTION),
    "cudnn": pinned(SDPBackend.CUDNN_ATTENTION),
    "efficient": pinned(SDPBackend.EFFICIENT_ATTENTION),
    "default": lambda q, k, v, heads: sdpa(q, k, v),
}
COMFY = {
    "comfy_pytorch": A.attention_pytorch,
    "router_cudnn": cudnn_route,
    "comfy_sage": A.attention_sage if getattr(A, "SAGE_ATTENTION_IS_AVAILABLE", False) else None,
}


def time_ms(function, args, count=20):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(count):
        function(*args)
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / count


rows = []
for name, b, h, n, d in SHAPES:
    for dtype, tdtype in DTYPES.items():
        g = torch.Generator(device="cuda").manual_seed(0)
        q, k, v = (
            torch.randn(b, h, n, d, generator=g, device="cuda", dtype=tdtype) for _ in range(3)
        )
        flat = [t.transpose(1, 2).reshape(b, n, h * d).contiguous() for t in (q, k, v)]
        reference = None
        if b * h * n * n * 4 <= 2**31:
            with sdpa_kernel([SDPBackend.MATH]):
                reference = sdpa(q.float(), k.float(), v.float())
        functions = {key: (f, (q, k, v, h)) for key, f in RAW.items()}
        functions.update({key: (f, (*flat, h)) for key, f in COMFY.items() if f is not None})
        row = {"shape": name, "dims": f"{b}x{h}x{n}x{d}", "dtype": dtype}
        samples = {key: [] for key in functions}
        for key, (function, args) in list(functions.items()):
            try:
                out = function(*args)
                torch.cuda.synchronize()
            except Exception as exc:  # a back end that cannot take the shape
                row[key] = None
                row[f"{key}_error"] = f"{type(exc).__name__}: {str(exc)[:120]}"
                del functions[key], samples[key]
                continue
            if reference is not None:
                if out.dim() == 3:
                    out = out.reshape(b, n, h, d).transpose(1, 2)
                row[f"{key}_maxerr"] = float((out.float() - reference).abs().max())
            for _ in range(2):
                function(*args)
        torch.cuda.synchronize()
        count = 5 if n > 16384 else 20
        for _ in range(7):
            for key, (function, args) in functions.items():
                samples[key].append(time_ms(function, args, count))
        for key, values in samples.items():
            row[key] = round(statistics.median(values), 4)
        rows.append(row)
        del q, k, v, flat, reference
        torch.cuda.empty_cache()

document = {
    "gpu": torch.cuda.get_device_name(0),
    "torch": torch.__version__,
    "cudnn": torch.backends.cudnn.version(),
    "default_priority": default_order,
    "priority_after_router": after_order,
    "rows": rows,
}
with open(out_path, "w") as handle:
    json.dump(document, handle, indent=1)
keys = ["flash", "cudnn", "efficient", "default", "comfy_pytorch", "router_cudnn", "comfy_sage"]
print(f"{document['gpu']}, torch {document['torch']}, cuDNN {document['cudnn']}")
print(f"SDPA priority: default {default_order}; with the cudnn route {after_order}")
print(f"{'shape':<14}{'B×H×N×D':<16}{'dtype':<6}" + "".join(f"{k:>14}" for k in keys))
for row in rows:
    cells = "".join(f"{row.get(k) if row.get(k) is not None else '-':>14}" for k in keys)
    print(f"{row['shape']:<14}{row['dims']:<16}{row['dtype']:<6}{cells}")
    errs = {k: f"{row[k + '_maxerr']:.2g}" for k in keys if k + "_maxerr" in row}
    if errs:
        print(f"{'':<36}max err vs math fp32: {errs}")
