"""A local git repository shaped like ComfyUI, built by the tests.

Its `main.py` parses ComfyUI-like arguments, writes its arguments and
environment to `$COMFY_FIXTURE_ECHO` when that is set, and serves
`GET /object_info` on the port it is given, so install, verify and launch can
be tested against a real process without the real ComfyUI.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

MAIN_PY = r'''
"""Fixture ComfyUI: argument parsing, an echo file and an /object_info server."""
import argparse, json, os, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

parser = argparse.ArgumentParser(prog="main.py")
parser.add_argument("--listen", default="127.0.0.1", nargs="?", const="0.0.0.0")
parser.add_argument("--port", type=int, default=8188)
parser.add_argument("--cpu", action="store_true")
parser.add_argument("--use-sage-attention", action="store_true")
parser.add_argument("--quick-test-for-ci", action="store_true")
args, extra = parser.parse_known_args()

echo = os.environ.get("COMFY_FIXTURE_ECHO")
if echo:
    with open(echo, "w") as handle:
        json.dump({"argv": sys.argv[1:], "env": dict(os.environ), "extra": extra}, handle)
exit_code = os.environ.get("COMFY_FIXTURE_EXIT")
if exit_code:
    print("fixture ComfyUI: exiting early on purpose", flush=True)
    sys.exit(int(exit_code))
time.sleep(float(os.environ.get("COMFY_FIXTURE_DELAY", "0")))
import torch  # like ComfyUI: the quick test fails when torch is missing
for name in filter(None, os.environ.get("COMFY_FIXTURE_IMPORT", "").split(",")):
    __import__(name)  # modules of a fake `comfy` package a test put next to main.py
if args.quick_test_for_ci:
    print("fixture ComfyUI: nodes loaded, quick test done", flush=True)
    sys.exit(0)

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.startswith("/object_info"):
            body = json.dumps({"KSampler": {}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_response(404)
            self.end_headers()
    def log_message(self, *a):
        pass

server = ThreadingHTTPServer((args.listen, args.port), Handler)
print(f"To see the GUI go to: http://{args.listen}:{args.port}", flush=True)
try:
    server.serve_forever()
except KeyboardInterrupt:
    print("fixture ComfyUI: stopped", flush=True)
'''


def git(*args: str, cwd: Path) -> str:
    """Run git in ``cwd`` with a fixed identity; return stdout."""
    env = dict(
        os.environ,
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.invalid",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.invalid",
        GIT_CONFIG_NOSYSTEM="1",
    )
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


NO_TORCHAUDIO = "no-torchaudio"
"""The tag of the fixture ComfyUI whose requirements drop torchaudio."""


def make_comfy_repo(path: Path, requirements: list[str]) -> dict[str, str]:
    """Create the fixture ComfyUI repository with three tagged commits.

    The third, tagged `no-torchaudio` (on the branch `next`, so `master` stays at v2), is
    a newer ComfyUI whose `requirements.txt` no longer lists torchaudio, like ComfyUI
    after v0.33.

    Returns:
        ``{"v1": commit, "v2": commit, "no-torchaudio": commit}`` (v2 is HEAD of `master`).
    """
    path.mkdir(parents=True, exist_ok=True)
    git("init", "-q", "-b", "master", cwd=path)
    (path / "main.py").write_text(MAIN_PY)
    (path / "requirements.txt").write_text("\n".join(requirements) + "\n")
    (path / "comfy").mkdir(exist_ok=True)
    (path / "comfy" / "__init__.py").write_text("")
    git("add", "-A", cwd=path)
    git("commit", "-q", "-m", "fixture ComfyUI v1", cwd=path)
    git("tag", "v1", cwd=path)
    v1 = git("rev-parse", "HEAD", cwd=path)
    (path / "comfy" / "model.py").write_text("VERSION = 2\n")
    git("add", "-A", cwd=path)
    git("commit", "-q", "-m", "fixture ComfyUI v2", cwd=path)
    git("tag", "v2", cwd=path)
    v2 = git("rev-parse", "HEAD", cwd=path)
    git("checkout", "-q", "-b", "next", cwd=path)
    kept = [line for line in requirements if line.strip().lower() != "torchaudio"]
    (path / "requirements.txt").write_text("\n".join(kept) + "\n")
    (path / "comfy" / "model.py").write_text("VERSION = 3\n")
    git("add", "-A", cwd=path)
    git("commit", "-q", "-m", "fixture ComfyUI: torchaudio no longer required", cwd=path)
    git("tag", NO_TORCHAUDIO, cwd=path)
    lean = git("rev-parse", "HEAD", cwd=path)
    git("checkout", "-q", "master", cwd=path)
    return {"v1": v1, "v2": v2, NO_TORCHAUDIO: lean}
