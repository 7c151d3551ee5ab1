#!/usr/bin/env bash
# The checks on a lent GPU machine (no network): run from the repository root with the
# wheels the machine lacks carried in .whl/ (pydantic, platformdirs, uv, sageattention,
# xformers). Everything found goes into $OUT/h100.tar.gz and $OUT/summary.txt.
set -uo pipefail
export PYTHONUNBUFFERED=1 NO_COLOR=1
R="$OUT/h100"
mkdir -p "$R"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site $(ls .whl/*.whl | grep -v -e sageattention -e xformers) || exit 1
export PYTHONPATH=/tmp/site:$PWD/src:$PWD/tests

{ nvidia-smi; python3 -c 'import torch; print(torch.__version__, torch.version.cuda,
  torch.cuda.get_device_name(0), torch.cuda.get_device_capability(0))'; } > "$R/machine.txt" 2>&1

# Issue 3 and 5: NVML, doctor, dry run, the gpu step, step 10 over the machine's torch.
GPU_WHEELS=$PWD/.whl OUT="$R" python3 -m pytest tests/gpu/test_h100.py -o addopts='' -m gpu -q \
  -p no:cacheprovider > "$R/gpu-tests.log" 2>&1
echo "gpu tests: exit $?" >> "$OUT/summary.txt"

# Issue 7: launch --print-env with the machine's torch (DIR/venv is the machine's venv).
rm -rf /tmp/h100 && mkdir -p /tmp/h100/ComfyUI
ln -s "$(python3 -c 'import sys; print(sys.prefix)')" /tmp/h100/venv
python3 -c 'from support.comfy_repo import MAIN_PY; print(MAIN_PY)' > /tmp/h100/ComfyUI/main.py
python3 -m installer launch /tmp/h100 --print-env > "$R/launch-print-env.txt" 2>&1
python3 -m installer launch /tmp/h100 --print-env --json > "$R/launch-print-env.json" 2>&1
echo "launch --print-env: exit $?" >> "$OUT/summary.txt"

# Issue 11: the benchmark over the machine's torch with sageattention 1.0.6 (PyPI, Triton).
python3 -m venv --system-site-packages --without-pip /tmp/bench-venv || exit 1
SP=$(/tmp/bench-venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
python3 -c 'import site; print("\n".join(site.getsitepackages()))' > "$SP/machine-torch.pth"
python3 -m pip install -q --no-index --no-deps --target "$SP" .whl/sageattention-1.0.6-*.whl
mkdir -p /tmp/bench-dir && ln -sfn /tmp/bench-venv /tmp/bench-dir/venv
python3 -m installer benchmark /tmp/bench-dir --json > "$R/benchmark.json" \
  2> "$R/benchmark-stderr.txt"
echo "benchmark: exit $?" >> "$OUT/summary.txt"
COLUMNS=100 python3 -m installer benchmark /tmp/bench-dir --compare \
  > "$R/benchmark-compare-stdout.txt" 2> "$R/benchmark-compare.txt"
echo "benchmark --compare: exit $?" >> "$OUT/summary.txt"

tar -czf "$OUT/h100.tar.gz" -C "$OUT" h100 && rm -rf "$R"
cat "$OUT/summary.txt"
