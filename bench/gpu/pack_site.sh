#!/usr/bin/env bash
# Pack the staged wheels (.whl/b*/, from bench/gpu/stage_wheels.py) into ONE archive that fits a
# single device call beside the repository and .device/ (64 MiB in all), so that every call can
# start a bare machine by itself: .whl/pack/site-SHA16.tar.xz (about 52 MB), unpacked on the
# device by bench/gpu/install_staged.sh. Run here, from the repository root:
#   bash bench/gpu/pack_site.sh
# The wheels are unpacked (a wheel is a zip; `--target` installs of --no-deps wheels are just
# that), then what the benchmark never loads is left out, each for a reason:
#   comfy_kitchen/backends/hip      AMD's kernels (59 MB); the machine is NVIDIA
#   comfyui_frontend_package        the browser UI (84 MB); ComfyUI is given --front-end-root
#   comfyui_workflow_templates*     the template picker's files; ComfyUI logs and goes on
#   sageattention/_qattn_sm8[09]*   Ampere and Ada kernels; the machine is Hopper (sm90 kept)
#   kornia, kornia_rs               only optional nodes (canny, morphology) import them
# and every shared library is stripped of its debug sections (strip --strip-unneeded keeps the
# dynamic symbols: SageAttention's kernels shrink from 26 to 6 MB). Kept although optional-looking:
# sqlalchemy, alembic and mako (ComfyUI v0.33's app.assets imports sqlalchemy unconditionally at
# start-up: a pack without it stopped both ComfyUIs of the 2026-12-07 H100 call).
set -euo pipefail
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
SITE=$WORK/site
mkdir -p "$SITE" "$WORK/parts" .whl/pack
shopt -s nullglob
# Wheels cut into pieces by stage_wheels.py: put them together and check them first.
for list in .whl/b*/*.whl.parts; do
  wheel=$(basename "$list" .parts)
  [ -f "$WORK/parts/$wheel" ] && continue
  read -r _count digest < "$list"
  cat $(ls .whl/b*/"$wheel".part[0-9]* | sort) > "$WORK/parts/$wheel"
  echo "$digest  $WORK/parts/$wheel" | sha256sum -c --quiet -
done
# One wheel per project: where two versions are staged (sageattention 1.0.6 from the registry
# and the 2.2.0 built for the GPU, --add-wheel), the newer alone is unpacked, so the site holds
# one dist-info and no stale module of the older one.
for wheel in $(for w in "$WORK"/parts/*.whl .whl/b*/*.whl; do printf '%s\t%s\n' "$(basename "$w")" "$w"; done \
    | sort -t "$(printf '\t')" -k1,1V | awk -F '\t' '{split($1, n, "-"); last[n[1]] = $2} END {for (p in last) print last[p]}'); do
  unzip -q -o "$wheel" -d "$SITE"
done
rm -rf "$SITE"/comfy_kitchen/backends/hip "$SITE"/comfyui_frontend_package* \
  "$SITE"/comfyui_workflow_templates* "$SITE"/sageattention/_qattn_sm80* \
  "$SITE"/sageattention/_qattn_sm89* "$SITE"/kornia "$SITE"/kornia-* "$SITE"/kornia_rs*
find "$SITE" -name '*.so*' -type f -exec strip --strip-unneeded {} +
python3 - "$SITE" <<'PY'  # each stripped file's RECORD line would no longer match: drop the hashes
import sys, pathlib
for record in pathlib.Path(sys.argv[1]).glob("*.dist-info/RECORD"):
    lines = [line.split(",")[0] + ",," for line in record.read_text().splitlines() if line]
    record.write_text("\n".join(lines) + "\n")
PY
tar -cf - -C "$WORK" site | xz -9 -T0 > "$WORK/site.tar.xz"
digest=$(sha256sum "$WORK/site.tar.xz" | cut -c1-16)
rm -f .whl/pack/site-*.tar.xz
mv "$WORK/site.tar.xz" ".whl/pack/site-$digest.tar.xz"
ls -la ".whl/pack/site-$digest.tar.xz"
