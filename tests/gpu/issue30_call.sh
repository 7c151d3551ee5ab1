#!/usr/bin/env bash
# One device call of issue 30, from the repository root (any wheel batch carried in this call is
# installed first):  bash tests/gpu/issue30_call.sh [attention] [WORKFLOW...]
#   attention   the attention checks (tests/gpu/issue30.sh: SDPA back ends, tune, print-env, proof)
#   WORKFLOW    sdxl, wan, wan720 (Wan 2.1 at 1280×720×33) or flux (FLUX.1 [dev] at 1024², 20
#               steps; its models are 34 GB on disk): bench/gpu/device_run.sh with that
#               workflow's variants (SDXL_VARIANTS / WAN_VARIANTS / WAN720_VARIANTS /
#               FLUX_VARIANTS: BASE[+LEVER...], see run_workflows.py)
#   sagecompile the sage_per_warp route under torch.compile (tests/gpu/sage_compile_check.py)
# Everything fits the 8 files a call brings back: summary.txt, results-gpu.json, levers.json,
# sdpa-backends.json, attention-proof.json, sage-variants.json, calibration.json (carry it in
# .device/ to spare the next machine its tune) and bundle.tgz (the rest).
# SKIP_BACKENDS=0 measures SDPA's back ends again (about a minute).
set -uo pipefail
START=$SECONDS
FINAL=$OUT
mkdir -p "$FINAL/work"
if compgen -G ".whl/b*/*" > /dev/null || compgen -G ".whl/pack/*" > /dev/null; then
  bash bench/gpu/install_staged.sh | tail -5
fi
# SDXL_TOTAL / WAN_TOTAL: seconds for that workflow's part (default: all that is left).
cap() { if [ -n "$1" ] && [ "$1" -lt "$2" ]; then echo "$1"; else echo "$2"; fi; }
for part in "$@"; do
  left=$(( ${CALL_TOTAL:-575} - (SECONDS - START) ))
  case "$part" in
    attention)
      OUT=$FINAL/work/attention TUNE_BUDGET=${TUNE_BUDGET:-60} SKIP_BACKENDS=${SKIP_BACKENDS:-1} \
        timeout $((left - 5)) \
        bash tests/gpu/issue30.sh ;;
    sdxl)
      OUT=$FINAL/work/sdxl WORKFLOWS=sdxl-1024 MODELS=sdxl TOTAL=$(cap "${SDXL_TOTAL:-}" $((left - 10))) \
        VARIANTS=${SDXL_VARIANTS:-stock,tuned,tuned+autotune,tuned-compile,tuned-compile-cached,tuned+fp8mm,tuned-levers,blanket} \
        bash bench/gpu/device_run.sh > /dev/null ;;
    wan)
      OUT=$FINAL/work/wan WORKFLOWS=wan21-832x480x33 MODELS=wan21 TOTAL=$(cap "${WAN_TOTAL:-}" $((left - 10))) \
        VARIANTS=${WAN_VARIANTS:-stock,tuned,tuned+fp8mm,tuned-compile,tuned-compile-cached,tuned+autotune,tuned-levers,tuned+fp16acc,blanket} \
        bash bench/gpu/device_run.sh > /dev/null ;;
    wan720)
      OUT=$FINAL/work/wan720 WORKFLOWS=wan21-1280x720x33 COMPILE_WORKFLOWS=wan21-1280x720x33 MODELS=wan21 \
        TOTAL=$(cap "${WAN720_TOTAL:-}" $((left - 10))) \
        VARIANTS=${WAN720_VARIANTS:-stock,tuned+nodyn,tuned-compile+nodyn+fp16acc} \
        bash bench/gpu/device_run.sh > /dev/null ;;
    flux)
      OUT=$FINAL/work/flux WORKFLOWS=flux-1024 COMPILE_WORKFLOWS=flux-1024 MODELS=flux \
        TOTAL=$(cap "${FLUX_TOTAL:-}" $((left - 10))) \
        VARIANTS=${FLUX_VARIANTS:-stock,tuned+nodyn,tuned-norouting+nodyn,tuned-compile+nodyn} \
        bash bench/gpu/device_run.sh > /dev/null ;;
    sagecompile)  # SageAttention is importable only after setup_machine.sh (PYTHONPATH)
      mkdir -p "$FINAL/work/sagecompile"
      ( source bench/gpu/setup_machine.sh > /dev/null 2>&1 || exit 1
        timeout $((left - 5)) python3 tests/gpu/sage_compile_check.py ) \
        > "$FINAL/work/sagecompile/summary.txt" 2>&1 ;;
  esac
  echo "== $part: exit $? at $((SECONDS - START)) s" | tee -a "$FINAL/summary.txt"
  cat "$FINAL/work/$part/summary.txt" 2>/dev/null >> "$FINAL/summary.txt"
  tail -30 "$FINAL/work/$part/device-run.log" 2>/dev/null >> "$FINAL/summary.txt"
done
cp /tmp/gpu-bench/results-gpu.json "$FINAL/" 2>/dev/null
cp /tmp/gpu-bench/levers-measured.json "$FINAL/levers.json" 2>/dev/null
cp "$FINAL/work/attention/attention-proof.json" "$FINAL/work/attention/sage-variants.json" "$FINAL/" 2>/dev/null
cp "$FINAL/work/attention/sdpa-backends.json" "$FINAL/" 2>/dev/null
cp /tmp/gpu-bench/.comfy-install/calibration.json "$FINAL/" 2>/dev/null  # carry it next time
tar -czf "$FINAL/bundle.tgz" -C "$FINAL" work && rm -rf "$FINAL/work"
cat "$FINAL/summary.txt"
