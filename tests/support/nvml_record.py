"""A recorded NVML answer played back through pynvml's own functions (a GPU list stand-in).

`edges/gpu.py` reads NVML through `pynvml`; there is no other way in. A recorded answer
(`tests/data/nvml-3gpu.json`, shaped like `../shared/reference/nvml-h100.json`) replaces
the `pynvml` functions that detection calls, so everything above them, the parsing
included, is the real code. In this process: [`play_answer`][] with a monkeypatch.
In a `comfy-install` subprocess: [`stand_in_env`][] writes a `sitecustomize.py` that
does the same at interpreter start, only in the interpreter whose `sys.prefix` is the
tool's (ComfyUI's venv, started by the launch with the same environment, is left alone).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[1] / "data"
THREE_GPUS = DATA / "nvml-3gpu.json"

PLAYBACK = '''
def play(pynvml, answer):
    """Make pynvml's detection functions answer as recorded."""
    from types import SimpleNamespace

    devices = answer["devices"]
    pynvml.nvmlInit = lambda: None
    pynvml.nvmlShutdown = lambda: None
    pynvml.nvmlSystemGetDriverVersion = lambda: answer["nvmlSystemGetDriverVersion"]
    pynvml.nvmlSystemGetCudaDriverVersion = lambda: answer["nvmlSystemGetCudaDriverVersion"]
    pynvml.nvmlDeviceGetCount = lambda: answer["nvmlDeviceGetCount"]
    def handle(index):
        if not 0 <= index < len(devices):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return devices[index]
    pynvml.nvmlDeviceGetHandleByIndex = handle
    pynvml.nvmlDeviceGetName = lambda d: d["nvmlDeviceGetName"]
    pynvml.nvmlDeviceGetCudaComputeCapability = lambda d: tuple(
        d["nvmlDeviceGetCudaComputeCapability"]
    )
    pynvml.nvmlDeviceGetMemoryInfo = lambda d: SimpleNamespace(
        total=d["nvmlDeviceGetMemoryInfo.total"], free=d["nvmlDeviceGetMemoryInfo.free"]
    )
    pynvml.nvmlDeviceGetUUID = lambda d: d["nvmlDeviceGetUUID"]
    pynvml.nvmlDeviceGetPciInfo = lambda d: SimpleNamespace(busId=d["nvmlDeviceGetPciInfo.busId"])
'''


def load_answer(path: Path = THREE_GPUS) -> dict[str, Any]:
    """The recorded answer at ``path``."""
    answer: dict[str, Any] = json.loads(path.read_text())
    return answer


def play_answer(monkeypatch: Any, path: Path = THREE_GPUS) -> dict[str, Any]:
    """Make this process's pynvml answer as recorded (undone by the monkeypatch)."""
    import pynvml

    names = [n for n in dir(pynvml) if n.startswith("nvml")]
    for name in names:  # the monkeypatch restores every function played over
        monkeypatch.setattr(pynvml, name, getattr(pynvml, name))
    scope: dict[str, Any] = {}
    exec(PLAYBACK, scope)
    answer = load_answer(path)
    scope["play"](pynvml, answer)
    return answer


def stand_in_env(env: dict[str, str], folder: Path, path: Path = THREE_GPUS) -> dict[str, str]:
    """Return ``env`` whose comfy-install subprocesses see the recorded GPUs through pynvml."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(
        "import json, sys\n"
        f"if sys.prefix == {sys.prefix!r}:\n"
        "    import pynvml\n"
        + "\n".join("    " + line for line in PLAYBACK.splitlines())
        + f"\n    play(pynvml, json.loads(open({str(path)!r}).read()))\n"
    )
    merged = dict(env)
    merged["PYTHONPATH"] = str(folder) + (
        ":" + merged["PYTHONPATH"] if merged.get("PYTHONPATH") else ""
    )
    merged.pop("PYTHONSAFEPATH", None)
    return merged
