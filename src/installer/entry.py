"""The console script's entry point: answers `--version` before loading the CLI.

`comfy-install --version` is what scripts and bug reports call most; it is
answered here without importing typer (about 100 ms of start-up). Everything
else goes to the typer app in [`installer.cli`][installer.cli].
"""

from __future__ import annotations

import sys


def main() -> None:
    """Run `comfy-install` with the process's arguments."""
    if sys.argv[1:] == ["--version"]:
        from installer import __version__

        sys.stdout.write(f"comfy-install {__version__}\n")
        return
    from installer.cli import app

    app()
