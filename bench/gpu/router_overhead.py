#!/usr/bin/env python3
"""What the attention router costs the host per call: routed against direct, same function.

The router (`installer.attention.shim.router`) sits between ComfyUI's model code and the
attention function on every call; at small shapes (SDXL's 2×20×1024×64) a call's time is
its host time, so every µs the router adds shows in full (the attention proof of the
2026-12-08 H100 call failed there by 2.8 µs a call). This bench attaches the router to a
stand-in `comfy.ldm.modules.attention` whose functions return at once, with real torch
tensors (CUDA where there is a GPU, else CPU), and times direct and routed calls
interleaved (best of the rounds, nanoseconds per call):

    python3 bench/gpu/router_overhead.py [--router PATH ...] [--device cpu|cuda]
    python3 bench/gpu/router_overhead.py --comfyui DIR/ComfyUI [--router PATH ...]

``--comfyui`` times the attention proof's failing comparison instead, on the GPU: ComfyUI's
real `comfy.ldm.modules.attention`, a table routing 2×20×1024×64 (fp16, bf16) to SDPA's
cuDNN back end, and the cuDNN route called directly against each router calling it (20
calls queued between CUDA events, 8 interleaved rounds, the median; ms a call).

``--router`` loads another router file beside the installer's (e.g. an older one:
``git show REV:src/installer/attention/shim/router.py > /tmp/old.py``), so both are
measured in one process. Prints one line per router and writes nothing; nothing is
asserted (the attention proof judges the real calls).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

ROUTES = {
    "schema_version": 1,
    "flush_every": 500,
    "routes": [
        {"head_dim": 128, "dtype": "fp16",
         "bands": [{"min_tokens": 16384, "max_tokens": None, "backend": "sageattention"}]},
    ],
}  # fmt: skip
"""A table that sends the timed shape (D=64) to SDPA and keeps the router attached."""


def attention_module() -> types.ModuleType:
    """A stand-in `comfy.ldm.modules.attention` whose attention functions return at once."""
    module = types.ModuleType("comfy.ldm.modules.attention")

    def attention_pytorch(q: Any, k: Any, v: Any, heads: Any, mask: Any = None,
                          attn_precision: Any = None, skip_reshape: bool = False,
                          skip_output_reshape: bool = False, **kwargs: Any) -> Any:  # fmt: skip
        return q

    module.attention_pytorch = attention_pytorch  # type: ignore[attr-defined]
    module.attention_sage = attention_pytorch  # type: ignore[attr-defined]
    module.SAGE_ATTENTION_IS_AVAILABLE = True  # type: ignore[attr-defined]
    module.optimized_attention = attention_pytorch  # type: ignore[attr-defined]
    return module


def load_router(path: Path | None) -> types.ModuleType:
    """The installer's router module, or the one in the file at ``path``."""
    if path is None:
        from installer.attention.shim import router

        return router
    spec = importlib.util.spec_from_file_location(f"router_{abs(hash(path))}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def per_call_ns(function: Any, q: Any, heads: int, calls: int) -> float:
    """Nanoseconds per call of ``calls`` calls in a row (ComfyUI's keywords passed)."""
    options: dict[str, Any] = {}
    start = time.perf_counter_ns()
    for _ in range(calls):
        function(q, q, q, heads, skip_reshape=False, transformer_options=options)
    return (time.perf_counter_ns() - start) / calls


CUDNN_ROUTES = {
    "schema_version": 1,
    "flush_every": 500,
    "routes": [
        {"head_dim": 64, "dtype": dtype,
         "bands": [{"min_tokens": 512, "max_tokens": 2048, "backend": "cudnn"}]}
        for dtype in ("fp16", "bf16")
    ],
}  # fmt: skip
"""The proof's small SDXL shape (1024 tokens, head dim 64) routed to cuDNN."""


def comfyui_small_shape(comfyui: Path, routers: list[Path], tmp: Path) -> int:
    """Time the cuDNN route direct and through each router at 2×20×1024×64 (CUDA events)."""
    import statistics

    sys.path.insert(0, str(comfyui))
    sys.argv = ["main.py"]
    import comfy.options

    comfy.options.enable_args_parsing()
    import comfy.ldm.modules.attention as attention
    import torch

    from installer.attention.shim import sdpa

    table = tmp / "cudnn-routes.json"
    table.write_text(json.dumps(CUDNN_ROUTES))
    env = {"COMFY_INSTALL_ATTENTION_ROUTES": str(table),
           "COMFY_INSTALL_ATTENTION_COUNTS": str(tmp / "calls.json")}  # fmt: skip
    own = attention.optimized_attention
    functions: dict[str, Any] = {"cudnn direct": sdpa.sdpa_backend_function(attention, "cudnn")}
    for path in [None, *routers]:
        message = load_router(path).attach(attention, env)
        functions[f"routed {path.name if path else 'installer'}"] = attention.optimized_attention
        attention.optimized_attention = own
        print(f"  {path or 'installer'}: {message[:120]}")
    dtypes = {"fp16": torch.float16, "bf16": torch.bfloat16}
    for dtype in ("fp16", "bf16"):
        q, k, v = (torch.randn(2, 1024, 20 * 64, device="cuda", dtype=dtypes[dtype])
                   for _ in range(3))  # fmt: skip
        samples: dict[str, list[float]] = {name: [] for name in functions}
        for function in functions.values():
            for _ in range(5):
                function(q, k, v, 20)
        names = list(functions)
        for round_ in range(8):
            for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                start.record()
                for _ in range(20):
                    functions[name](q, k, v, 20)
                end.record()
                torch.cuda.synchronize()
                samples[name].append(start.elapsed_time(end) / 20)
        base = statistics.median(samples["cudnn direct"])
        for name, values in samples.items():
            ms = statistics.median(values)
            print(f"  2x20x1024x64 {dtype} {name:<28}{ms:8.4f} ms  "
                  f"(+{(ms - base) * 1000:.1f} µs, {ms / base:.3f}×)")  # fmt: skip
    for name, function in functions.items():  # their exit-time write would find tmp gone
        if name.startswith("routed "):
            function.counter.path = ""
    return 0


def main(argv: list[str] | None = None) -> int:
    """Attach each router, time it against the direct call, print the overhead."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--router", type=Path, action="append", default=[])
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--comfyui", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.comfyui is not None:
        with tempfile.TemporaryDirectory() as tmp:
            return comfyui_small_shape(args.comfyui.absolute(), args.router, Path(tmp))

    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    q = torch.zeros(2, 1024, 20 * 64, dtype=torch.float16, device=device)
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "routes.json"
        table.write_text(json.dumps(ROUTES))
        env = {"COMFY_INSTALL_ATTENTION_ROUTES": str(table),
               "COMFY_INSTALL_ATTENTION_COUNTS": str(Path(tmp) / "calls.json")}  # fmt: skip
        timed: dict[str, Any] = {}
        for path in [None, *args.router]:
            module = attention_module()
            message = load_router(path).attach(module, env)
            if "attached" not in message or "not attached" in message:
                print(f"{path or 'installer'}: {message}", file=sys.stderr)
                return 1
            timed[str(path or "installer")] = module.optimized_attention
        direct = attention_module().attention_pytorch
        best: dict[str, float] = {}
        for _ in range(args.rounds):
            for name, function in [("direct", direct), *timed.items()]:
                ns = per_call_ns(function, q, 20, args.calls)
                best[name] = min(best.get(name, ns), ns)
        for function in timed.values():  # their exit-time write would find the folder gone
            function.counter.path = ""
    where = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    print(f"{device} tensors ({where}), python {sys.version.split()[0]}, torch "
          f"{torch.__version__}, {os.cpu_count()} cpus; best of {args.rounds} rounds of "
          f"{args.calls} calls")  # fmt: skip
    print(f"  direct call            {best['direct']:8.0f} ns")
    for name in timed:
        print(f"  routed {Path(name).name:<16}{best[name]:8.0f} ns  "
              f"(router +{best[name] - best['direct']:.0f} ns a call)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
