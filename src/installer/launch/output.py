"""ComfyUI's output: shown on the terminal as it comes, kept in the log, its tail remembered.

In the foreground the launcher reads ComfyUI's output through a pipe and copies
it, in chunks (progress bars redraw with a carriage return), to the terminal and
to `DIR/.comfy-install/logs/comfyui-<stamp>.log`; the last lines are kept for the
error message when ComfyUI fails. In the background ComfyUI writes to the log
itself, and [`file_tail`][installer.launch.output.file_tail] reads its last lines back.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


def new_log_path(state_dir: Path) -> Path:
    """Create `DIR/.comfy-install/logs` and return a new `comfyui-<stamp>.log` path in it.

    Args:
        state_dir: The install's state folder, `DIR/.comfy-install`.
    """
    folder = state_dir / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = folder / f"comfyui-{stamp}.log"
    counter = 2
    while path.exists():
        path = folder / f"comfyui-{stamp}-{counter}.log"
        counter += 1
    return path


@dataclass
class Output:
    """ComfyUI's output as the launcher sees it: the remembered tail, and where it started."""

    tail: deque[str] = field(default_factory=lambda: deque(maxlen=40))
    thread: threading.Thread | None = None


_LINE_BREAK = re.compile(r"\r\n|\n|\r")


def pump(stream: IO[bytes], log_file: IO[str], terminal: IO[str], output: Output) -> None:
    """Copy ComfyUI's output to the terminal and the log file as it comes.

    Chunks, not lines: progress bars redraw with a carriage return and no
    newline, and must show while they run. Whole lines are kept for the tail.

    Args:
        stream: ComfyUI's stdout (its stderr goes there too).
        log_file: The launch's log file.
        terminal: Where the user sees it (stderr by default).
        output: Where the tail is kept; read until the stream ends.
    """
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    while True:
        try:
            chunk = os.read(stream.fileno(), 65536)
        except OSError:
            chunk = b""
        text = decoder.decode(chunk, final=not chunk)
        for sink in (terminal, log_file):
            with contextlib.suppress(OSError, ValueError):
                sink.write(text)
                sink.flush()
        *lines, pending = _LINE_BREAK.split(pending + text)
        output.tail.extend(line for line in lines if line.strip())
        if not chunk:
            break
    if pending.strip():
        output.tail.append(pending)


# The launcher's own lines in the shared log file (InstallerLogger's format).
_OWN_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d (STEP|INFO|DEBUG|WARN|ERROR|OUT) ")


def file_tail(path: Path, offset: int, lines: int = 20) -> list[str]:
    """Return ComfyUI's last output lines from the log, from ``offset`` on.

    Args:
        path: The launch's log file.
        offset: Where ComfyUI's output starts in it (the launcher's own lines are skipped).
        lines: How many lines at most.
    """
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    found = [x for x in text.splitlines() if x.strip() and not _OWN_LOG_LINE.match(x)]
    return found[-lines:]


def finish_output(output: Output) -> None:
    """Wait (briefly) for the thread that copies ComfyUI's output to finish.

    Args:
        output: The output whose pumping thread to join.
    """
    # Children of ComfyUI may keep the pipe open: do not wait for them forever.
    if output.thread is not None:
        output.thread.join(timeout=2.0)
