"""Running the attention module in an install's venv and reading back its document.

The venv does not have this package, so
[`run_attention_module`][installer.attention.measure.runner.run_attention_module] writes the
sources of [`attention_module`][installer.attention.measure.attention_module] and
[`attention_backends`][installer.attention.measure.attention_backends] as a package
(`comfy_install_bench`) and a JSON config to a temporary folder, runs it with the
venv's Python (`python -m comfy_install_bench.attention_module`; its ``progress:``
lines become status lines, or go to a callback, and a timeout stops it) and returns
the raw timings it wrote. What is made of them is the caller's business
(`benchmark`'s report, or `tune`'s calibration).
"""

from __future__ import annotations

import importlib.resources
import json
import os
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from installer.core.errors import StepFailedError

if TYPE_CHECKING:
    from installer.core.log import InstallerLogger


PACKAGE = "comfy_install_bench"
"""The name the measuring modules run under in the venv."""
SHIPPED = ("attention_module.py", "attention_backends.py", "attention_comfyui.py")
SHIM_SHIPPED = ("router.py", "sdpa.py", "sage.py", "routes.py")
"""The launch router's files shipped beside them (they import each other relatively)."""


def shipped_sources() -> dict[str, str]:
    """Return the sources of the measuring modules by file name, as written into the venv.

    The launch router ([`installer.attention.shim`][installer.attention.shim]: the router,
    its SDPA back ends, its SageAttention route and the routes schema) goes with them, so
    that `tune` times the router's own functions for torch's SDPA back ends and SageAttention.
    """
    folder = importlib.resources.files("installer.attention.measure")
    sources = {name: folder.joinpath(name).read_text("utf-8") for name in SHIPPED}
    shim = importlib.resources.files("installer.attention.shim")
    for name in SHIM_SHIPPED:
        sources[name] = shim.joinpath(name).read_text("utf-8")
    return sources


def run_attention_module(
    python: Path,
    config: dict[str, Any],
    log: InstallerLogger,
    timeout: float,
    on_progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the attention benchmark with the venv's Python and return its document.

    Args:
        python: The venv's interpreter.
        config: Settings for
            [`attention_module.run`][installer.attention.measure.attention_module.run].
        log: Progress lines become status lines (without ``on_progress``); the
            rest goes to the log.
        timeout: Seconds before the run is stopped.
        on_progress: Called with each progress line instead (a progress bar).

    Returns:
        The module's JSON document.

    Raises:
        StepFailedError: The module crashed, timed out or wrote no document.
    """
    with tempfile.TemporaryDirectory(prefix="comfy-install-bench-") as tmp:
        folder = Path(tmp)
        package = folder / PACKAGE
        package.mkdir()
        (package / "__init__.py").write_text("", encoding="utf-8")
        for name, text in shipped_sources().items():
            (package / name).write_text(text, encoding="utf-8")
        config_path = folder / "config.json"
        config_path.write_text(json.dumps(config), encoding="utf-8")
        output = folder / "result.json"
        module = f"{PACKAGE}.attention_module"
        args = [str(python), "-m", module, "--config", str(config_path), "--output", str(output)]
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1")
        returncode, tail, timed_out = _stream(args, env, log, timeout, folder, on_progress)
        if timed_out:
            raise StepFailedError(
                f"The attention benchmark did not finish within {timeout:.0f} s.",
                "Use fewer --iterations, a smaller --budget or fewer --shapes.",
            )
        if returncode != 0 or not output.is_file():
            shown = "\n  ".join(tail[-12:])
            raise StepFailedError(
                f"The attention benchmark failed in the venv (exit code {returncode})"
                + (f":\n  {shown}" if shown else "."),
                "Check that the venv's torch works: `DIR/venv/bin/python -c 'import torch'`.",
            )
        try:
            document: dict[str, Any] = json.loads(output.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise StepFailedError(
                f"The attention benchmark wrote unreadable JSON ({exc}).",
                "Run with --verbose and report the output.",
            ) from exc
    return document


def _stream(
    args: list[str],
    env: dict[str, str],
    log: InstallerLogger,
    timeout: float,
    cwd: Path,
    on_progress: Callable[[str], None] | None,
) -> tuple[int, list[str], bool]:
    """Run ``args``; turn ``progress:`` lines into status lines; return (code, tail, timed out)."""
    from installer.launch.process import stop_process

    log.debug("$ " + " ".join(args))
    try:
        process = subprocess.Popen(
            args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except OSError as exc:
        raise StepFailedError(
            f"The venv's Python ({args[0]}) could not be started: {exc.strerror or exc}.",
            "Repair the install: `comfy-install install DIR --force venv`.",
        ) from exc
    tail: list[str] = []
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        stop_process(process.pid, process=process)

    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.start()
    try:
        assert process.stdout is not None
        for raw in process.stdout:
            text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if text.startswith("progress: "):
                message = text.removeprefix("progress: ")
                if on_progress is None:
                    log.info("  " + message)
                else:
                    log.debug(message)
                    on_progress(message)
            else:
                log.output(text)
                tail = [*tail[-39:], text]
        returncode = process.wait()
    except BaseException:
        stop_process(process.pid, process=process)
        raise
    finally:
        timer.cancel()
    return returncode, tail, expired.is_set()
