#!/usr/bin/env python3
"""Run real ComfyUI workflows three ways and time what a user waits for.

Variants, each one ComfyUI process started fresh:

- ``stock``: ``PY main.py`` with only ``--listen``/``--port`` and
  ``--extra-model-paths-config`` (so it sees the generated models); no shim.
- ``blanket``: the same plus ``--use-sage-attention`` (what guides tell users).
- ``tuned``: ``comfy-install launch DIR --port P -- --extra-model-paths-config ...``
  (the installer decides: allocator, TF32, cuDNN, SageAttention, ...).
- ``tuned-compile``: ``tuned`` with ComfyUI's ``TorchCompileModel`` node (inductor,
  torch.compile of the whole diffusion model) in front of the sampler, inductor's and
  Triton's caches emptied first and kept in ``DIR/.comfy-install/torch-compile`` (what
  ``launch`` sets); ``tuned-compile-cached``: the same again in a new process, so its
  first run compiles from those caches; ``stock-compile``: ``stock`` with that node (no
  shim). Recompilations and graph breaks are counted from the log
  (``TORCH_LOGS=recompiles,graph_breaks``).
- ``tuned+LEVER``: ``tuned`` plus one lever (``LEVER_ARGS``: ComfyUI's ``--fast`` options
  and its VRAM modes). Any base takes levers, several joined by ``+``
  (``stock+nodyn``, ``tuned-compile+nodyn+autotune``).
  With ``--levers-out`` each lever's figure against ``tuned`` (s/step, output distance)
  is written there after every variant (the schema of ``installer.plan.levers``).
- ``tuned-levers``: plain ``launch`` with those figures copied to
  ``DIR/.comfy-install/levers.json``, where it reads them: the levers it chooses itself.
  Every other tuned variant runs with no levers.json in DIR.
- ``tuned-norouting``: ``tuned`` with the attention router off
  (``COMFY_INSTALL_ATTENTION_ROUTES=off``: launch writes no table, the shim attaches nothing
  and ComfyUI keeps its own attention) and every other tuning as ``tuned``'s: what routing
  itself adds, e.g. ``tuned+nodyn`` against ``tuned-norouting+nodyn``.

Each workflow goes through ``POST /prompt`` once cold (model load included) and
``--warm`` more times; the seed goes up by one each run so ComfyUI's cache (which
would answer an identical prompt at once) re-runs the sampler and the decode, and
keeps the loaders and text encoders cached, as in a user's second image.

Per run: wall time from the POST to the end of the prompt (websocket
``executing`` with no node), seconds per sampling step from the timestamps of the
sampler's websocket ``progress`` messages: (last - first) / steps between them
(ComfyUI sends at most one per 100 ms, so fast steps arrive in groups; the first
step, from the sampler's start, is kept apart: it carries warm-up and compilation),
peak GPU memory (``nvidia-smi --query-gpu=memory.used`` polled every 0.1 s: the
whole GPU, CUDA context and allocator cache included), and, per variant, the
attention lines of ComfyUI's log ("Using ... attention", the
shim's decisions). ``--budget`` bounds the whole run: a variant or run that
would start after it is recorded as skipped.

Output: JSON (``--out``), a Markdown table written between markers into
``--results-md`` and into ``--docs-md``. Usage: see ``--help`` and
``docs/gpu-benchmark.md``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import itertools
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import outputs  # noqa: E402 - bench/gpu/outputs.py, beside this script
import result_runs  # noqa: E402 - bench/gpu/result_runs.py

REPO = HERE.parents[1]
sys.path.insert(1, str(REPO / "src"))  # the installer's lever table, from this checkout
from installer.attention.shim.routes import ROUTES_ENV, ROUTES_OFF  # noqa: E402
from installer.plan.workflow_check import KNOWN_LEVERS  # noqa: E402

MARK_START = "<!-- gpu-workflows:start -->"
MARK_END = "<!-- gpu-workflows:end -->"
LEVER_ARGS = {name: list(lever.args) for name, lever in KNOWN_LEVERS.items()}
"""The levers `tune --workflow` knows (``installer.plan.workflow_check.KNOWN_LEVERS``: ComfyUI's
``--fast`` options, fp8 weights with fp8 matmuls, and its VRAM modes, e.g. ``nodyn`` for
``--disable-dynamic-vram``), measured one at a time (``VARIANT+NAME``, several joined by ``+``)."""
LEVERS = {f"tuned+{name}": arguments for name, arguments in LEVER_ARGS.items()}
"""The tuned launch plus one lever: the variants whose figures go to levers.json."""
COMPILED = ("tuned-compile", "tuned-compile-cached", "stock-compile")
BASES = ("stock", "blanket", "tuned", *COMPILED, "tuned-levers", "tuned-norouting")
COLD_COMPILES = ("tuned-compile", "stock-compile")
"""Compiled variants that start from empty inductor and Triton caches."""
VARIANTS = (*BASES, *LEVERS)


def variant_parts(variant: str) -> tuple[str, list[str]]:
    """Split ``BASE+LEVER+LEVER`` into the base variant and the levers' ComfyUI arguments.

    Raises:
        SystemExit: an unknown base or lever.
    """
    base, *levers = variant.split("+")
    if base not in BASES:
        raise SystemExit(f"unknown variant {variant!r}: a base of {', '.join(BASES)}")
    arguments: list[str] = []
    fast: list[str] = []
    for lever in levers:
        if lever not in LEVER_ARGS:
            raise SystemExit(f"unknown lever {lever!r} in {variant!r}: {', '.join(LEVER_ARGS)}")
        lever_args = LEVER_ARGS[lever]
        if lever_args[0] == "--fast":  # one --fast with every value (a second replaces the first)
            values = [a for a in lever_args[1:] if not a.startswith("-")]
            fast += values
            arguments += [a for a in lever_args[1:] if a.startswith("-")]
        else:
            arguments += lever_args
    return base, (["--fast", *fast] if fast else []) + arguments


ATTENTION_LINE = re.compile(r"attention|sage|xformers|flash|comfy.kitchen|comfy_kitchen", re.I)


# --------------------------------------------------------------------------- websocket


class WebSocket:
    """The least websocket client ComfyUI's ``/ws`` needs (RFC 6455, text frames)."""

    def __init__(self, host: str, port: int, path: str, timeout: float = 10) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("websocket handshake: connection closed")
            head += chunk
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status:
            raise ConnectionError(f"websocket handshake refused: {status!r}")
        self.buffer = head.split(b"\r\n\r\n", 1)[1]
        self.sock.settimeout(None)

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("websocket closed")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        header = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def recv(self) -> tuple[int, bytes]:
        """The next whole message: (opcode, payload); answers pings itself."""
        parts: list[bytes] = []
        first_opcode = None
        while True:
            b0, b1 = self._read(2)
            fin, opcode = b0 & 0x80, b0 & 0x0F
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack(">H", self._read(2))
            elif n == 127:
                (n,) = struct.unpack(">Q", self._read(8))
            mask = self._read(4) if b1 & 0x80 else None
            payload = self._read(n)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode == 9:
                self._send(10, payload)
                continue
            if opcode == 8:
                raise ConnectionError("websocket closed by the server")
            if opcode in (1, 2):
                first_opcode = opcode
            parts.append(payload)
            if fin:
                return first_opcode or opcode, b"".join(parts)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._send(8, b"")
        self.sock.close()


class Listener(threading.Thread):
    """Collects ComfyUI's websocket messages with their arrival times."""

    def __init__(self, port: int, client_id: str) -> None:
        super().__init__(daemon=True)
        self.ws = WebSocket("127.0.0.1", port, f"/ws?clientId={client_id}")
        self.messages: list[tuple[float, dict[str, Any]]] = []
        self.cond = threading.Condition()
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            while True:
                opcode, payload = self.ws.recv()
                if opcode != 1:
                    continue
                message = json.loads(payload)
                with self.cond:
                    self.messages.append((time.monotonic(), message))
                    self.cond.notify_all()
        except (OSError, ValueError) as exc:
            with self.cond:
                self.error = exc
                self.cond.notify_all()

    def wait_done(self, prompt_id: str, since: int, timeout: float) -> tuple[str, int]:
        """Wait for the prompt's end: ('ok'|'error'|'timeout', index of the end message)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for index in range(since, len(self.messages)):
                    _, m = self.messages[index]
                    data = m.get("data") or {}
                    if data.get("prompt_id") != prompt_id:
                        continue
                    if m.get("type") == "execution_error":
                        return "error", index
                    if m.get("type") == "executing" and data.get("node") is None:
                        return "ok", index
                    if m.get("type") == "execution_success":
                        return "ok", index
                left = deadline - time.monotonic()
                if left <= 0 or self.error is not None:
                    return "timeout", len(self.messages)
                self.cond.wait(min(left, 1.0))


# --------------------------------------------------------------------------- GPU memory


class MemoryPoller(threading.Thread):
    """Polls nvidia-smi's memory.used (MiB) and utilization.gpu (%) of GPU 0 until stopped.

    Keeps the memory peak and every utilisation sample: the share of time a kernel ran,
    which tells a GPU-bound run (near 100%) from one waiting on Python (well below).
    """

    def __init__(self, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.peak: int | None = None
        self.utilization: list[int] = []
        self.stop_event = threading.Event()

    @staticmethod
    def read() -> tuple[int, int] | None:
        try:
            done = subprocess.run(
                [
                    "nvidia-smi",
                    "--query-gpu=memory.used,utilization.gpu",
                    "--format=csv,noheader,nounits",
                    "-i",
                    "0",
                ],
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        try:
            memory, busy = done.stdout.strip().splitlines()[0].split(",")
            return int(memory), int(busy)
        except (ValueError, IndexError):
            return None

    def run(self) -> None:
        while not self.stop_event.is_set():
            value = self.read()
            if value is not None:
                self.peak = value[0] if self.peak is None else max(self.peak, value[0])
                self.utilization.append(value[1])
            self.stop_event.wait(self.interval)

    def finish(self) -> int | None:
        self.stop_event.set()
        self.join(timeout=10)
        return self.peak


# --------------------------------------------------------------------------- ComfyUI process


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def http_json(url: str, body: dict[str, Any] | None = None, timeout: float = 30) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


class Server:
    """One ComfyUI process of one variant, its log in a file."""

    def __init__(self, args: argparse.Namespace, variant: str, log_path: Path) -> None:
        self.variant = variant
        self.port = free_port()
        self.log_path = log_path
        comfy_args = ["--extra-model-paths-config", str(args.paths_yaml), *args.comfy_arg]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        base, lever_args = variant_parts(variant)
        if base in ("stock", "blanket", "stock-compile"):
            command = [args.python, "main.py", "--listen", "127.0.0.1", "--port", str(self.port)]
            if base == "blanket":
                command.append("--use-sage-attention")
            command += comfy_args + lever_args
            cwd = args.comfyui
        else:
            command = [
                *args.installer,
                "launch",
                str(args.install_dir),
                "--port",
                str(self.port),
                "--timeout",
                "600",
                "--",
                *comfy_args,
            ]
            command += lever_args
            if base == "tuned-norouting":
                env[ROUTES_ENV] = ROUTES_OFF[0]  # the router off, nothing else
            if base in COMPILED:
                # Every recompilation goes to the log; inductor's and Triton's caches stay
                # in DIR, where launch puts them, so a second start compiles from them.
                env["TORCH_LOGS"] = "recompiles,graph_breaks"
                env["TORCHDYNAMO_VERBOSE"] = "1"
                cache = args.install_dir / ".comfy-install" / "torch-compile"
                env["TORCHINDUCTOR_CACHE_DIR"] = str(cache / "inductor")
                env["TRITON_CACHE_DIR"] = str(cache / "triton")
            cwd = REPO
        self.command = command
        self.start = time.monotonic()
        self.log_file = log_path.open("wb")
        self.log_file.write(("$ " + shlex.join(command) + "\n").encode())
        self.log_file.flush()
        self.process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float) -> float:
        deadline = self.start + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.variant}: exited with {self.process.returncode}")
            try:
                http_json(f"http://127.0.0.1:{self.port}/object_info", timeout=5)
                return time.monotonic() - self.start
            except (OSError, ValueError):
                time.sleep(0.25)
        raise RuntimeError(f"{self.variant}: /object_info did not answer within {timeout} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            for sig, wait in ((signal.SIGINT, 20), (signal.SIGTERM, 10), (signal.SIGKILL, 5)):
                try:
                    os.killpg(self.process.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.process.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        self.log_file.close()

    def attention_lines(self) -> list[str]:
        text = self.log_path.read_text(errors="replace")
        text = re.sub(r"\x1b\[[0-9;]*m", "", text)  # colour codes
        lines = [line.strip() for line in re.split(r"[\r\n]+", text)]
        picked = [line for line in lines if ATTENTION_LINE.search(line) and len(line) < 300]
        seen: list[str] = []
        for line in picked:
            if line not in seen:
                seen.append(line)
        return seen[:12]


def attention_backend(lines: list[str]) -> str:
    """The backend ComfyUI says it uses ("Using sage attention" and the like)."""
    for line in lines:
        found = re.search(r"Using ([\w .-]+?) attention", line)
        if found:
            return found.group(1).strip()
    return "unknown"


# --------------------------------------------------------------------------- one run


def sampler_nodes(workflow: dict[str, Any]) -> set[str]:
    return {k for k, v in workflow.items() if v["class_type"] in ("KSampler", "KSamplerAdvanced")}


def with_seed(workflow: dict[str, Any], seed: int) -> dict[str, Any]:
    out = copy.deepcopy(workflow)
    for node in out.values():
        if node["class_type"] == "KSampler":
            node["inputs"]["seed"] = seed
        elif node["class_type"] == "KSamplerAdvanced":
            node["inputs"]["noise_seed"] = seed
    return out


def run_prompt(
    port: int,
    listener: Listener,
    workflow: dict[str, Any],
    client_id: str,
    timeout: float,
    keep: Path | None = None,
) -> dict[str, Any]:
    samplers = sampler_nodes(workflow)
    poller = MemoryPoller()
    poller.start()
    since = len(listener.messages)
    start = time.monotonic()
    answer = http_json(
        f"http://127.0.0.1:{port}/prompt", {"prompt": workflow, "client_id": client_id}
    )
    prompt_id = answer["prompt_id"]
    status, end_index = listener.wait_done(prompt_id, since, timeout)
    wall = time.monotonic() - start
    peak = poller.finish()
    messages = listener.messages[since : end_index + 1]
    sampler_start = None
    progress: list[tuple[float, int, int]] = []
    for when, m in messages:
        data = m.get("data") or {}
        if data.get("prompt_id") not in (None, prompt_id):
            continue
        if m.get("type") == "executing" and data.get("node") in samplers and sampler_start is None:
            sampler_start = when
        if m.get("type") == "progress" and str(data.get("node")) in samplers:
            progress.append((when, int(data["value"]), int(data["max"])))
    record: dict[str, Any] = {"status": status, "wall_s": round(wall, 3), "peak_gpu_mib": peak}
    if poller.utilization:  # the whole prompt's samples (sampler, decode, encode)
        record["gpu_busy_pct"] = round(statistics.mean(poller.utilization), 1)
    if keep is not None and status == "ok":
        try:
            record["output"] = outputs.keep_images(outputs.fetch_images(port, prompt_id), keep)
        except (OSError, ValueError, KeyError) as exc:
            record["output"] = {"kept": None, "reason": f"{type(exc).__name__}: {exc}"}
    if status == "error":
        record["error"] = result_runs.short_error(
            next((m.get("data") for _, m in messages if m.get("type") == "execution_error"), None)
        )
    if progress:
        # The first arrival of each step's value; ComfyUI may repeat a value or, on
        # fast steps, skip some: an interval is divided by the steps it spans.
        first: dict[int, float] = {}
        for when, value, _ in progress:
            first.setdefault(value, when)
        values = sorted(first)
        pairs = [(a, b) for a, b in itertools.pairwise(values) if b > a]
        intervals = [(first[b] - first[a]) / (b - a) for a, b in pairs]
        record["steps"] = progress[-1][2]
        if intervals:
            record["step_s_median"] = round(statistics.median(intervals), 4)
            span = values[-1] - values[0]
            record["step_s_mean"] = round((first[values[-1]] - first[values[0]]) / span, 4)
        if sampler_start is not None:
            record["first_step_s"] = round(progress[0][0] - sampler_start, 4)
            record["sampling_s"] = round(progress[-1][0] - sampler_start, 3)
    return record


# --------------------------------------------------------------------------- summary


def spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "median": round(statistics.median(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in runs if r.get("status") == "ok"]
    cold = next((r for r in ok if r.get("kind") == "cold"), None)
    warm = [r for r in ok if r.get("kind") == "warm"]
    peaks = [r["peak_gpu_mib"] for r in ok if r.get("peak_gpu_mib") is not None]
    return {
        "cold_wall_s": cold["wall_s"] if cold else None,
        "warm_wall_s": spread([r["wall_s"] for r in warm]),
        "warm_step_s": spread([r["step_s_mean"] for r in warm if "step_s_mean" in r]),
        "peak_gpu_mib": max(peaks) if peaks else None,
        "warm_gpu_busy_pct": spread([r["gpu_busy_pct"] for r in warm if "gpu_busy_pct" in r]),
        "warm_runs": len(warm),
    }


def machine_info(args: argparse.Namespace) -> dict[str, Any]:
    info: dict[str, Any] = {"host": platform.node(), "platform": platform.platform()}
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
        info["gpu"] = done.stdout.strip() or None
    except OSError:
        info["gpu"] = None
    probe = (
        "import json, importlib.metadata as md, torch\n"
        "out = {'python': __import__('sys').version.split()[0], 'torch': torch.__version__,"
        " 'cuda': torch.version.cuda, 'cudnn': torch.backends.cudnn.version()}\n"
        "for n in ('triton', 'sageattention', 'xformers', 'comfy-kitchen', 'comfy-aimdo',"
        " 'flash-attn'):\n"
        "    try: out[n] = md.version(n)\n"
        "    except md.PackageNotFoundError: out[n] = None\n"
        "print(json.dumps(out))\n"
    )
    try:
        done = subprocess.run(
            [args.python, "-c", probe], capture_output=True, text=True, timeout=120, check=False
        )
        info.update(json.loads(done.stdout.strip().splitlines()[-1]))
    except (OSError, ValueError, IndexError):
        info["probe_error"] = done.stderr[-500:] if "done" in locals() else "no python"
    version_file = args.comfyui / "comfyui_version.py"
    if version_file.is_file():
        found = re.search(r"__version__\s*=\s*['\"]([^'\"]+)", version_file.read_text())
        info["comfyui"] = found.group(1) if found else None
    return info


def fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return f"{value['median']:.3g} ({value['min']:.3g}–{value['max']:.3g}){unit}"
    return f"{value:.3g}{unit}" if isinstance(value, float) else f"{value}{unit}"


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        MARK_START,
        "## Real ComfyUI workflows on the GPU (bench/gpu)",
        "",
        f"Run {results['started']}. Machine: {m.get('gpu')}; torch {m.get('torch')} "
        f"(CUDA {m.get('cuda')}, cuDNN {m.get('cudnn')}), Python {m.get('python')}, "
        f"triton {m.get('triton')}, sageattention {m.get('sageattention')}, "
        f"comfy-kitchen {m.get('comfy-kitchen')}, ComfyUI {m.get('comfyui')}.",
        "",
        "Random-weight models in ComfyUI's own layouts (bench/gpu/make_models.py); "
        "seconds per step are the median over the warm runs of each run's sampling time "
        "per step (websocket progress messages, first to last), with min–max; warm is the whole "
        "prompt with loaders and text encoders cached, cold is the first prompt "
        "after start (model load included); peak memory is nvidia-smi's memory.used.",
        "",
        f"Device time of the benchmark runs: {results.get('elapsed_s')} s.",
        "",
        "Output distance: mean |pixel difference| to stock's image at the same seed, as a "
        "fraction of what a new seed changes (stock at seed s against s+1); a variant passes "
        f"at ≤ {outputs.THRESHOLD_RELATIVE:g} (bench/gpu/outputs.py); PSNR to stock beside it.",
        "",
        'Each run is one start of this script; "vs stock" is against stock of the same run '
        "(a variant of a run without stock gets none).",
        "",
        "| workflow | run | variant | s/step warm | vs stock | workflow s warm | first run s | "
        "peak GPU MiB | output distance | attention |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for workflow, run, variants in result_runs.groups(results):
        stock = result_runs.warm_step(variants.get("stock"))
        for variant, entry in variants.items():
            s = entry.get("summary") or {}
            step = s.get("warm_step_s")
            mine = result_runs.warm_step(entry)
            ratio = f"{stock / mine:.2f}x" if stock and mine else "-"
            note = entry.get("skipped") or entry.get("error")
            if isinstance(note, dict):  # ComfyUI's execution_error message
                kind, text = note.get("exception_type", "error"), note.get("exception_message", "")
                note = f"{kind}: {text}".replace("\n", " ")
            lines.append(
                f"| {workflow} | {result_runs.run_label(run)} | {variant} | {fmt(step)} | "
                f"{ratio} | {fmt(s.get('warm_wall_s'))} | "
                f"{fmt(s.get('cold_wall_s'))} | {fmt(s.get('peak_gpu_mib'))} | "
                f"{distance_text(entry.get('distance'), variant)} | "
                f"{entry.get('attention', '-')}{' — ' + str(note)[:120] if note else ''} |"
            )
    payoff = results.get("compile_payoff") or {}
    if "text" in payoff:  # an older results file: one workflow
        payoff = {"image workflow": payoff}
    for workflow, found in payoff.items():
        lines += ["", f"torch.compile on {workflow} (tuned-compile against tuned): {found['text']}"]
    lines += ["", MARK_END, ""]
    return "\n".join(lines)


def distance_text(found: dict[str, Any] | None, variant: str) -> str:
    if variant == "stock":
        return "(reference)"
    if not found:
        return "-"
    if found.get("relative") is None:
        return str(found.get("reason") or "-")[:60]
    verdict = "ok" if found.get("ok") else "FAILS"
    psnr = found.get("psnr_db")
    return f"{found['relative']:.3f} {verdict}" + (f", {psnr:.1f} dB" if psnr else "")


def write_section(path: Path, section: str) -> None:
    text = path.read_text() if path.exists() else ""
    if MARK_START in text and MARK_END in text:
        head, rest = text.split(MARK_START, 1)
        tail = rest.split(MARK_END, 1)[1].lstrip("\n")
        text = head + section + tail
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + section
    path.write_text(text)


def compile_payoff(results: dict[str, Any]) -> dict[str, Any] | None:
    """Per workflow: what torch.compile costs on the first run and gains per warm run."""
    found: dict[str, Any] = {}
    for workflow, _run, variants in result_runs.groups(results):  # a later run's replaces
        tuned = (variants.get("tuned") or {}).get("summary") or {}
        compiled = (variants.get("tuned-compile") or {}).get("summary") or {}
        cached = (variants.get("tuned-compile-cached") or {}).get("summary") or {}
        if not (tuned.get("cold_wall_s") and compiled.get("cold_wall_s")):
            continue
        if not (tuned.get("warm_wall_s") and compiled.get("warm_wall_s")):
            continue
        extra = compiled["cold_wall_s"] - tuned["cold_wall_s"]
        extra_cached = (
            cached["cold_wall_s"] - tuned["cold_wall_s"] if cached.get("cold_wall_s") else None
        )
        gain = tuned["warm_wall_s"]["median"] - compiled["warm_wall_s"]["median"]
        runs = extra / gain if gain > 0 else None
        runs_cached = extra_cached / gain if gain > 0 and extra_cached is not None else None
        text = f"first run {extra:+.1f} s (compilation), each warm run {gain:+.2f} s; " + (
            f"pays back after {runs:.1f} more runs"
            + (
                f"; a second launch (caches in DIR) first run {extra_cached:+.1f} s, "
                f"paid back after {max(runs_cached, 0):.1f} runs"
                if runs_cached is not None and extra_cached is not None
                else ""
            )
            + "."
            if runs is not None
            else "warm runs are not faster, so it never pays back."
        )
        found[workflow] = {
            "extra_first_run_s": round(extra, 2),
            "extra_first_run_cached_s": None if extra_cached is None else round(extra_cached, 2),
            "gain_per_warm_run_s": round(gain, 3),
            "runs_to_pay_back": None if runs is None else round(runs, 2),
            "runs_to_pay_back_cached": None if runs_cached is None else round(runs_cached, 2),
            "text": text,
        }
    return found or None


def write_levers(path: Path, results: dict[str, Any]) -> None:
    """Write each lever's figure against ``tuned`` where ``launch`` reads it (levers.json).

    The schema is installer.plan.levers' (version 1): per GPU name, per lever, its
    ComfyUI arguments and per workflow the s/step of ``tuned`` and of ``tuned`` with the
    lever, the speedup and whether the output distance met its threshold.
    """
    gpu = result_runs.gpu_of(results)
    document: dict[str, Any] = {"schema_version": 1, "gpus": {}}
    if path.is_file():
        with contextlib.suppress(ValueError, OSError):
            document = json.loads(path.read_text())
    levers = document.setdefault("gpus", {}).setdefault(gpu, {}).setdefault("levers", {})
    # Against tuned of the same run; a later run's figure replaces an earlier one's.
    for workflow, run, variants in result_runs.groups(results):
        base = result_runs.warm_step(variants.get("tuned"))
        for variant, arguments in LEVERS.items():
            step = result_runs.warm_step(variants.get(variant))
            if not (base and step):
                continue
            distance = (variants.get(variant) or {}).get("distance") or {}
            name = variant.split("+", 1)[1]
            lever = levers.setdefault(name, {"args": arguments, "workflows": {}})
            lever["args"] = arguments
            lever["workflows"][workflow] = {
                "baseline_s_per_step": base,
                "s_per_step": step,
                "speedup": round(base / step, 3),
                "distance": distance.get("relative"),
                "distance_threshold": distance.get("threshold_relative"),
                "distance_ok": bool(distance.get("ok")),
                "measured": run,
            }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")


# --------------------------------------------------------------------------- main


def write_paths_yaml(args: argparse.Namespace) -> Path:
    lines = ["bench:", f"  base_path: {args.models}"]
    for kind in ("checkpoints", "diffusion_models", "text_encoders", "vae"):
        lines.append(f"  {kind}: {kind}")
    if args.tiny:
        lines.append(f"  custom_nodes: {HERE / 'custom_nodes'}")
    path = args.work / "extra_model_paths.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def plan(args: argparse.Namespace) -> list[tuple[str, str, dict[str, Any]]]:
    """(variant, workflow name, workflow) in run order."""
    out = []
    names = [w.strip() for w in args.workflows.split(",") if w.strip()]
    for variant in [v.strip() for v in args.variants.split(",") if v.strip()]:
        base, _ = variant_parts(variant)  # refuses an unknown base or lever
        for name in names:
            workflow = json.loads((args.workflow_dir / f"{name}.json").read_text())
            if base in COMPILED:
                if name not in args.compile_workflows.split(","):
                    continue
                workflow = add_compile_node(workflow)
            if args.steps:
                for node in workflow.values():
                    if node["class_type"] == "KSampler":
                        node["inputs"]["steps"] = args.steps
            out.append((variant, name, workflow))
    return out


def add_compile_node(workflow: dict[str, Any]) -> dict[str, Any]:
    """Put ComfyUI's TorchCompileModel (inductor) between the model and each sampler."""
    out = copy.deepcopy(workflow)
    for key, node in list(out.items()):
        if node["class_type"] in ("KSampler", "KSamplerAdvanced"):
            new = f"{key}0"
            out[new] = {
                "class_type": "TorchCompileModel",
                "inputs": {"model": node["inputs"]["model"], "backend": "inductor"},
            }
            node["inputs"]["model"] = [new, 0]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--comfyui", type=Path, help="ComfyUI source folder")
    parser.add_argument("--python", help="Python that runs ComfyUI (stock, blanket)")
    parser.add_argument(
        "--install-dir",
        type=Path,
        help="DIR for `launch` (DIR/venv, DIR/ComfyUI); default: the ComfyUI folder's parent",
    )
    parser.add_argument(
        "--installer",
        default=f"{sys.executable} -m installer",
        help="how to run comfy-install (split like a shell)",
    )
    parser.add_argument("--models", type=Path, help="models folder (make_models.py --out)")
    parser.add_argument("--workflows", default="sdxl-1024,wan21-832x480x33")
    parser.add_argument("--workflow-dir", type=Path, default=HERE / "workflows")
    parser.add_argument("--variants", default="stock,blanket,tuned,tuned-compile")
    parser.add_argument("--compile-workflows", default="sdxl-1024,wan21-832x480x33")
    parser.add_argument(
        "--levers-out", type=Path, help="write the levers' figures here (DIR's levers.json)"
    )
    parser.add_argument("--warm", type=int, default=3, help="warm runs after the cold one")
    parser.add_argument("--steps", type=int, default=0, help="override the samplers' steps")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--budget", type=float, default=540, help="seconds for the whole run")
    parser.add_argument("--prompt-timeout", type=float, default=300)
    parser.add_argument(
        "--comfy-arg",
        action="append",
        default=[],
        help="extra ComfyUI argument (every variant), e.g. --comfy-arg=--cpu",
    )
    parser.add_argument(
        "--tiny", action="store_true", help="CPU shake-down: adds the bench custom node folder"
    )
    parser.add_argument("--work", type=Path, default=Path("/tmp/gpu-bench-work"))
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results-gpu.json")
    parser.add_argument("--results-md", type=Path, default=REPO / "bench" / "RESULTS.md")
    parser.add_argument("--docs-md", type=Path, default=REPO / "docs" / "gpu-benchmark.md")
    parser.add_argument("--no-markdown", action="store_true")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the entries of an existing --out that this run does not redo",
    )
    parser.add_argument(
        "--render", type=Path, help="only write the Markdown sections from this results JSON"
    )
    args = parser.parse_args(argv)
    if args.render:
        results = json.loads(args.render.read_text())
        write_section(args.results_md, markdown(results))
        write_section(args.docs_md, markdown(results))
        return 0
    if not (args.comfyui and args.python and args.models):
        parser.error("--comfyui, --python and --models are required (unless --render)")

    t0 = time.monotonic()
    args.comfyui = args.comfyui.resolve()
    args.models = args.models.resolve()
    args.install_dir = (args.install_dir or args.comfyui.parent).resolve()
    args.installer = shlex.split(args.installer)
    args.work.mkdir(parents=True, exist_ok=True)
    args.paths_yaml = write_paths_yaml(args)
    # main.py lists every custom_nodes folder at start; a checkout from the bundle lacks one.
    (args.comfyui / "custom_nodes").mkdir(exist_ok=True)
    runs_plan = plan(args)
    # The results this run merges into, read once (partial writes must not merge twice).
    args.previous = json.loads(args.out.read_text()) if args.merge and args.out.is_file() else None

    # Read every model once so that no variant's first run pays the disk (page cache).
    for path in sorted(args.models.rglob("*.safetensors")):
        with path.open("rb") as handle:
            while handle.read(64 << 20):
                pass

    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_info(args),
        "settings": {
            "workflows": args.workflows,
            "variants": args.variants,
            "warm_runs": args.warm,
            "steps_override": args.steps or None,
            "comfy_args": args.comfy_arg,
            "budget_s": args.budget,
            "memory": "nvidia-smi memory.used, GPU 0, polled every 0.1 s (MiB, whole GPU)",
            "step_time": "websocket progress timestamps of the sampler node",
        },
        "workflows": {},
    }
    print(json.dumps(results["machine"]), flush=True)
    by_variant: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for variant, name, workflow in runs_plan:
        by_variant.setdefault(variant, []).append((name, workflow))

    def left() -> float:
        return args.budget - (time.monotonic() - t0)

    for variant, items in by_variant.items():
        entries = {
            name: results["workflows"]
            .setdefault(name, {})
            .setdefault(variant, {"run": results["started"]})
            for name, _ in items
        }
        if left() < 30:
            for entry in entries.values():
                entry["skipped"] = "over the time budget"
            continue
        log_path = args.work / f"comfyui-{variant}.log"
        in_dir = args.install_dir / ".comfy-install" / "levers.json"
        in_dir.unlink(missing_ok=True)
        base, _ = variant_parts(variant)
        if base == "tuned-levers" and args.levers_out and args.levers_out.is_file():
            shutil.copyfile(args.levers_out, in_dir)
        if base in COLD_COMPILES:  # a cold compile: nothing cached from an earlier run
            shutil.rmtree(args.install_dir / ".comfy-install" / "torch-compile", ignore_errors=True)
        counts_file = args.install_dir / ".comfy-install" / "attention-calls.json"
        counts_file.unlink(missing_ok=True)
        server = Server(args, variant, log_path)
        try:
            ready = server.wait_ready(min(600, max(30, left())))
            client_id = uuid.uuid4().hex
            listener = Listener(server.port, client_id)
            listener.start()
            print(f"[{variant}] ready in {ready:.1f} s", flush=True)
            for name, workflow in items:
                entry = entries[name]
                entry["startup_s"] = round(ready, 2)
                entry["command"] = shlex.join(server.command)
                entry["runs"] = []
                for index in range(args.warm + 1):
                    if left() < 5:
                        entry.setdefault("skipped", f"over the time budget after {index} runs")
                        break
                    seed = args.seed + index
                    record = run_prompt(
                        server.port,
                        listener,
                        with_seed(workflow, seed),
                        client_id,
                        min(args.prompt_timeout, max(10, left())),
                        args.work / "outputs" / f"{name}__{variant}__{seed}.npy",
                    )
                    record.update(kind="cold" if index == 0 else "warm", seed=seed)
                    entry["runs"].append(record)
                    print(f"[{variant}] {name} {record}", flush=True)
                    if record["status"] != "ok":
                        entry["error"] = record.get("error") or record["status"]
                        break
                entry["summary"] = summarize(entry["runs"])
            listener.ws.close()
        except (RuntimeError, OSError, KeyError) as exc:
            for entry in entries.values():
                entry.setdefault("error", str(exc))
            print(f"[{variant}] failed: {exc}", flush=True)
        finally:
            server.stop()
            in_dir.unlink(missing_ok=True)
            lines = server.attention_lines()
            routed, calls = (
                outputs.attention_calls(counts_file, compiled=base in COMPILED)
                if variant.startswith("tuned")
                else (None, None)
            )
            for entry in entries.values():
                entry["attention_log"] = lines
                # ComfyUI's start-up line names its own default ("pytorch"); under the router
                # the calls went where the router's counters say.
                entry["attention"] = routed or attention_backend(lines)
                if calls is not None:
                    entry["attention_calls"] = calls
                entry["log"] = str(log_path)
                if base in COMPILED:
                    entry["recompiles"] = count_recompiles(log_path)
                    entry["graph_breaks"] = count_graph_breaks(log_path)
        # Partial results after every variant: a call cut short still brings them back.
        finish(args, results, time.monotonic() - t0, final=False)
    return finish(args, results, time.monotonic() - t0, final=True)


def count_recompiles(log_path: Path) -> int:
    """Recompilations torch logged (``TORCH_LOGS=recompiles``) in a ComfyUI log."""
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return -1
    return text.count("Recompiling function")


def count_graph_breaks(log_path: Path) -> int:
    """Graph breaks torch logged (``TORCH_LOGS=graph_breaks``) in a ComfyUI log."""
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return -1
    return text.count("Graph break")


def finish(args: argparse.Namespace, found: dict[str, Any], elapsed: float, final: bool) -> int:
    """Merge, add distances and payoff, write the JSON (and, when final, the Markdown)."""
    results = copy.deepcopy(found)
    results["elapsed_s"] = round(elapsed, 1)
    if args.previous is not None:
        old = result_runs.merge(args.previous, results)
        old["elapsed_s"] = round((old.get("elapsed_s") or 0) + results["elapsed_s"], 1)
        old.setdefault("runs", []).append(
            {"started": results["started"], "variants": args.variants}
        )
        results = old
    for variants in results["workflows"].values():
        for variant, found in outputs.distances(variants).items():
            variants[variant]["distance"] = found
    results["compile_payoff"] = compile_payoff(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.out.with_suffix(".tmp")
    temporary.write_text(json.dumps(results, indent=2) + "\n")
    temporary.replace(args.out)
    if args.levers_out:
        write_levers(args.levers_out, results)
    if not final:
        return 0
    section = markdown(results)
    print(section, flush=True)
    if not args.no_markdown:
        write_section(args.results_md, section)
        write_section(args.docs_md, section)
    failed = any(
        "error" in entry
        for variants in results["workflows"].values()
        for entry in variants.values()
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
