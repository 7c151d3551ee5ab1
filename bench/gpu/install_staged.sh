#!/usr/bin/env bash
# On the GPU machine (no network): install whichever wheel batches were carried in
# .whl/b*/ (from bench/gpu/stage_wheels.py) into one target folder that the next
# calls find again (a warm machine keeps /tmp and ignored folders): successive calls
# accumulate. A batch already installed (same wheel names) is skipped.
#   bash bench/gpu/install_staged.sh            # target /tmp/site (SITE=... to change)
# Then: export PYTHONPATH=/tmp/site  (device_run.sh does it).
set -uo pipefail
SITE=${SITE:-/tmp/site}
mkdir -p "$SITE"
shopt -s nullglob
found=0
for batch in .whl/b*/; do
  name=$(basename "$batch")
  wheels=("$batch"*.whl)
  [ ${#wheels[@]} -gt 0 ] || continue
  found=1
  stamp="$SITE/.staged-$name"
  listing=$(cd "$batch" && ls *.whl)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$listing" ]; then
    echo "$name: already installed"; continue
  fi
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" "${wheels[@]}" || exit 1
  echo "$listing" > "$stamp"
  echo "$name: installed ${#wheels[@]} wheels: $(echo $listing)"
done
[ $found -eq 1 ] || { echo "no wheels under .whl/b*/ (name the batch in carry)"; exit 1; }
echo "$SITE holds $(ls "$SITE" | grep -c dist-info) distributions, $(du -sh "$SITE" | cut -f1)"
