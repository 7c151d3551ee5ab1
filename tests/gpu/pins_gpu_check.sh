#!/usr/bin/env bash
# Issue 17's GPU check, on the lent GPU machine (no network), from the repository root:
# ComfyUI v0.33.0 (the fixture bundle, carried in .device/) over the machine's own
# torch 2.11.0+cu130, started by `comfy-install launch` on the GPU; /object_info must
# answer, and comfy-kitchen's cuda back end must report available (as comfy-install's
# own probe, `doctor` and ComfyUI's start-up log see it).
#
# Needs: ComfyUI's requirements and comfy-install's dependencies in /tmp/site (SITE=...),
# staged here with bench/gpu/stage_wheels.py and installed there, one call per batch, by
# bench/gpu/install_staged.sh (branch gpu-bench); a batch carried in this call is installed
# first. The install DIR's venv is the machine's Python (DIR/venv -> sys.prefix), as in
# tests/gpu/device_run.sh. Writes $OUT/summary.json (each check, passed or not) and the
# evidence beside it. Exit 0 only when every check passed.
set -uo pipefail
export PYTHONUNBUFFERED=1 NO_COLOR=1
OUT=${OUT:-/tmp/pins-gpu-out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/pins-gpu.log") 2>&1
BUNDLE=${COMFYUI_BUNDLE:-.device/comfyui-v0.33.0.bundle}
SITE=${SITE:-/tmp/site}
DIR=${PINS_DIR:-/tmp/pins-gpu}
PORT=${PORT:-8199}

if compgen -G ".whl/b*/*.whl" > /dev/null; then bash bench/gpu/install_staged.sh || exit 1; fi
[ -d "$SITE" ] || { echo "no $SITE: stage the wheels with bench/gpu/install_staged.sh first"; exit 1; }
[ -f "$BUNDLE" ] || { echo "no ComfyUI bundle at $BUNDLE (carry .device/)"; exit 1; }
export PYTHONPATH=$SITE:$PWD/src

{ nvidia-smi; python3 -c 'import sys, torch, triton; print(sys.version.split()[0], sys.prefix,
  torch.__version__, torch.version.cuda, triton.__version__, torch.cuda.get_device_name(0),
  torch.cuda.get_device_capability(0))'; python3 -m pip list 2>/dev/null | grep -i -E \
  'kitchen|aimdo|av |transformers|aiohttp'; } > "$OUT/machine.txt" 2>&1

# The install DIR: ComfyUI at the bundle's v0.33.0 and the machine's Python as its venv.
python3 -m installer stop "$DIR" > /dev/null 2>&1
rm -rf "$DIR" && mkdir -p "$DIR"
git clone -q "$BUNDLE" "$DIR/ComfyUI" || exit 1
git -C "$DIR/ComfyUI" checkout -q v0.33.0 || exit 1
mkdir -p "$DIR/ComfyUI/custom_nodes"  # what the comfyui step does: v0.33.0 lists it at start
ln -s "$(python3 -c 'import sys; print(sys.prefix)')" "$DIR/venv"

# comfy-kitchen's back ends as comfy-install asks the venv (step 10, verify and doctor).
python3 - "$DIR" > "$OUT/kitchen.json" <<'PY'
import json, sys
from pathlib import Path
from installer.edges.kitchen import probe_kitchen
from installer.edges.probe import layout
report = probe_kitchen(layout(Path(sys.argv[1]), "linux")["venv_python"])
print(json.dumps(report.as_dict(), indent=2))
PY
python3 -m installer doctor "$DIR" --json > "$OUT/doctor.json" 2> "$OUT/doctor-stderr.txt"
python3 -m installer install "$DIR" --dry-run --json > "$OUT/dry-run.json" 2> "$OUT/dry-run-stderr.txt"

# ComfyUI through `comfy-install launch` on the GPU (no --cpu), then /object_info.
START=$SECONDS
python3 -m installer launch "$DIR" --listen 127.0.0.1 --port "$PORT" --background --json \
  > "$OUT/launch.json" 2> "$OUT/launch-stderr.txt"
LAUNCH_RC=$?
echo "launch: exit $LAUNCH_RC after $((SECONDS - START)) s"
python3 - "$PORT" > "$OUT/object_info.json" <<'PY'
import json, sys, urllib.request
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/object_info", timeout=60) as r:
        nodes = json.loads(r.read())
        print(json.dumps({"status": r.status, "nodes": len(nodes),
                          "KSampler": "KSampler" in nodes}))
except Exception as exc:
    print(json.dumps({"status": None, "error": f"{type(exc).__name__}: {exc}"}))
PY
LOG=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["data"].get("log",""))' \
  "$OUT/launch.json" 2>/dev/null)
[ -n "$LOG" ] && [ -f "$LOG" ] && cp "$LOG" "$OUT/comfyui.log"
python3 -m installer stop "$DIR" > "$OUT/stop.txt" 2>&1

python3 - "$OUT" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
def load(name):
    try:
        return json.loads((out / name).read_text())
    except Exception as exc:
        return {"error": f"{name}: {exc}"}
kitchen, doctor, info = load("kitchen.json"), load("doctor.json"), load("object_info.json")
launch, plan = load("launch.json"), load("dry-run.json")
log = (out / "comfyui.log").read_text(errors="replace") if (out / "comfyui.log").exists() else ""
ck = [c for c in doctor.get("data", {}).get("checks", []) if c.get("name") == "comfy-kitchen"]
cuda_line = [l.strip() for l in log.splitlines() if "comfy_kitchen backend cuda" in l]
checks = {
    "launch exit 0": launch.get("exit_code") == 0,
    "/object_info answers 200 with KSampler": info.get("status") == 200 and info.get("KSampler"),
    "probe: comfy-kitchen cuda available": kitchen.get("backends", {}).get("cuda", {}).get("available") is True,
    "probe: ComfyUI uses it (torch CUDA 13)": not kitchen.get("comfyui_notes") or all(
        "cuda back end off" not in n for n in kitchen["comfyui_notes"]),
    "doctor: comfy-kitchen check ok": bool(ck) and ck[0]["status"] == "ok",
    "ComfyUI log: cuda back end available": any("'available': True" in l for l in cuda_line),
    "plan: torch cu130, no minor-version compat": plan.get("data", {}).get("torch", {}).get("variant") == "cu130"
        and plan["data"]["torch"].get("minor_version_compat") is None,
}
summary = {
    "passed": all(checks.values()),
    "checks": checks,
    "kitchen": kitchen.get("summary"),
    "doctor_comfy_kitchen": ck[0] if ck else None,
    "comfyui_cuda_backend_line": cuda_line[:1],
    "object_info": info,
    "seconds_to_ready": launch.get("data", {}).get("seconds_to_ready"),
    "xformers_plan": [o["reason"] for o in plan.get("data", {}).get("optimizations", []) if o["name"] == "xformers"],
}
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
print(json.dumps(summary, indent=2))
sys.exit(0 if summary["passed"] else 1)
PY
