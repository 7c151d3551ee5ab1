#!/usr/bin/env bash
# On the GPU machine (no network): install whichever wheel batches were carried in
# .whl/b*/ (from bench/gpu/stage_wheels.py) into one target folder that the next
# calls find again (a warm machine keeps /tmp): successive calls accumulate.
#   bash bench/gpu/install_staged.sh            # target /tmp/site (SITE=... to change)
# Then: export PYTHONPATH=/tmp/site  (device_run.sh does it).
set -uo pipefail
SITE=${SITE:-/tmp/site}
mkdir -p "$SITE"
shopt -s nullglob
wheels=(.whl/b*/*.whl)
if [ ${#wheels[@]} -eq 0 ]; then
  echo "no wheels under .whl/b*/ (name the batch in carry)"; exit 1
fi
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target "$SITE" "${wheels[@]}" || exit 1
echo "installed ${#wheels[@]} wheels into $SITE:"
for w in "${wheels[@]}"; do basename "$w"; done
echo "$SITE now holds $(ls "$SITE" | grep -c dist-info) distributions, $(du -sh "$SITE" | cut -f1)"
