"""`tune --workflow`'s executor against a ComfyUI stand-in: a real process that speaks the API.

The stand-in is a `main.py` of the tests' own (standard library) that listens on the port it
is given and answers `/object_info`, `/prompt`, `/history/{id}` and `/view` in ComfyUI's shapes;
it "runs" a prompt by sleeping (longer with `--disable-dynamic-vram`) and fails it in execution
with `--fast autotune`. So the real `comfy-install tune` starts and stops real processes on real
ports through `launch`'s code, and the test checks what it records and decides: a slower lever
and a failing one stay off with their figures, a spent budget skips variants, a refused workflow
in stock writes nothing. No torch, no ComfyUI, a few seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from installer.plan.levers import parse_levers
from support.cli import BASE_PYTHON, cli_path

STANDIN = r"""
import argparse, json, os, sys, time, uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int)
parser.add_argument("--output-directory")
parser.add_argument("--fast", nargs="*")
parser.add_argument("--disable-dynamic-vram", action="store_true")
args, _ = parser.parse_known_args()
if os.environ.get("STANDIN_EXIT"):
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
        time.sleep(0.3 if args.disable_dynamic_vram else 0.05)
        if args.fast and "autotune" in args.fast:
            history[key] = {"outputs": {}, "status": {"status_str": "error", "messages": [
                ["execution_error", {"node_id": "3", "node_type": "KSampler",
                 "exception_type": "RuntimeError", "exception_message": "autotune broke it"}]]}}
        else:
            name = f"out-{prompt['3']['inputs']['seed']}.png"
            with open(os.path.join(out, name), "wb") as handle:
                handle.write(b"not really a png")
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
