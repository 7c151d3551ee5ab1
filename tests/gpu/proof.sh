#!/usr/bin/env bash
# Step 10's accelerator proof on a lent GPU machine (no network), about 2-4 minutes of device time.
# Run from the repository root:  bash tests/gpu/proof.sh [SITE]
#   SITE  a folder with comfy-install's requirements, uv among them (and ComfyUI's,
#         comfy-kitchen, sageattention 1.0.6; default /tmp/site); wheels carried in .whl/ or
#         .whl/*/ (if any) are installed into it first, SageAttention and xformers excepted.
# Carried in .device/: extra/xformers-0.0.35-py39-none-manylinux_2_28_x86_64.whl (PyPI's, a
# CUDA 12 build), sageattention-2.2.0-cp312-cp312-linux_x86_64.whl (built on the H200) and,
# if there, comfyui-v0.33.0.bundle (verify then starts the real ComfyUI).
# In a venv over the machine's python3 and torch: step 10 for real (xformers and SageAttention 2
# installed by uv), its proof (xformers must come out broken and be uninstalled, torch
# unchanged; SageAttention 2 working), verify's proof, and SITE's SageAttention 1.0.6 proved.
# Everything goes to $OUT (summary.txt first); exit 1 when a check fails.
set -uo pipefail
SITE=${1:-/tmp/site}
export PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=150
OUT=${OUT:-/tmp/proof-out}
mkdir -p "$OUT" "$SITE"
say() { echo "$*" | tee -a "$OUT/summary.txt"; }
started=$(date +%s)
XFORMERS_WHL=${XFORMERS_WHL:-.device/extra/xformers-0.0.35-py39-none-manylinux_2_28_x86_64.whl}
SAGE_WHL=${SAGE_WHL:-.device/sageattention-2.2.0-cp312-cp312-linux_x86_64.whl}
BUNDLE=${BUNDLE:-.device/comfyui-v0.33.0.bundle}
for f in "$XFORMERS_WHL" "$SAGE_WHL"; do [ -f "$f" ] || { say "missing: $f"; exit 1; }; done

WHEELS=$(ls .whl/*.whl .whl/*/*.whl 2>/dev/null | grep -v -e sageattention -e xformers)
if [ -n "$WHEELS" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" $WHEELS > "$OUT/pip-site.log" 2>&1 || say "pip into $SITE: exit $?"
fi

{ nvidia-smi; python3 -c 'import torch; print(torch.__version__, torch.version.cuda,
  torch.cuda.get_device_name(0), torch.cuda.get_device_capability(0))';
  ls "$SITE" | grep -i -e sageattention -e kitchen -e xformers -e '^uv'; } > "$OUT/machine.txt" 2>&1

PYTHONPATH="$SITE:$PWD/src:$PWD/tests" python3 tests/gpu/step10_proof.py "$OUT" \
  "$XFORMERS_WHL" "$SAGE_WHL" "$SITE" "$BUNDLE" > "$OUT/step10-proof.txt" 2>&1
code=$?
say "step 10 proof: exit $code in $(( $(date +%s) - started )) s"
cat "$OUT/proof-summary.txt" 2>/dev/null || tail -40 "$OUT/step10-proof.txt"
exit $code
