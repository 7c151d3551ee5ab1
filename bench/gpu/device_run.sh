#!/usr/bin/env bash
# The GPU workflow benchmark on a lent GPU machine (no network), from the repository root,
# after the wheel batches went in with bench/gpu/install_staged.sh (any batch carried in
# this call is installed first). Usage:
#   bash bench/gpu/device_run.sh [COMFYUI_BUNDLE]
# Inputs (env): COMFYUI_BUNDLE (default .device/comfyui-v0.33.0.bundle),
#   SA2_WHEEL (default .device/sageattention-2.2.0-cp312-cp312-linux_x86_64.whl; used when
#   it imports, else sageattention 1.0.6 from the batches), VARIANTS (default
#   stock,blanket,tuned,tuned-compile), WORKFLOWS (default sdxl-1024,wan21-832x480x33),
#   WARM (3), TOTAL (seconds for this whole script, default 560), MODELS (sdxl,wan21).
# Keeps on the machine (/tmp, for the next call): /tmp/site, /tmp/gpu-bench/{ComfyUI,venv},
# /tmp/gpu-bench-models, /tmp/gpu-bench/results-gpu.json (later calls merge into it).
# Leaves in $OUT: results-gpu.json, gpu-section.md, device-run.log, logs.tar.gz.
set -uo pipefail
START=$SECONDS
export PYTHONUNBUFFERED=1 NO_COLOR=1
OUT=${OUT:-/tmp/gpu-bench-out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/device-run.log") 2>&1
export COMFYUI_BUNDLE=${1:-${COMFYUI_BUNDLE:-.device/comfyui-v0.33.0.bundle}}
TOTAL=${TOTAL:-560}
MODELS_DIR=/tmp/gpu-bench-models
source bench/gpu/setup_machine.sh || exit 1
{ nvidia-smi; python3 -m pip list 2>/dev/null | grep -i -E \
  'torch|triton|sage|kitchen|aimdo|transformers|aiohttp|yarl|numpy|safetensors|av |pydantic'; } \
  > "$OUT/machine.txt" 2>&1

# Models (random weights, ComfyUI's layouts), written once per machine.
T=$SECONDS
python3 bench/gpu/make_models.py --comfyui "$BENCH/ComfyUI" --out "$MODELS_DIR" \
  --models "${MODELS:-sdxl,wan21}" || exit 1
echo "models: $((SECONDS - T)) s; $(du -sh "$MODELS_DIR" | cut -f1)"

# The calibration the tuned variants launch from: comfy-install tune on this GPU (its own budget).
# A calibration made earlier on this machine (tests/gpu/issue30.sh) is kept, or carried in
# .device/calibration.json; TUNE=1 measures again.
mkdir -p "$BENCH/.comfy-install"
carry_calibration  # bench/gpu/setup_machine.sh: only where it was measured on this card
# No calibration for this card: tune, also under TUNE=0 (else the tuned variants would
# launch without routing and measure nothing of it).
if [ "${TUNE:-}" = 1 ] || [ ! -f "$BENCH/.comfy-install/calibration.json" ]; then
  T=$SECONDS
  python3 -m installer tune "$BENCH" --budget "${TUNE_BUDGET:-90}" > "$OUT/tune.txt" 2>&1
  echo "tune: exit $? in $((SECONDS - T)) s"
  grep -E "^D=|through|raw kernels" "$OUT/tune.txt"
fi
cp "$BENCH/.comfy-install/calibration.json" "$OUT/calibration.json" 2>/dev/null

# The benchmark, within what is left of TOTAL.
LEFT=$(( TOTAL - (SECONDS - START) - 15 ))
echo "benchmark budget: $LEFT s"
python3 bench/gpu/run_workflows.py --comfyui "$BENCH/ComfyUI" --python "$BENCH/venv/bin/python" \
  --install-dir "$BENCH" --installer "python3 -m installer" --models "$MODELS_DIR" \
  --workflows "${WORKFLOWS:-sdxl-1024,wan21-832x480x33}" \
  --variants "${VARIANTS:-stock,blanket,tuned,tuned-compile}" --warm "${WARM:-3}" \
  --compile-workflows "${COMPILE_WORKFLOWS:-sdxl-1024,wan21-832x480x33}" \
  --levers-out "$BENCH/levers-measured.json" ${COMFY_BENCH_ARGS:+--comfy-arg=$COMFY_BENCH_ARGS} \
  --budget "$LEFT" --work "$BENCH/work" --out "$BENCH/results-gpu.json" --merge \
  --results-md "$OUT/gpu-section.md" --docs-md "$OUT/gpu-section-docs.md"
RC=$?
cp "$BENCH/results-gpu.json" "$OUT/results-gpu.json"
cp "$BENCH/levers-measured.json" "$OUT/levers.json" 2>/dev/null
rm -f "$OUT/gpu-section-docs.md"
tar -czf "$OUT/logs.tar.gz" -C "$BENCH" --exclude='work/outputs' work "$MODELS_DIR/bench-models.json" 2>/dev/null
echo "device_run: exit $RC after $((SECONDS - START)) s"
exit $RC
