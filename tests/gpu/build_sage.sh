#!/usr/bin/env bash
# Issue 19 on the GPU machine (no network): step 10's real code path builds SageAttention 2 from
# the carried bundle of thu-ml/SageAttention d1a57a5 for the GPU it finds (sm90 on an H200),
# against the machine's torch 2.11.0+cu130 and nvcc 13.0, in a venv over the machine's
# site-packages; installs it; imports it and runs sageattn against SDPA on the GPU; then a
# second install into a fresh venv must reuse the cached wheel (no compiler runs).
#
# Run from the repository root with comfy-install's dependencies in /tmp/site (or as wheels in a
# carried .whl/, installed there first) and `.device/` carried: .device/sageattention-d1a57a5.bundle and .device/wheels/ (setuptools<75,
# wheel<0.44, packaging<24, ninja: the build requirements; sageattention 1.0.6: the fallback).
# Everything found goes to $OUT (summary.txt, first.json, second.json, gpu-check.json, logs).
# For a check of the plumbing on a machine without a GPU: SAGE_GPU=9.0 (plan for that GPU),
# SITE=folder with comfy-install's dependencies (default /tmp/site).
set -uo pipefail
export PYTHONUNBUFFERED=1 NO_COLOR=1
OUT=${OUT:-/tmp/build-sage-out}
mkdir -p "$OUT"
BUNDLE=$PWD/.device/sageattention-d1a57a5.bundle
COMMIT=5ca2ec911ea2bb86929a13b621bf9bb54ca6b3b9  # the bundle's commit of upstream d1a57a5
WORK=/tmp/build-sage
rm -rf "$WORK" && mkdir -p "$WORK"
export COMFY_INSTALL_CACHE_DIR=$WORK/cache
SITE=${SITE:-/tmp/site}
RUN_PYTHONPATH=$SITE:$PWD/src:$PWD/tests
# comfy-install's own dependencies, when carried as wheels in .whl/ (as for run_attention.sh).
WHEELS=$(ls .whl/*.whl 2>/dev/null | grep -v -e sageattention -e xformers)
if [ -n "$WHEELS" ]; then
  mkdir -p "$SITE"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" $WHEELS > "$OUT/pip-site.log" 2>&1 || echo "pip into $SITE: exit $?" >> "$OUT/summary.txt"
fi

{ nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv; nproc; free -g | head -2
  nvcc --version | tail -2
  python3 -c 'import sys, torch; print(sys.version.split()[0], torch.__version__, torch.version.cuda)'
} > "$OUT/machine.txt" 2>&1

make_venv() {  # a venv over the machine's site-packages (its torch), as tests/gpu/device_run.sh
  python3 -m venv --system-site-packages --without-pip "$1" || return 1
  local sp
  sp=$("$1/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  python3 -c 'import site; print("\n".join(site.getsitepackages()))' > "$sp/machine-torch.pth"
}

run_step10() {  # $1 = label, $2 = venv
  PYTHONPATH=$RUN_PYTHONPATH python3 tests/gpu/build_sage.py --venv "$2" --bundle "$BUNDLE" \
    --commit "$COMMIT" --out "$OUT" --label "$1" --gpu "${SAGE_GPU:-auto}" \
    --find-links "$PWD/.device/wheels" --offline > "$OUT/$1-stdout.txt" 2>&1
}

make_venv "$WORK/venv1" || { echo "venv failed" >> "$OUT/summary.txt"; exit 1; }
SECONDS=0
run_step10 first "$WORK/venv1"
echo "first install (build): exit $?, ${SECONDS} s" >> "$OUT/summary.txt"

# The GPU check: import the installed SageAttention 2 and compare one call with SDPA.
"$WORK/venv1/bin/python" - > "$OUT/gpu-check.json" 2> "$OUT/gpu-check-stderr.txt" <<'EOF'
import json, torch, importlib.metadata as md
import torch.nn.functional as F
from sageattention import sageattn
torch.manual_seed(0)
shape = (1, 24, 4096, 128)
q, k, v = (torch.randn(shape, dtype=torch.float16, device="cuda") for _ in range(3))
out = sageattn(q, k, v, tensor_layout="HND", is_causal=False)
ref = F.scaled_dot_product_attention(q, k, v)
cos = F.cosine_similarity(out.flatten().float(), ref.flatten().float(), dim=0).item()
def timed(fn, n=20):
    for _ in range(3):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize(); start.record()
    for _ in range(n):
        fn()
    end.record(); torch.cuda.synchronize()
    return start.elapsed_time(end) / n
sage_ms = timed(lambda: sageattn(q, k, v, tensor_layout="HND", is_causal=False))
sdpa_ms = timed(lambda: F.scaled_dot_product_attention(q, k, v))
import sageattention, os
print(json.dumps({
    "sageattention": md.version("sageattention"), "module": sageattention.__file__,
    "extensions": sorted(f for f in os.listdir(os.path.dirname(sageattention.__file__)) if f.endswith(".so")),
    "gpu": torch.cuda.get_device_name(0), "cc": torch.cuda.get_device_capability(0),
    "shape": shape, "cosine_vs_sdpa": cos, "max_abs_diff": (out - ref).abs().max().item(),
    "sage_ms": sage_ms, "sdpa_ms": sdpa_ms, "speedup_vs_sdpa": sdpa_ms / sage_ms,
}, indent=2))
EOF
echo "gpu check: exit $?" >> "$OUT/summary.txt"

make_venv "$WORK/venv2" || { echo "venv2 failed" >> "$OUT/summary.txt"; exit 1; }
SECONDS=0
run_step10 second "$WORK/venv2"
echo "second install (cache): exit $?, ${SECONDS} s" >> "$OUT/summary.txt"
"$WORK/venv2/bin/python" -c 'import sageattention, importlib.metadata as md; print("second venv imports sageattention", md.version("sageattention"))' \
  >> "$OUT/summary.txt" 2>&1

PYTHONPATH=$RUN_PYTHONPATH python3 - >> "$OUT/summary.txt" 2>&1 <<'EOF'
import json, os
out = os.environ.get("OUT", "/tmp/build-sage-out")
for label in ("first", "second"):
    try:
        data = json.load(open(f"{out}/{label}.json"))
    except OSError:
        print(f"{label}: no result"); continue
    sa2 = next(o for o in data["outcomes"] if o["name"] == "sageattention2 (source)")
    print(f"{label}: step 10 took {data['seconds']} s; sageattention2: {sa2['status']} ({sa2['reason'][:160]}); sha256 {sa2['sha256']}")
    for record in data["cache"]:
        print(f"  cached {record['wheel']}: {record['size']} bytes, sha256 {record['sha256']}, built in {record['seconds']} s")
EOF
cp -r "$COMFY_INSTALL_CACHE_DIR/builds" "$OUT/cache-records" 2>/dev/null && find "$OUT/cache-records" -name '*.whl' -delete
cat "$OUT/summary.txt"
