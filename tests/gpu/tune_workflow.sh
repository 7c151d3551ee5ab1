#!/usr/bin/env bash
# `comfy-install tune --workflow` on a lent GPU machine (issue 30), from the repository root:
# the real executor runs the GPU benchmark's SDXL and Wan 2.1 workflows as stock, tuned,
# tuned-norouting (the router off, every other tuning on), tuned plus each lever, and then the
# launch as decided from those figures (launch, launch-norouting) where it is not tuned, writes
# levers.json, and `launch --print-env` shows what launch decides from it (the bands it stops
# routing, the levers it turns on). About 7 minutes on an H100 from a bare machine:
#   bash tests/gpu/tune_workflow.sh   (LEVERS=nodyn RUNS=2 BUDGET=400 WORKFLOWS="sdxl-1024 ..." MODELS=sdxl)
# Uses the calibration in .device/calibration.json where it was measured on this card (else
# `tune` measures one first, TUNE_BUDGET seconds). Leaves in $OUT: summary.txt, levers.json,
# tune-workflow.json (`tune --json`), tune-workflow.log, print-env.txt, calibration.json.
set -uo pipefail
START=$SECONDS
export PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=160
OUT=${OUT:-/tmp/tune-workflow-out}
mkdir -p "$OUT"
say() { echo "$*" | tee -a "$OUT/summary.txt"; }
source bench/gpu/setup_machine.sh > "$OUT/setup.log" 2>&1 || { tail -20 "$OUT/setup.log"; exit 1; }
GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
say "$GPU_NAME; setup: $((SECONDS - START)) s"
MODELS_DIR=/tmp/gpu-bench-models
python3 bench/gpu/make_models.py --comfyui "$BENCH/ComfyUI" --out "$MODELS_DIR" \
  --models "${MODELS:-sdxl,wan21}" > "$OUT/models.log" 2>&1 || { tail -20 "$OUT/models.log"; exit 1; }
say "models: $((SECONDS - START)) s"
mkdir -p "$BENCH/.comfy-install" "$BENCH/work"
rm -f "$BENCH/.comfy-install/levers.json"
carry_calibration  # bench/gpu/setup_machine.sh: only where it was measured on this card
if [ -f "$BENCH/.comfy-install/calibration.json" ]; then
  MEASURE=(--workflow-only)
else
  MEASURE=(--budget "${TUNE_BUDGET:-50}")
fi
# The benchmark's own extra-model-paths file (bench/gpu/run_workflows.py write_paths_yaml).
PATHS=$(python3 -c 'import argparse, pathlib, sys; sys.path.insert(0, "bench/gpu")
import run_workflows as r
print(r.write_paths_yaml(argparse.Namespace(models=sys.argv[1], tiny=False, work=pathlib.Path(sys.argv[2]))))' \
  "$MODELS_DIR" "$BENCH/work") || { echo "extra_model_paths.yaml not written"; exit 1; }
FILES=()
for name in ${WORKFLOWS:-sdxl-1024 wan21-832x480x33}; do
  FILES+=(--workflow "bench/gpu/workflows/$name.json")
done
t=$SECONDS
# shellcheck disable=SC2086  # COMFY_BENCH_ARGS is empty or one argument
python3 -m installer tune "$BENCH" "${MEASURE[@]}" "${FILES[@]}" --levers "${LEVERS:-nodyn}" \
  --runs "${RUNS:-2}" --workflow-budget "${BUDGET:-400}" --json \
  -- --extra-model-paths-config "$PATHS" $COMFY_BENCH_ARGS \
  > "$OUT/tune-workflow.json" 2> "$OUT/tune-workflow.log"
say "tune --workflow: exit $? in $((SECONDS - t)) s"
grep -E "run \(seed|skipped|failed|written|: (stock|tuned|launch)|second phase|as decided" "$OUT/tune-workflow.log" | tail -40 \
  | tee -a "$OUT/summary.txt" > /dev/null
python3 -m installer launch "$BENCH" --print-env > "$OUT/print-env.txt" 2>&1
say "launch --print-env: exit $?"
grep -E "^# (attention|lever)" "$OUT/print-env.txt" | tee -a "$OUT/summary.txt"
cp "$BENCH/.comfy-install/levers.json" "$OUT/levers.json" 2>/dev/null
cp "$BENCH/.comfy-install/calibration.json" "$OUT/calibration.json" 2>/dev/null
say "total: $((SECONDS - START)) s"
