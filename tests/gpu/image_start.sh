#!/usr/bin/env bash
# The image's start script (issue 22) on a lent GPU machine, outside a container (no engine
# there): the first start measures attention (`comfy-install tune`) and keeps the calibration
# on the tune "volume"; a second start, as a new container would (its install without the
# calibration), copies it back and measures nothing. Both launch ComfyUI, which must answer.
# About 2-3 minutes of device time after tests/gpu/run_attention.sh, which makes DIR (a venv
# over the machine's torch, ComfyUI v0.33.0) and /tmp/site. Run from the repository root:
#   bash tests/gpu/run_attention.sh .fixtures/comfyui-v0.33.0.bundle; bash tests/gpu/image_start.sh
set -uo pipefail
DIR=${1:-/tmp/att-dir}
export PYTHONUNBUFFERED=1 NO_COLOR=1 PYTHONPATH=${SITE:-/tmp/site}:$PWD/src:$PWD/tests
OUT=${OUT:-/tmp/image-start-out}
R="$OUT/image-start"
mkdir -p "$R"
say() { echo "$*" | tee -a "$R/summary.txt"; }

# `comfy-install` on PATH, as in the image (here: this checkout over the machine's Python).
BIN=$(mktemp -d)
printf '#!/bin/sh\nexec python3 -m installer "$@"\n' > "$BIN/comfy-install"
chmod +x "$BIN/comfy-install"
export PATH="$BIN:$PATH"
VOLUME=$(mktemp -d)
python3 -c 'from installer.image.runtime_files import start_script
print(start_script("/opt/comfyui", "/var/lib/comfy-install/tune"), end="")' > "$R/start.sh"
[ -e /dev/nvidiactl ] || say "no /dev/nvidiactl: the script will not measure"
rm -f "$DIR/.comfy-install/calibration.json"

for run in 1 2; do
  t0=$(date +%s)
  COMFY_INSTALL_DIR=$DIR COMFY_TUNE_DIR=$VOLUME COMFY_TUNE_BUDGET=30 timeout 600 \
    sh "$R/start.sh" --background --port 8198 --timeout 240 > "$R/start-$run.txt" 2>&1
  say "start $run: exit $? in $(( $(date +%s) - t0 )) s;" \
    "measured: $(grep -c 'measuring this GPU' "$R/start-$run.txt");" \
    "kept: $(grep -c 'calibration kept on the tune volume' "$R/start-$run.txt")"
  curl -s -o /dev/null -w "start $run object_info: HTTP %{http_code}\n" \
    http://127.0.0.1:8198/object_info | tee -a "$R/summary.txt"
  python3 -m installer stop "$DIR" >> "$R/start-$run.txt" 2>&1
  cmp -s "$VOLUME/calibration.json" "$DIR/.comfy-install/calibration.json" \
    && say "start $run: the install's calibration is the volume's" \
    || say "start $run: the install's calibration differs from the volume's (or one is missing)"
  # a new container: its install has no calibration, only the volume keeps it
  [ "$run" = 1 ] && rm -f "$DIR/.comfy-install/calibration.json"
done
ls -la "$VOLUME" >> "$R/summary.txt"
cat "$R/summary.txt"
