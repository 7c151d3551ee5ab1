#!/usr/bin/env bash
# Issue 30's attention checks on a lent GPU machine, one command, from the repository root (the
# staged wheels in .whl/bN carried in this call or installed by earlier ones; .device/ holding
# comfyui-v0.33.0.bundle). About 3-4 minutes on an H100:
#   bash tests/gpu/issue30.sh
# 1. torch's SDPA back ends against ComfyUI's SDPA, the router's cuDNN route and SageAttention,
#    with their errors against the math back end (tests/gpu/sdpa_backends.py);
# 2. `comfy-install tune` on /tmp/gpu-bench (ComfyUI v0.33.0, a venv whose torch comes through a
#    .pth file), its time against its budget;
# 3. `launch --print-env` there (torch found, allocator decided);
# 4. the routing proof (tests/gpu/attention_proof.py: calls land where the calibration says, and
#    the routed call is within 3% + 1 µs of the best of SDPA, cuDNN and SageAttention).
# 5. SageAttention 2's sm90 kernel variants at the video shapes (tests/gpu/sage_variants.py).
# 6. the sage_per_warp route at the kernel level (tests/gpu/sage_route_check.py: its time and
#    error against sageattn, the per-warp kernel and cuDNN at Wan's shapes).
# SKIP_BACKENDS=1 leaves step 1 out, SKIP_PROOF=1 step 4, SKIP_VARIANTS=1 step 5. Leaves in $OUT: summary.txt, sdpa-backends.json,
# calibration.json, tune.txt, print-env.txt, attention-proof.json, sage-variants.json,
# attention.tgz (everything else).
set -uo pipefail
export PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=160
OUT=${OUT:-/tmp/issue30-out}
mkdir -p "$OUT/more"
say() { echo "$*" | tee -a "$OUT/summary.txt"; }
source bench/gpu/setup_machine.sh || exit 1
PY=$BENCH/venv/bin/python
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee -a "$OUT/summary.txt"

if [ "${SKIP_BACKENDS:-0}" != 1 ]; then
  t=$SECONDS
  timeout 200 "$PY" tests/gpu/sdpa_backends.py "$BENCH/ComfyUI" "$OUT/sdpa-backends.json" \
    > "$OUT/more/sdpa-backends.txt" 2>&1
  say "sdpa back ends: exit $? in $((SECONDS - t)) s"
  cat "$OUT/more/sdpa-backends.txt" | grep -v Warning | tee -a "$OUT/summary.txt" | tail -40 > /dev/null
fi

BUDGET=${TUNE_BUDGET:-90}
t=$SECONDS
python3 -m installer tune "$BENCH" --budget "$BUDGET" > "$OUT/more/tune-stdout.txt" 2> "$OUT/tune.txt"
say "tune: exit $? in $((SECONDS - t)) s (budget $BUDGET s)"
grep -E "D=|through|took|skipped" "$OUT/tune.txt" | head -20 | tee -a "$OUT/summary.txt"
cp "$BENCH/.comfy-install/calibration.json" "$OUT/" 2>/dev/null

python3 -m installer launch "$BENCH" --print-env > "$OUT/print-env.txt" 2>&1
say "launch --print-env: exit $?"
grep -E "^# (torch|allocator|attention)" "$OUT/print-env.txt" | tee -a "$OUT/summary.txt"

t=$SECONDS
timeout 120 "$PY" tests/gpu/sage_route_check.py > "$OUT/more/sage-route.txt" 2>&1
say "sage_per_warp route check: exit $? in $((SECONDS - t)) s"
grep -v -i warn "$OUT/more/sage-route.txt" | tail -16 | tee -a "$OUT/summary.txt" > /dev/null

if [ "${SKIP_PROOF:-0}" != 1 ]; then
t=$SECONDS
timeout 300 python3 tests/gpu/attention_proof.py "$BENCH" "$OUT/more" > "$OUT/more/proof-stdout.txt" 2>&1
say "attention proof: exit $? in $((SECONDS - t)) s"
cat "$OUT/more/proof-stdout.txt" | tail -30 | tee -a "$OUT/summary.txt"
cp "$OUT/more/attention-proof.json" "$OUT/" 2>/dev/null
fi

# 5. SageAttention 2's kernel variants on this GPU at the video shapes (which sageattn_* and
#    pv_accum_dtype options exist for sm90 in 2.2.0, their speed and error).
if [ "${SKIP_VARIANTS:-0}" != 1 ]; then
t=$SECONDS
timeout 150 "$PY" tests/gpu/sage_variants.py "$OUT/sage-variants.json" > "$OUT/more/sage-variants.txt" 2>&1
say "sage variants: exit $? in $((SECONDS - t)) s"
grep -v -i warn "$OUT/more/sage-variants.txt" | tail -14 | tee -a "$OUT/summary.txt" > /dev/null
fi
tar -czf "$OUT/attention.tgz" -C "$OUT" more && rm -rf "$OUT/more"
