"""Prove attention routing on a real GPU: ComfyUI's own attention, routed by `tune`'s calibration.

Run by `tests/gpu/run_attention.sh` after `comfy-install tune DIR` (DIR's venv holds the
machine's torch and SageAttention 2; DIR/ComfyUI is ComfyUI v0.33.0). This script:

1. plans the launch of DIR exactly as `comfy-install launch` does (facts, calibration,
   decision), writes the routing table and the shim into the venv, as `launch` would;
2. starts a child with the venv's Python, named `main.py` so that the shim wakes up,
   with the launch's environment; the child imports ComfyUI's real
   `comfy.ldm.modules.attention` (the shim attaches the router right after it) and
   `comfy.ldm.flux.math` (a model module that binds `optimized_attention`), then:
   - calls `optimized_attention` with an SDXL shape (2×4096×640, heads 10, fp16) and a
     video shape (1×32760×5120, heads 40, fp16 and bf16) and reads the shim's counters:
     each call must land where the calibration's tables say, the calibration must have
     been measured through ComfyUI's functions (method "comfyui") and send the fp16 video
     call to SageAttention;
   - times, at every shape of `benchmark`, ComfyUI's `attention_pytorch` (SDPA),
     `attention_sage` (what a blanket `--use-sage-attention` runs) and the routed
     `optimized_attention`: calls queued back to back between CUDA events, eight
     rounds in the orders of a Latin square (each function follows each other one as often),
     the median round;
     beside it, the medians by the function that ran just before, and the kernels of one
     direct and one routed call at the Wan shape (torch's profiler);
3. writes `attention-proof.json` and `attention-proof.txt` to OUT and exits 1 when a
   routing check fails or the routed time is worse than the best of the others by
   more than the noise allowance (3% + 0.001 ms: a 5% loss fails).

Usage: ``python3 tests/gpu/attention_proof.py DIR OUT`` (the installer importable).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

CHILD = r"""
import json, statistics, sys
comfyui, counts_path, result_path = sys.argv[1], sys.argv[2], sys.argv[3]
sys.argv = ["main.py"]
sys.path.insert(0, comfyui)
import comfy.options
comfy.options.enable_args_parsing()
import torch
import comfy.ldm.modules.attention as A
import comfy.ldm.flux.math as flux_math

found = {
    "router": getattr(A.optimized_attention, "__name__", "?"),
    "flux_binds_router": flux_math.optimized_attention is A.optimized_attention,
    "sage_available": bool(getattr(A, "SAGE_ATTENTION_IS_AVAILABLE", False)),
    "torch": torch.__version__,
    "gpu": torch.cuda.get_device_name(0),
}
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def qkv(batch, tokens, heads, dim, dtype):
    g = torch.Generator(device="cuda").manual_seed(0)
    return [torch.randn(batch, tokens, heads * dim, generator=g, device="cuda",
                        dtype=DTYPES[dtype]) for _ in range(3)]


# Routing: which backend did each call land on (the shim's own counters).
counter = getattr(A.optimized_attention, "counter", None)
calls = {}
for name, (b, n, h, d, dtype) in {
    "sdxl fp16": (2, 4096, 10, 64, "fp16"),
    "video fp16": (1, 32760, 40, 128, "fp16"),
    "video bf16": (1, 32760, 40, 128, "bf16"),
}.items():
    before = dict(counter.calls) if counter else {}
    q, k, v = qkv(b, n, h, d, dtype)
    A.optimized_attention(q, k, v, h)
    torch.cuda.synchronize()
    after = dict(counter.calls) if counter else {}
    calls[name] = [key for key in after if after[key] != before.get(key, 0)]
if counter:
    counter.flush()
found["calls"] = calls

# Timing: SDPA, blanket sage, and the routed call, interleaved, at benchmark's shapes.
SHAPES = [
    ("sd15-512", 2, 4096, 8, 40), ("sdxl-1024", 2, 4096, 10, 64),
    ("sdxl-1024-low", 2, 1024, 20, 64), ("flux-1024", 1, 4608, 24, 128),
    ("wan-480p", 2, 14040, 12, 128), ("video-long", 1, 32760, 40, 128),
]
import comfy_install_attention as R
FUNCTIONS = {"sdpa": A.attention_pytorch, "sage": A.attention_sage,
             "cudnn": R.sdpa_backend_function(A, "cudnn"),
             "calibrated": A.optimized_attention}


def time_ms(function, q, k, v, heads, count):
    # Milliseconds per call of `count` calls queued back to back (as in a model step).
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(count):
        function(q, k, v, heads)
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / count


# A 4x4 Latin square in which each function follows each other one exactly once.
ORDERS = [(0, 1, 3, 2), (1, 2, 0, 3), (2, 3, 1, 0), (3, 0, 2, 1)]
rows = []
for shape, b, n, h, d in SHAPES:
    for dtype in ("fp16", "bf16"):
        q, k, v = qkv(b, n, h, d, dtype)
        count = 3 if n > 16384 else 20
        samples = {name: [] for name in FUNCTIONS}
        for function in FUNCTIONS.values():
            for _ in range(3):
                function(q, k, v, h)
        torch.cuda.synchronize()
        names = list(FUNCTIONS)
        after = {name: [] for name in FUNCTIONS}  # which function ran just before each sample
        previous = "warm-up"
        for round_ in range(8):
            # Each round's order comes from a Latin square whose rows give every function
            # every other one as its predecessor: at the video shapes a fixed order (SDPA,
            # sage, cuDNN, routed) made the routed call always follow cuDNN's 40 ms kernels,
            # and it measured 4-17% slower than the very same attention_sage after SDPA,
            # while the profiler showed the same kernels, the routed one no slower. (A
            # rotation keeps each function's predecessor: the H100 run of 2026-12-06 22:35
            # still had "sage after sdpa, routed after cudnn" in every round.)
            order = [names[i] for i in ORDERS[round_ % len(ORDERS)]]
            for name in order:
                samples[name].append(time_ms(FUNCTIONS[name], q, k, v, h, count))
                after[name].append(previous)
                previous = name
        medians = {name: statistics.median(values) for name, values in samples.items()}
        by_previous = {
            name: {prev: round(statistics.median([s for s, p in zip(samples[name], after[name])
                                                  if p == prev]), 4)
                   for prev in set(after[name])}
            for name in ("sage", "calibrated")
        }  # fmt: skip
        rows.append({"shape": shape, "dims": f"{b}x{h}x{n}x{d}", "dtype": dtype, **medians,
                     "by_previous": by_previous})  # fmt: skip
        del q, k, v
        torch.cuda.empty_cache()
found["timings"] = rows

# Where the time of a routed call goes at the Wan shape: the kernels of one direct
# attention_sage call against one routed call (torch's profiler), and the host time.
try:
    from torch.profiler import ProfilerActivity, profile
    q, k, v = qkv(2, 14040, 12, 128, "fp16")
    breakdown = {}
    for name in ("sage", "calibrated"):
        function = FUNCTIONS[name]
        for _ in range(3):
            function(q, k, v, 12)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
            for _ in range(5):
                function(q, k, v, 12)
            torch.cuda.synchronize()
        kernels = {}
        for event in prof.key_averages():
            if event.device_type.name == "CUDA" or getattr(event, "device_time_total", 0):
                total = getattr(event, "device_time_total", 0)
                if total:
                    kernels[event.key[:90]] = round(total / 5 / 1000, 4)
        breakdown[name] = dict(sorted(kernels.items(), key=lambda kv: -kv[1])[:12])
    found["breakdown_wan_fp16"] = breakdown
except Exception as exc:
    found["breakdown_wan_fp16"] = {"error": f"{type(exc).__name__}: {exc}"}
with open(result_path, "w") as handle:
    json.dump(found, handle, indent=2)
"""

NOISE = 1.03
NOISE_MS = 0.001
"""The allowance: 3% + 1 µs, so a routed call 5% slower than the better choice fails."""


def plan_and_prepare(install: Path, counts: Path) -> tuple[dict[str, str], Path, list[str]]:
    """Plan the launch as `comfy-install launch` does; write routes and shim; return its env."""
    from installer.attention.files import write_routes
    from installer.launch.facts import gather_facts
    from installer.launch.shim import ensure_shim
    from installer.plan.launch import LaunchRequest, describe_tunings, plan_launch

    request = LaunchRequest(install_dir=install)
    facts = gather_facts(request)
    plan = plan_launch(request, facts, dict(os.environ))
    lines = [line for _, line in describe_tunings(plan)]
    attention = plan.attention
    if attention is None or attention.routes is None or attention.routes_path is None:
        raise SystemExit("no routing planned:\n" + "\n".join(lines))
    write_routes(attention.routes_path, attention.routes)
    if facts.site_packages is None or ensure_shim(facts.site_packages) != "current":
        raise SystemExit(f"the shim cannot be written to {facts.site_packages}")
    env = plan.environment(os.environ)
    env["COMFY_INSTALL_ATTENTION_COUNTS"] = str(counts)
    return env, facts.venv_python, lines


ROUTED_CALLS = {"sdxl fp16": (64, "fp16", 4096), "video fp16": (128, "fp16", 32760),
                "video bf16": (128, "bf16", 32760)}  # fmt: skip


def expected_backends(install: Path) -> dict[str, str]:
    """Where each proof call should land by the calibration's own tables."""
    from installer.attention.files import read_calibration

    calibration = read_calibration(install).calibration
    assert calibration is not None
    expected = {"method": calibration.method}
    for name, (dim, dtype, tokens) in ROUTED_CALLS.items():
        table = calibration.table(dim, dtype)
        expected[name] = table.backend_for(tokens) if table is not None else "sdpa"
    return expected


def verdicts(found: dict[str, Any], expected: dict[str, str]) -> list[str]:
    """The failed checks (empty: proven)."""
    failed = []
    if found.get("router") != "comfy_install_attention_router":
        failed.append(f"optimized_attention is {found.get('router')}, not the router")
    if not found.get("flux_binds_router"):
        failed.append("comfy.ldm.flux.math did not bind the router")
    calls = found.get("calls", {})
    # tune measured through ComfyUI's functions (what the router calls); where each shape
    # goes is the calibration's to say, and the timings below check it chose well.
    if expected.get("method") != "comfyui":
        failed.append(f"tune measured the {expected.get('method')}, not ComfyUI's functions")
    for name, backend in expected.items():
        if name in ROUTED_CALLS and calls.get(name) != [backend]:
            failed.append(f"the {name} call went to {calls.get(name)}, not {backend}")
    for row in found.get("timings", []):
        best = min(row["sdpa"], row["sage"], row.get("cudnn", row["sdpa"]))
        if row["calibrated"] > best * NOISE + NOISE_MS:
            failed.append(
                f"{row['shape']} {row['dtype']}: routed {row['calibrated']:.4f} ms is slower "
                f"than the best of SDPA {row['sdpa']:.4f}, cuDNN {row.get('cudnn', 0):.4f} and "
                f"sage {row['sage']:.4f}"
            )
    return failed


def render(found: dict[str, Any], plan_lines: list[str], failed: list[str]) -> str:
    """The proof as text: the decision, where the calls went, the timing table, the verdict."""
    out = [f"GPU {found.get('gpu')}, torch {found.get('torch')}", "launch decision:"]
    out += [f"  {line}" for line in plan_lines if line.startswith(("attention", "xformers"))]
    out.append(f"optimized_attention: {found.get('router')}; "
               f"flux binds it: {found.get('flux_binds_router')}")  # fmt: skip
    expected = found.get("expected", {})
    out += [
        f"  {name}: went to {backends}, calibration says {expected.get(name)}"
        for name, backends in found.get("calls", {}).items()
    ]
    out.append(f"calibration measured with method {expected.get('method')}")
    out.append("")
    out.append(f"{'shape':<14}{'B×H×N×D':<16}{'dtype':<6}{'SDPA ms':>9}{'cuDNN ms':>9}"
               f"{'sage ms':>9}{'routed ms':>11}{'routed ×SDPA':>14}"
               f"{'routed ×best':>14}")  # fmt: skip
    for row in found.get("timings", []):
        best = min(row["sdpa"], row["sage"], row.get("cudnn", row["sdpa"]))
        out.append(
            f"{row['shape']:<14}{row['dims']:<16}{row['dtype']:<6}{row['sdpa']:>9.4f}"
            f"{row.get('cudnn', 0):>9.4f}{row['sage']:>9.4f}{row['calibrated']:>11.4f}"
            f"{row['sdpa'] / row['calibrated']:>13.2f}×{best / row['calibrated']:>13.2f}×"
        )
        if row.get("by_previous") and row["dims"].split("x")[2] in ("14040", "32760"):
            out.append(f"{'':<14}after: " + "; ".join(
                f"{name} " + ", ".join(f"{prev} {ms}" for prev, ms in sorted(prevs.items()))
                for name, prevs in row["by_previous"].items()))  # fmt: skip
    for name, kernels in (found.get("breakdown_wan_fp16") or {}).items():
        out.append(f"kernels of one {name} call at 2x12x14040x128 fp16 (ms): {kernels}")
    out.append("")
    out.append("PROVEN" if not failed else "FAILED:\n  " + "\n  ".join(failed))
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    """Plan, run the child, judge, write the proof to OUT."""
    install, out = Path(argv[0]).absolute(), Path(argv[1]).absolute()
    out.mkdir(parents=True, exist_ok=True)
    counts = out / "attention-calls.json"
    env, python, plan_lines = plan_and_prepare(install, counts)
    with tempfile.TemporaryDirectory(prefix="attention-proof-") as tmp:
        child = Path(tmp) / "main.py"  # the shim only wakes up in a `main.py`
        child.write_text(CHILD, encoding="utf-8")
        result = Path(tmp) / "result.json"
        done = subprocess.run(
            [str(python), str(child), str(install / "ComfyUI"), str(counts), str(result)],
            env=env, cwd=install / "ComfyUI", capture_output=True, text=True, timeout=600,
            check=False,
        )  # fmt: skip
        (out / "attention-proof-child.log").write_text(done.stdout + done.stderr)
        if done.returncode != 0 or not result.is_file():
            print(done.stderr[-4000:], file=sys.stderr)
            return 1
        found = json.loads(result.read_text())
    found["expected"] = expected_backends(install)
    failed = verdicts(found, found["expected"])
    found["failed"] = failed
    found["plan"] = plan_lines
    (out / "attention-proof.json").write_text(json.dumps(found, indent=2))
    text = render(found, plan_lines, failed)
    (out / "attention-proof.txt").write_text(text)
    print(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
