#!/usr/bin/env bash
# Attention routing on a lent GPU machine (no network), about 3-4 minutes of device time.
# Run from the repository root:  bash tests/gpu/run_attention.sh BUNDLE [SITE]
#   BUNDLE  the ComfyUI v0.33.0 git bundle (carried, e.g. .fixtures/comfyui-v0.33.0.bundle)
#   SITE    a folder with comfy-install's and ComfyUI's requirements (default /tmp/site);
#           the wheels in .whl/ (if carried) are installed into it first, SageAttention
#           and xformers wheels into the venv instead.
# In a venv over the machine's python3 (its torch 2.11): `comfy-install tune` on an install
# dir whose venv is that venv and whose ComfyUI is v0.33.0; the calibration table; launch
# --print-env; the routing proof (tests/gpu/attention_proof.py); a real `launch` that must
# answer /object_info. Everything goes to $OUT (summary.txt first).
set -uo pipefail
BUNDLE=${1:?usage: run_attention.sh COMFYUI_V0.33.0_BUNDLE [SITE]}
SITE=${2:-/tmp/site}
export PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=150
OUT=${OUT:-/tmp/attention-out}
mkdir -p "$OUT" "$SITE"
say() { echo "$*" | tee -a "$OUT/summary.txt"; }
started=$(date +%s)

WHEELS=$(ls .whl/*.whl 2>/dev/null | grep -v -e sageattention -e xformers)
if [ -n "$WHEELS" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" $WHEELS > "$OUT/pip-site.log" 2>&1 || say "pip into $SITE: exit $?"
fi
# Only the checkout on PYTHONPATH: the venv below sees SITE through a .pth file *after* its
# own packages, so its SageAttention 2 is not shadowed by the 1.0.6 in SITE (PYTHONPATH would
# reach the venv's measuring subprocesses ahead of everything).
export PYTHONPATH="$PWD/src:$PWD/tests"

{ nvidia-smi; python3 -c 'import torch; print(torch.__version__, torch.version.cuda,
  torch.cuda.get_device_name(0), torch.cuda.get_device_capability(0))'; } > "$OUT/machine.txt" 2>&1

# The venv: the machine's python3 and torch, the requirements in SITE, SageAttention 2 in it.
VENV=/tmp/att-venv
rm -rf "$VENV" /tmp/att-dir
python3 -m venv --system-site-packages --without-pip "$VENV" || exit 1
SP=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
python3 -c 'import site; print("\n".join(site.getsitepackages()))' > "$SP/machine-torch.pth"
echo "$SITE" > "$SP/requirements-site.pth"
SAGE_WHL=$(ls .whl/sageattention-2*.whl .device/sageattention-2*.whl /work/shared/fixtures/sageattention-2*.whl 2>/dev/null | head -1)
if [ -n "$SAGE_WHL" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target "$SP" "$SAGE_WHL" \
    > "$OUT/pip-sage.log" 2>&1 || say "sage wheel: exit $?"
fi
"$VENV/bin/python" -c 'import importlib.metadata as m
for d in ("torch", "sageattention", "xformers", "comfy-kitchen", "triton"):
    try: print(d, m.version(d))
    except Exception as e: print(d, "-", type(e).__name__)' > "$OUT/venv-packages.txt" 2>&1

# The install dir: that venv and ComfyUI v0.33.0.
mkdir -p /tmp/att-dir
ln -s "$VENV" /tmp/att-dir/venv
git clone -q "$BUNDLE" /tmp/att-dir/ComfyUI && git -C /tmp/att-dir/ComfyUI checkout -q v0.33.0 \
  || say "clone of $BUNDLE failed"
# The comfyui step makes custom_nodes/ (v0.33.0's main.py stops without it); a bare clone lacks it.
mkdir -p /tmp/att-dir/ComfyUI/custom_nodes

# 1. tune: the table for people (stderr) and the calibration itself.
t0=$(date +%s)
"$VENV/bin/python" -m installer tune /tmp/att-dir > "$OUT/tune-stdout.txt" 2> "$OUT/tune.txt"
say "tune: exit $? in $(( $(date +%s) - t0 )) s"
cp /tmp/att-dir/.comfy-install/calibration.json "$OUT/" 2>/dev/null
cat "$OUT/tune.txt"

# 2. what launch decides from it.
"$VENV/bin/python" -m installer launch /tmp/att-dir --print-env > "$OUT/launch-print-env.txt" 2>&1
"$VENV/bin/python" -m installer launch /tmp/att-dir --print-env --json > "$OUT/launch-print-env.json" 2>&1
say "launch --print-env: exit $?"
grep -e "# attention" -e "# xformers" "$OUT/launch-print-env.txt" | tee -a "$OUT/summary.txt"

# 3. the routing proof: ComfyUI's own attention, routed, counted and timed.
"$VENV/bin/python" tests/gpu/attention_proof.py /tmp/att-dir "$OUT" > "$OUT/proof-stdout.txt" 2>&1
say "attention proof: exit $?"
cat "$OUT/proof-stdout.txt"

# 4. a real ComfyUI started by launch on the GPU answers /object_info; the shim attached.
PORT=8199
timeout 300 "$VENV/bin/python" -m installer launch /tmp/att-dir --port $PORT --background --json \
  --timeout 240 > "$OUT/launch-background.json" 2> "$OUT/launch-background.txt"
say "launch --background: exit $?"
curl -s -o /dev/null -w "object_info: HTTP %{http_code}\n" "http://127.0.0.1:$PORT/object_info" \
  | tee -a "$OUT/summary.txt"
"$VENV/bin/python" -m installer stop /tmp/att-dir >> "$OUT/launch-background.txt" 2>&1
LOG=$(ls -t /tmp/att-dir/.comfy-install/logs/comfyui-*.log 2>/dev/null | head -1)
[ -n "$LOG" ] && cp "$LOG" "$OUT/comfyui.log" && grep "comfy-install tuning" "$LOG" \
  | tee -a "$OUT/summary.txt"
cp /tmp/att-dir/.comfy-install/attention-calls.json "$OUT/launch-attention-calls.json" 2>/dev/null

say "total: $(( $(date +%s) - started )) s"
cat "$OUT/summary.txt"
