"""The console script's entry point: answers `--version` and `--help` without loading the CLI.

`comfy-install --version` is answered here without importing typer (about
100 ms of start-up). The top-level `--help` text is rendered by typer once per
version, terminal width and change of the command modules, then kept in the user
cache and printed from there.
`comfy-install nodes ...` and `comfy-install snapshot ...` run their own typer group
(`GROUPS`): typer builds the parameters of every command of the app it runs, so the whole
app costs a `nodes add` about a tenth of a second that the group alone does not.
Everything else goes to the typer app in [`installer.cli.app`][installer.cli.app].
"""

import os
import sys

# Only `os` and `sys` (both loaded by Python's own start-up) at module level, and no
# `from __future__` (a module of its own): `--version` and a cached `--help` import nothing
# else. pathlib, shutil, contextlib and platformdirs cost more than the rest of the answer
# (`python -X importtime -m installer --help`).


def _columns() -> int:
    """The terminal's width as `shutil.get_terminal_size` reports it (`COLUMNS` first, else 80)."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        stdout = sys.__stdout__
        try:
            columns = os.get_terminal_size(stdout.fileno()).columns if stdout else 0
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns if columns > 0 else 80


def _user_cache_dir() -> str:
    """Return platformdirs' `user_cache_dir("comfy-install", appauthor=False)`, not importing it."""
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA", "").strip()
        if not local:
            from platformdirs import user_cache_dir

            return user_cache_dir("comfy-install", appauthor=False)
        return os.path.join(local, "comfy-install", "Cache")
    if sys.platform == "darwin":
        return os.path.expanduser("~/Library/Caches/comfy-install")
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or os.path.expanduser("~/.cache")
    return os.path.join(base, "comfy-install")


def help_cache_path() -> str:
    """Return where the rendered top-level help is kept (in the tool's cache folder)."""
    from installer import __version__

    base = os.environ.get("COMFY_INSTALL_CACHE_DIR") or _user_cache_dir()
    # The command modules' mtime keeps a development checkout's cache from going stale.
    cli = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cli")
    with os.scandir(cli) as entries:
        stamp = max(int(e.stat().st_mtime) for e in entries if e.name.endswith(".py"))
    return os.path.join(base, "cli", f"help-{__version__}-{_columns()}-{stamp}.txt")


def _print_help() -> None:
    cache = help_cache_path()
    try:
        with open(cache, encoding="utf-8") as handle:
            sys.stdout.write(handle.read())
        return
    except OSError:
        pass
    import contextlib
    import io

    from installer.cli.app import app

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.suppress(SystemExit):
        app(["--help"], prog_name="comfy-install")
    text = buffer.getvalue()
    sys.stdout.write(text)
    if text:
        with contextlib.suppress(OSError):
            os.makedirs(os.path.dirname(cache), exist_ok=True)
            tmp = f"{cache}.{os.getpid()}.tmp"
            with open(tmp, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(tmp, cache)


GROUPS = {"nodes": ("installer.cli.nodes", "nodes_app"),
          "snapshot": ("installer.cli.snapshot", "snapshot_app")}  # fmt: skip
"""Command groups run on their own: name → (module, typer app), as `cli/app.py` mounts them."""


def main() -> None:
    """Run `comfy-install` with the process's arguments."""
    arguments = sys.argv[1:]
    if arguments and arguments[0] in GROUPS:
        import importlib

        module, name = GROUPS[arguments[0]]
        group = getattr(importlib.import_module(module), name)
        group(arguments[1:], prog_name=f"comfy-install {arguments[0]}")
        return
    if arguments == ["--version"]:
        from installer import __version__

        sys.stdout.write(f"comfy-install {__version__}\n")
        return
    if arguments == ["--help"]:
        _print_help()
        return
    from installer.cli.app import app

    app()
