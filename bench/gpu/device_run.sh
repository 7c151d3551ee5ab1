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
BUNDLE=${1:-${COMFYUI_BUNDLE:-.device/comfyui-v0.33.0.bundle}}
SA2=${SA2_WHEEL:-.device/sageattention-2.2.0-cp312-cp312-linux_x86_64.whl}
SITE=${SITE:-/tmp/site}
BENCH=/tmp/gpu-bench
MODELS_DIR=/tmp/gpu-bench-models
TOTAL=${TOTAL:-560}

if compgen -G ".whl/b*/*.whl" > /dev/null; then bash bench/gpu/install_staged.sh || exit 1; fi
[ -d "$SITE" ] || { echo "no $SITE: run bench/gpu/install_staged.sh with each batch first"; exit 1; }
export PYTHONPATH=$SITE:$PWD/src

# SageAttention 2 (built for this machine) when it imports beside the machine's torch.
SAGE=1.0.6
if [ -f "$SA2" ] && [ ! -d /tmp/sage2 ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/sage2 "$SA2"
fi
if [ -d /tmp/sage2 ] && PYTHONPATH=/tmp/sage2:$PYTHONPATH python3 -c \
    'import sageattention, sageattention._qattn_sm90, importlib.metadata as m; print("SageAttention", m.version("sageattention"))'; then
  export PYTHONPATH=/tmp/sage2:$PYTHONPATH; SAGE=2.2.0
fi
echo "sageattention in use: $SAGE"

# ComfyUI v0.33.0 and a venv over the machine's Python (DIR layout for `launch`).
mkdir -p "$BENCH"
if [ ! -d "$BENCH/ComfyUI" ]; then
  git clone -q "$BUNDLE" "$BENCH/ComfyUI" || { echo "no ComfyUI bundle at $BUNDLE"; exit 1; }
fi
if [ ! -x "$BENCH/venv/bin/python" ]; then
  python3 -m venv --system-site-packages --without-pip "$BENCH/venv" || exit 1
  SP=$("$BENCH/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  python3 -c 'import site; print("\n".join(site.getsitepackages()))' > "$SP/machine-site.pth"
fi
{ nvidia-smi; python3 -m pip list 2>/dev/null | grep -i -E \
  'torch|triton|sage|kitchen|aimdo|transformers|aiohttp|yarl|numpy|safetensors|av |pydantic'; } \
  > "$OUT/machine.txt" 2>&1
python3 -c 'import comfy_kitchen, av, torchsde, pydantic, platformdirs, typer; print("imports ok")' \
  || { echo "a staged package does not import"; exit 1; }

# Models (random weights, ComfyUI's layouts), written once per machine.
T=$SECONDS
python3 bench/gpu/make_models.py --comfyui "$BENCH/ComfyUI" --out "$MODELS_DIR" \
  --models "${MODELS:-sdxl,wan21}" || exit 1
echo "models: $((SECONDS - T)) s; $(du -sh "$MODELS_DIR" | cut -f1)"

# The calibration the tuned variants launch from: comfy-install tune on this GPU (its own budget).
T=$SECONDS
python3 -m installer tune "$BENCH" --budget "${TUNE_BUDGET:-60}" > "$OUT/tune.txt" 2>&1
echo "tune: exit $? in $((SECONDS - T)) s"
cp "$BENCH/.comfy-install/calibration.json" "$OUT/calibration.json" 2>/dev/null
grep -E "^D=|through|raw kernels" "$OUT/tune.txt"

# The benchmark, within what is left of TOTAL.
LEFT=$(( TOTAL - (SECONDS - START) - 15 ))
echo "benchmark budget: $LEFT s"
python3 bench/gpu/run_workflows.py --comfyui "$BENCH/ComfyUI" --python "$BENCH/venv/bin/python" \
  --install-dir "$BENCH" --installer "python3 -m installer" --models "$MODELS_DIR" \
  --workflows "${WORKFLOWS:-sdxl-1024,wan21-832x480x33}" \
  --variants "${VARIANTS:-stock,blanket,tuned,tuned-compile}" --warm "${WARM:-3}" \
  --budget "$LEFT" --work "$BENCH/work" --out "$BENCH/results-gpu.json" --merge \
  --results-md "$OUT/gpu-section.md" --docs-md "$OUT/gpu-section-docs.md"
RC=$?
cp "$BENCH/results-gpu.json" "$OUT/results-gpu.json"
rm -f "$OUT/gpu-section-docs.md"
tar -czf "$OUT/logs.tar.gz" -C "$BENCH" work "$MODELS_DIR/bench-models.json" 2>/dev/null
echo "device_run: exit $RC after $((SECONDS - START)) s"
exit $RC
