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
# Pieces of a wheel cut by stage_wheels.py (NAME.whl.partNNN, NAME.whl.parts = "COUNT SHA256")
# wait in $SITE/.parts until every piece has come, over one call or several; the wheel is
# then put together, its SHA-256 checked, and installed with its batch.
# A packed site (bench/gpu/pack_site.sh: the staged wheels unpacked, trimmed and compressed
# into one .whl/pack/site-SHA.tar.xz of under 60 MiB) is the one-call alternative: unpacked
# over $SITE once, its SHA-256 (in its name) checked first.
for pack in .whl/pack/site-*.tar.xz; do
  found=1
  digest=${pack##*/site-}; digest=${digest%.tar.xz}
  if [ -f "$SITE/.pack-$digest" ]; then echo "pack $digest: already unpacked"; continue; fi
  have=$(sha256sum "$pack" | cut -c1-16)
  [ "$have" = "$digest" ] || { echo "$pack: SHA-256 starts $have, not $digest"; exit 4; }
  tar -xJf "$pack" -C "$SITE" --strip-components=1 || exit 1
  touch "$SITE/.pack-$digest"
  echo "pack $digest: unpacked into $SITE"
done
PARTS="$SITE/.parts"
mkdir -p "$PARTS"
for batch in .whl/b*/; do
  for piece in "$batch"*.whl.part[0-9]*; do cp -n "$piece" "$PARTS/"; found=1; done
  for list in "$batch"*.whl.parts; do cp -f "$list" "$PARTS/"; done
done
for list in "$PARTS"/*.whl.parts; do
  wheel=$(basename "$list" .parts)
  read -r count digest < "$list"
  have=$(ls "$PARTS/$wheel".part[0-9]* 2>/dev/null | wc -l)
  if [ "$have" -lt "$count" ]; then echo "$wheel: $have of $count pieces so far"; continue; fi
  cat $(ls "$PARTS/$wheel".part[0-9]* | sort) > "$PARTS/$wheel"
  if ! echo "$digest  $PARTS/$wheel" | sha256sum -c --quiet -; then
    echo "$wheel: reassembled from $count pieces, but its SHA-256 does not match"; exit 4
  fi
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" "$PARTS/$wheel" || exit 1
  rm -f "$PARTS/$wheel".part[0-9]* "$list"
  echo "$wheel: reassembled from $count pieces, SHA-256 checked, installed"
done
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
[ $found -eq 1 ] || { echo "no wheels under .whl/b*/ or .whl/pack/ (name one in carry)"; exit 1; }
echo "$SITE holds $(ls "$SITE" | grep -c dist-info) distributions, $(du -sh "$SITE" | cut -f1)"
