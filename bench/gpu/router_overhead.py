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


def main(argv: list[str] | None = None) -> int:
    """Attach each router, time it against the direct call, print the overhead."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--router", type=Path, action="append", default=[])
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args(argv)

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
