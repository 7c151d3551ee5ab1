"""The console script's entry point: answers `--version` and `--help` without loading the CLI.

`comfy-install --version` is answered here without importing typer (about
100 ms of start-up). The top-level `--help` text is rendered by typer once per
version, terminal width and change of the command modules, then kept in the user
cache and printed from there.
Everything else goes to the typer app in [`installer.cli.app`][installer.cli.app].
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sys
from pathlib import Path


def help_cache_path() -> Path | None:
    """Return where the rendered top-level help is kept (None: no usable cache folder)."""
    from installer import __version__

    base = os.environ.get("COMFY_INSTALL_CACHE_DIR")
    if base is None:
        from platformdirs import user_cache_dir

        base = user_cache_dir("comfy-install", appauthor=False)
    width = shutil.get_terminal_size().columns
    # The command modules' mtime keeps a development checkout's cache from going stale.
    stamp = max(int(path.stat().st_mtime) for path in Path(__file__).parent.glob("cli/*.py"))
    return Path(base) / "cli" / f"help-{__version__}-{width}-{stamp}.txt"


def _print_help() -> None:
    cache = help_cache_path()
    if cache is not None:
        with contextlib.suppress(OSError):
            sys.stdout.write(cache.read_text(encoding="utf-8"))
            return
    from installer.cli.app import app

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.suppress(SystemExit):
        app(["--help"], prog_name="comfy-install")
    text = buffer.getvalue()
    sys.stdout.write(text)
    if cache is not None and text:
        with contextlib.suppress(OSError):
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(cache)


def main() -> None:
    """Run `comfy-install` with the process's arguments."""
    arguments = sys.argv[1:]
    if arguments == ["--version"]:
        from installer import __version__

        sys.stdout.write(f"comfy-install {__version__}\n")
        return
    if arguments == ["--help"]:
        _print_help()
        return
    from installer.cli.app import app

    app()
