#!/usr/bin/env bash
# Sourced by bench/gpu/device_run.sh and tests/gpu/issue30.sh on the GPU machine, from the
# repository root: the staged wheels (any batch carried in this call installed first), SageAttention
# (2.2.0 where it imports: from /tmp/site or .device/, else 1.0.6), ComfyUI v0.33.0 in
# /tmp/gpu-bench/ComfyUI and a venv over the machine's Python in /tmp/gpu-bench/venv (DIR layout
# for `launch` and `tune`; torch reaches it through a .pth file). Idempotent: a warm machine
# keeps all of it. Sets BENCH, SITE, SAGE, PYTHONPATH; defines carry_calibration.
BUNDLE=${COMFYUI_BUNDLE:-.device/comfyui-v0.33.0.bundle}
SA2=${SA2_WHEEL:-.device/sageattention-2.2.0-cp312-cp312-linux_x86_64.whl}
SITE=${SITE:-/tmp/site}
BENCH=/tmp/gpu-bench
if compgen -G ".whl/b*/*" > /dev/null || compgen -G ".whl/pack/*" > /dev/null; then bash bench/gpu/install_staged.sh || return 1; fi
[ -d "$SITE" ] || { echo "no $SITE: run bench/gpu/install_staged.sh with each batch first"; return 1; }
export PYTHONPATH=$SITE:$PWD/src
if [ -f "$SA2" ] && [ ! -d /tmp/sage2 ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/sage2 "$SA2"
fi
[ -d /tmp/sage2 ] && export PYTHONPATH=/tmp/sage2:$PYTHONPATH
SAGE=$(python3 -c 'import sageattention, importlib.metadata as m; print(m.version("sageattention"))' 2>/dev/null)
echo "sageattention in use: ${SAGE:-none}"
mkdir -p "$BENCH"
if [ ! -d "$BENCH/ComfyUI" ]; then
  git clone -q "$BUNDLE" "$BENCH/ComfyUI" || { echo "no ComfyUI bundle at $BUNDLE"; return 1; }
  git -C "$BENCH/ComfyUI" checkout -q v0.33.0 2>/dev/null
fi
mkdir -p "$BENCH/ComfyUI/custom_nodes"
if [ ! -x "$BENCH/venv/bin/python" ]; then
  python3 -m venv --system-site-packages --without-pip "$BENCH/venv" || return 1
  SP=$("$BENCH/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  python3 -c 'import site; print("\n".join(site.getsitepackages()))' > "$SP/machine-site.pth"
fi
# The packed site leaves out the browser front end (84 MB): ComfyUI then serves an empty
# folder (--front-end-root), which the benchmark's HTTP API does not need.
export COMFY_BENCH_ARGS=""
if ! python3 -c 'import comfyui_frontend_package' 2>/dev/null; then
  mkdir -p "$BENCH/frontend" && echo '<html>benchmark: no front end</html>' > "$BENCH/frontend/index.html"
  export COMFY_BENCH_ARGS="--front-end-root=$BENCH/frontend"
fi
python3 -c 'import comfy_kitchen, av, torchsde, pydantic, platformdirs, typer; print("imports ok")' \
  || { echo "a staged package does not import"; return 1; }
# carry_calibration: copy .device/calibration.json into $BENCH/.comfy-install where there is
# none yet and it was measured on this card (an H100's table says nothing on an H200).
carry_calibration() {
  local gpu
  gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
  mkdir -p "$BENCH/.comfy-install"
  if [ ! -f "$BENCH/.comfy-install/calibration.json" ] && [ -f .device/calibration.json ] \
    && python3 -c 'import json,sys; sys.exit(json.load(open(".device/calibration.json"))["measured_on"]["gpu_name"] != sys.argv[1])' "$gpu"; then
    cp .device/calibration.json "$BENCH/.comfy-install/calibration.json"
    echo "calibration: carried (.device/calibration.json, measured on $gpu)"
  fi
}
