"""`tune --workflow`'s executor against a ComfyUI stand-in: a real process that speaks the API.

The stand-in is a `main.py` of the tests' own (standard library) that listens on the port it
is given and answers `/object_info`, `/prompt`, `/history/{id}` and `/view` in ComfyUI's shapes;
it "runs" a prompt by sleeping (longer with `--disable-dynamic-vram`, shorter with `--highvram` or
`--fast fp16_accumulation`, much longer with both) and fails it in execution with `--fast
autotune`; its images are real PNGs that depend on the seed alone. So the real `comfy-install
tune` starts and stops real processes on real ports through `launch`'s code, and the test checks
what it records and decides: a slower lever and a failing one stay off with their figures, a
faster one goes on after the launch with it was measured against stock (the second phase), two
levers each faster alone but slower together both stay off, a spent budget skips variants, a
refused workflow in stock writes nothing. `benchmark --comfyui`'s timing starts and stops the
same stand-in. No torch, no ComfyUI, a few seconds (the tests that compare images use a venv
with numpy and Pillow from the package registry).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from installer.edges.environment import find_uv_binary
from installer.plan.levers import parse_levers
from support.cli import BASE_PYTHON, cli_path

STANDIN = r"""
import argparse, json, os, struct, sys, time, uuid, zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int)
parser.add_argument("--output-directory")
parser.add_argument("--fast", nargs="*")
parser.add_argument("--disable-dynamic-vram", action="store_true")
parser.add_argument("--highvram", action="store_true")
args, _ = parser.parse_known_args()
fast = set(args.fast or ())
if "fp16_accumulation" in fast and args.highvram:
    seconds = 0.6  # each lever faster alone, the two together slower than stock
elif "fp16_accumulation" in fast or args.highvram:
    seconds = 0.02
elif args.disable_dynamic_vram:
    seconds = 0.4
else:
    seconds = 0.15


def png(seed):
    # An 8x8 RGB PNG whose pixels depend on the seed alone (standard library only).
    rows = b"".join(b"\x00" + bytes((seed * 37 + i * 11 + y * 7) % 256 for i in range(24))
                    for y in range(8))
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))

if os.environ.get("STANDIN_EXIT") in ("1", *sys.argv):  # all starts, or those with this flag
    print("stand-in: no GPU driver found", flush=True)
    sys.exit(3)
out = args.output_directory
os.makedirs(out, exist_ok=True)
history = {}

class Handler(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def send(self, code, body, kind="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/object_info":
            return self.send(200, {"KSampler": {}})
        if url.path.startswith("/history/"):
            key = url.path.rsplit("/", 1)[1]
            return self.send(200, {key: history[key]} if key in history else {})
        if url.path == "/view":
            name = parse_qs(url.query)["filename"][0]
            with open(os.path.join(out, name), "rb") as handle:
                return self.send(200, handle.read(), "image/png")
        self.send(404, {})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["prompt"]
        if any(node["class_type"] == "Broken" for node in prompt.values()):
            return self.send(400, {"error": {"message": "Prompt outputs failed validation"},
                "node_errors": {"2": {"class_type": "Broken", "errors": [
                    {"message": "Value 5.0 bigger than max of 1.0", "details": "strength"}]}}})
        key = uuid.uuid4().hex
        time.sleep(seconds)
        if "autotune" in fast:
            history[key] = {"outputs": {}, "status": {"status_str": "error", "messages": [
                ["execution_error", {"node_id": "3", "node_type": "KSampler",
                 "exception_type": "RuntimeError", "exception_message": "autotune broke it"}]]}}
        else:
            name = f"out-{prompt['3']['inputs']['seed']}.png"
            with open(os.path.join(out, name), "wb") as handle:
                handle.write(png(prompt["3"]["inputs"]["seed"]))
            history[key] = {"status": {"status_str": "success", "messages": []}, "outputs": {
                "9": {"images": [{"filename": name, "subfolder": "", "type": "output"}]}}}
        self.send(200, {"prompt_id": key, "number": 1, "node_errors": {}})

ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()
"""
WORKFLOW = {
    "3": {"class_type": "KSampler", "inputs": {"seed": 5, "steps": 2}},
    "9": {"class_type": "SaveImage", "inputs": {"images": ["3", 0]}},
}


@pytest.fixture
def install(tmp_path: Path) -> Path:
    target = tmp_path / "inst"
    (target / "venv" / "bin").mkdir(parents=True)
    (target / "venv" / "bin" / "python").symlink_to(BASE_PYTHON)
    (target / "ComfyUI").mkdir()
    (target / "ComfyUI" / "main.py").write_text(STANDIN)
    return target


@pytest.fixture(scope="module")
def imaging_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with numpy and Pillow (what ComfyUI's venv has), for the output comparison."""
    uv = find_uv_binary()
    if uv is None:
        pytest.fail("uv is needed: it is a development dependency of this project")
    venv = tmp_path_factory.mktemp("imaging") / "venv"
    for command in (
        [uv, "venv", "--quiet", "--python", BASE_PYTHON, str(venv)],
        [uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), "numpy",
         "pillow"],
    ):  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
    return venv


@pytest.fixture
def install_comparing(install: Path, imaging_venv: Path) -> Path:
    """The stand-in install whose venv can compare images (numpy and Pillow)."""
    shutil.rmtree(install / "venv")
    (install / "venv").symlink_to(imaging_venv, target_is_directory=True)
    return install


def tune(
    install: Path, workflow: dict[str, Any], *args: str, **extra: str
) -> subprocess.CompletedProcess[str]:
    path = install.parent / "wf.json"
    path.write_text(json.dumps(workflow))
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMFY")}
    env |= {"NO_COLOR": "1", **extra}
    return subprocess.run(
        [cli_path(), "tune", str(install), "--workflow-only", "--workflow", str(path), *args],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_levers_that_are_slower_or_fail_stay_off_with_their_figures(install: Path) -> None:
    done = tune(install, WORKFLOW, "--levers", "nodyn,autotune", "--runs", "2", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)["data"]["workflow_check"]
    variants = {v["variant"]: v for v in result["result"]["workflows"][0]["variants"]}
    assert [r["seed"] for r in variants["tuned"]["runs"]] == [5, 6, 7]
    assert variants["tuned+nodyn"]["warm_s"] > variants["tuned"]["warm_s"]
    failed = variants["tuned+autotune"]
    assert failed["status"] == "failed"
    assert failed["reason"] == "node 3 (KSampler): RuntimeError: autotune broke it"
    # The images are no PNGs: the venv's comparison cannot decode them and says so.
    assert "reason" in variants["tuned"]["distance"]
    document = json.loads((install / ".comfy-install" / "levers.json").read_text())
    records = parse_levers(document, "cpu")
    levers = {lever.name: lever for lever in records.levers}
    assert levers["autotune"].figures[0].error == failed["reason"]
    assert records.tuned_vs_stock is not None
    [end] = records.tuned_vs_stock.figures
    assert end.distance_ok is None and end.tuned_s == round(variants["tuned"]["warm_s"], 4)
    launch = {t["name"]: t for t in result["launch"]}
    assert launch["lever-autotune"]["status"] == "off"
    assert launch["lever-autotune"]["reason"].startswith("ComfyUI failed with it on wf")
    assert launch["lever-nodyn"]["status"] == "off"
    assert launch["lever-nodyn"]["reason"].startswith("output not compared with stock's on wf")
    assert not (install / ".comfy-install" / "comfyui.pid").exists()


def test_a_spent_budget_skips_the_variants_after_stock(install: Path) -> None:
    done = tune(install, WORKFLOW, "--levers", "nodyn", "--runs", "1",
                "--workflow-budget", "0.001", "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)["data"]["workflow_check"]["result"]
    variants = {v["variant"]: v for v in result["workflows"][0]["variants"]}
    assert variants["stock"]["status"] == "ok"
    assert {variants[n]["status"] for n in ("tuned", "tuned+nodyn")} == {"skipped"}
    assert "the budget (0.001 s) would run out" in variants["tuned"]["reason"]
    record = json.loads((install / ".comfy-install" / "levers.json").read_text())["gpus"]["cpu"]
    assert record["levers"] == {} and record["tuned_vs_stock"]["workflows"] == {}


def test_a_workflow_refused_in_stock_names_the_node_and_writes_nothing(install: Path) -> None:
    broken = {**WORKFLOW, "2": {"class_type": "Broken", "inputs": {"strength": 5.0}}}
    done = tune(install, broken, "--levers", "", "--runs", "1")
    assert done.returncode == 1
    text = " ".join(done.stderr.split())
    assert (
        "failed in stock ComfyUI (plain main.py) at node 2 (Broken): Value 5.0 bigger than max "
        "of 1.0 (strength). Nothing was written." in text
    )
    assert not (install / ".comfy-install" / "levers.json").exists()
    # The dry run starts nothing and shows each variant's command.
    done = tune(install, WORKFLOW, "--levers", "nodyn", "--dry-run", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    commands = json.loads(done.stdout)["data"]["workflow_check"]["commands"]
    assert list(commands) == ["stock", "tuned", "tuned+nodyn"]
    assert "--disable-dynamic-vram" in commands["tuned+nodyn"]
    assert not (install / ".comfy-install" / "levers.json").exists()


def test_a_stock_comfyui_that_does_not_start_stops_the_check(install: Path) -> None:
    done = tune(install, WORKFLOW, "--levers", "", "--runs", "1", STANDIN_EXIT="1")
    assert done.returncode == 1
    text = " ".join(done.stderr.split())
    assert "Stock ComfyUI (plain main.py) did not start: ComfyUI exited" in text
    assert "stand-in: no GPU driver found" in text and "Nothing was written." in text
    assert not (install / ".comfy-install" / "levers.json").exists()
    assert not (install / ".comfy-install" / "comfyui.pid").exists()


def test_a_faster_lever_goes_on_after_the_launch_with_it_was_measured_against_stock(
    install_comparing: Path,
) -> None:
    done = tune(install_comparing, WORKFLOW, "--levers", "fp16acc", "--runs", "2", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    check = json.loads(done.stdout)["data"]["workflow_check"]
    variants = {v["variant"]: v for v in check["result"]["workflows"][0]["variants"]}
    # Stock, tuned, the lever, then the second phase: the launch as decided, lever on.
    assert list(variants) == ["stock", "tuned", "tuned+fp16acc", "launch"]
    assert "--fast fp16_accumulation" in variants["launch"]["command"]
    assert "--fast" not in variants["tuned"]["command"]
    assert variants["launch"]["distance"]["ok"] is True
    assert variants["launch"]["warm_s"] < variants["stock"]["warm_s"]
    assert check["result"]["launch_levers"] == ["fp16acc"]
    records = parse_levers(
        json.loads((install_comparing / ".comfy-install" / "levers.json").read_text()), "cpu"
    )
    assert records.tuned_vs_stock is not None
    assert records.tuned_vs_stock.launch_levers == ("fp16acc",)
    [end] = records.tuned_vs_stock.figures
    assert end.launch_s == round(variants["launch"]["warm_s"], 4)
    assert end.launch_distance_ok is True
    launch = {t["name"]: t for t in check["launch"]}
    assert launch["lever-fp16acc"]["status"] == "on"
    assert "end to end the launch as decided" in launch["lever-fp16acc"]["reason"]


def test_levers_faster_alone_but_slower_together_than_stock_stay_off(
    install_comparing: Path,
) -> None:
    done = tune(install_comparing, WORKFLOW, "--levers", "fp16acc,highvram", "--runs", "2",
                "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    check = json.loads(done.stdout)["data"]["workflow_check"]
    variants = {v["variant"]: v for v in check["result"]["workflows"][0]["variants"]}
    for alone in ("tuned+fp16acc", "tuned+highvram"):
        assert variants[alone]["warm_s"] < variants["tuned"]["warm_s"]
    command = variants["launch"]["command"]
    assert "--fast fp16_accumulation" in command and "--highvram" in command
    assert variants["launch"]["warm_s"] > variants["stock"]["warm_s"]
    launch = {t["name"]: t for t in check["launch"]}
    for name in ("lever-fp16acc", "lever-highvram"):
        assert launch[name]["status"] == "off"
        assert launch[name]["reason"].startswith(
            "the launch with fp16acc, highvram measured slower than stock (or wrong) end to end:"
        )
    # What `launch` now starts: neither lever.
    shown = subprocess.run(
        [cli_path(), "launch", str(install_comparing), "--print-env"],
        capture_output=True, text=True, timeout=120, check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("COMFY")} | {"NO_COLOR": "1"},
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr[-2000:]
    command = next(line for line in shown.stdout.splitlines() if "main.py" in line)
    assert "--highvram" not in command and "--fast" not in command
    assert "lever-highvram: off (the launch with fp16acc, highvram measured slower" in " ".join(
        shown.stdout.split()
    )


def test_benchmark_comfyui_times_each_variant_and_stops_it(
    install: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`benchmark --comfyui`'s timing starts and stops the stand-in through launch's code too."""
    from installer.benchmark.comfyui import time_comfyui
    from installer.core.log import InstallerLogger

    for key in [k for k in os.environ if k.startswith("COMFY")]:
        monkeypatch.delenv(key)
    own = tmp_path / "benchmark.log"
    log = InstallerLogger(verbosity=-1, stream=io.StringIO(), log_file=own)
    variants = [("sdpa", ["--use-pytorch-cross-attention"]), ("sage", ["--use-sage-attention"])]
    timings = time_comfyui(install, variants, WORKFLOW, log, startup_timeout=60)
    assert [t.variant for t in timings] == ["sdpa", "sage"]
    for timing in timings:
        assert timing.error is None, timing.error
        assert timing.startup_s is not None and timing.workflow_s is not None
        assert timing.workflow_warm_s is not None
    # Each ComfyUI was stopped, and the lines between the launches went to the caller's log.
    assert not (install / ".comfy-install" / "comfyui.pid").exists()
    assert log.log_path == own
    text = own.read_text()
    assert text.count("(first run)") == 2 and text.count(") stopped.") == 2, text

    # A ComfyUI that does not start: its error is kept, nothing is stopped, the log is back.
    monkeypatch.setenv("STANDIN_EXIT", "1")
    [failed] = time_comfyui(install, variants[:1], None, log, startup_timeout=60)
    assert failed.startup_s is None and failed.error and "exited" in failed.error, failed
    assert log.log_path == own
    assert own.read_text().count(") stopped.") == 2
    assert "not running" not in own.read_text()
    # The warning that it did not start is the benchmark's, in its log, not the launcher's.
    warning = f"WARN  ComfyUI (sdpa): {failed.error.splitlines()[0]}"
    assert warning in own.read_text()
    launcher_logs = list((install / ".comfy-install" / "logs").glob("comfyui-*.log"))
    assert launcher_logs and not any("ComfyUI (sdpa):" in p.read_text() for p in launcher_logs)


def test_a_lever_whose_comfyui_does_not_start_is_warned_of_in_tunes_log(install: Path) -> None:
    """The variant's warning goes to tune's own log, not to the log of the launch that failed."""
    done = tune(install, WORKFLOW, "--levers", "nodyn", "--runs", "1", "--json",
                STANDIN_EXIT="--disable-dynamic-vram")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)["data"]["workflow_check"]["result"]
    variants = {v["variant"]: v for v in result["workflows"][0]["variants"]}
    assert variants["tuned"]["status"] == "ok"
    failed = variants["tuned+nodyn"]
    assert failed["status"] == "failed" and "ComfyUI did not start" in failed["reason"]
    logs = install / ".comfy-install" / "logs"
    [tune_log] = logs.glob("tune-*.log")
    assert "wf: tuned+nodyn failed: ComfyUI did not start" in tune_log.read_text()
    launcher_logs = list(logs.glob("comfyui-*.log"))
    assert any("stand-in: no GPU driver found" in p.read_text() for p in launcher_logs)
    assert not any("tuned+nodyn failed" in p.read_text() for p in launcher_logs)
