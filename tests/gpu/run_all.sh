#!/usr/bin/env bash
# Every GPU check of tests/gpu/ in one command, on a lent GPU machine (no network), from the
# repository root, after comfy-install's and ComfyUI's requirements were staged into /tmp/site
# (python3 bench/gpu/stage_wheels.py here; then one `bash bench/gpu/install_staged.sh` call per
# batch there, carrying .whl/bN). Carry `.device/` (comfyui-v0.33.0.bundle,
# sageattention-d1a57a5.bundle, sageattention-2.2.0-cp312-cp312-linux_x86_64.whl,
# extra/xformers-0.0.35-*.whl, wheels/: setuptools<75, wheel<0.44, packaging<24, ninja).
#   bash tests/gpu/run_all.sh [CHECK...]      CHECK: pins attention proof sage (default: all four)
# pins ≈ 1 min (issue 17), attention ≈ 2 min (18: tune, routing proof, launch), proof ≈ 2 min
# (18: step 10's proof), sage ≈ 4-5 min (19: the source build and its cached reuse) on an H200:
# all four fit one 10-minute call. The workflow benchmark (issue 21) needs its own call:
# `bash bench/gpu/device_run.sh`. Each check's files go to $OUT/<check>.tgz, a summary to stdout.
set -uo pipefail
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
checks=("$@")
[ ${#checks[@]} -gt 0 ] || checks=(pins attention proof sage)
status=0
for check in "${checks[@]}"; do
  dir="$OUT/$check"
  mkdir -p "$dir"
  start=$SECONDS
  case "$check" in
    pins) OUT=$dir timeout 240 bash tests/gpu/pins_gpu_check.sh ;;
    attention) OUT=$dir timeout 290 bash tests/gpu/run_attention.sh .device/comfyui-v0.33.0.bundle /tmp/site ;;
    proof) OUT=$dir timeout 280 bash tests/gpu/proof.sh /tmp/site ;;
    sage) OUT=$dir timeout 420 bash tests/gpu/build_sage.sh ;;
    *) echo "unknown check: $check (pins, attention, proof, sage)"; exit 2 ;;
  esac > "$dir/stdout.txt" 2>&1
  code=$?
  [ $code -eq 0 ] || status=1
  echo "== $check: exit $code in $((SECONDS - start)) s"
  cat "$dir/summary.txt" 2>/dev/null | tail -15
  tar -czf "$OUT/$check.tgz" -C "$OUT" "$check" && rm -rf "$dir"
done
exit $status
