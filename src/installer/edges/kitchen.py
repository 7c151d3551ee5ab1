"""comfy-kitchen in a venv: which of its back ends load there, asked of the venv's Python.

ComfyUI v0.33.0 requires comfy-kitchen, a kernel library with `cuda`, `triton` and
`eager` back ends (`hip` on ROCm). Whether its CUDA back end helps depends on the torch
beside it, so the only reliable answer comes from the venv itself:
`comfy_kitchen.list_backends()` reports each back end as available, or unavailable with
the reason (with a CPU torch: "CUDA not available on this system").
[`KITCHEN_CODE`][installer.edges.kitchen.KITCHEN_CODE] is the Python that asks (the
verify step runs it inside its own import check);
[`probe_kitchen`][installer.edges.kitchen.probe_kitchen] runs it on its own.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from installer.core.facts import KitchenBackend, KitchenReport

KITCHEN_CODE = r"""
def _comfy_kitchen():
    import importlib.metadata as _md
    try:
        version = _md.version("comfy-kitchen")
    except _md.PackageNotFoundError:
        return {"installed": False}
    report = {"installed": True, "version": version, "backends": {}}
    try:
        import torch
        report["torch_cuda"] = torch.version.cuda
        import comfy_kitchen
        for name, info in comfy_kitchen.list_backends().items():
            report["backends"][name] = {
                "available": bool(info.get("available")),
                "disabled": bool(info.get("disabled")),
                "reason": info.get("unavailable_reason"),
            }
    except Exception as exc:
        report["error"] = type(exc).__name__ + ": " + str(exc)
    return report
"""
"""The function the venv's Python runs to report comfy-kitchen and its back ends."""

MARKER = "COMFY_INSTALL_KITCHEN "


def kitchen_report(data: dict[str, Any] | None) -> KitchenReport | None:
    """Turn what `KITCHEN_CODE`'s `_comfy_kitchen()` returned into a report.

    Args:
        data: Its JSON result (None: not asked).
    """
    if data is None:
        return None
    backends = tuple(
        KitchenBackend(
            name=str(name),
            available=bool(info.get("available")),
            disabled=bool(info.get("disabled")),
            reason=info.get("reason"),
        )
        for name, info in sorted(data.get("backends", {}).items())
    )
    return KitchenReport(
        installed=bool(data.get("installed")),
        version=data.get("version"),
        torch_cuda=data.get("torch_cuda"),
        backends=backends,
        error=data.get("error"),
    )


def probe_kitchen(python_exe: Path, timeout: float = 300) -> KitchenReport:
    """Ask the venv's Python which comfy-kitchen back ends load there.

    Args:
        python_exe: The venv's interpreter.
        timeout: Seconds to wait (importing torch can take a while on a cold disk).

    Returns:
        The report; a Python that does not run, or a probe that dies, gives one with `error`
        set (never an exception: this is a report, not a step).
    """
    code = KITCHEN_CODE + f"\nimport json\nprint({MARKER!r} + json.dumps(_comfy_kitchen()))\n"
    try:
        done = subprocess.run(
            [str(python_exe), "-c", code],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return KitchenReport(installed=False, error=f"the venv's Python did not run: {exc}")
    line = next((x for x in done.stdout.splitlines() if x.startswith(MARKER)), None)
    if line is None:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return KitchenReport(installed=True, error=f"the probe failed: {tail[0]}")
    report = kitchen_report(json.loads(line.removeprefix(MARKER)))
    assert report is not None
    return report
