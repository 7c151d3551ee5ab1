"""The `comfy-install lock` command (typer): write, refresh and check the lock files.

With no options it refreshes every target the configuration supports (and the
Pythons of the locks already there) and says which ones could not be resolved
from this machine and why; `--check` exits 1 naming every stale lock with the
command that refreshes it. The work is [`installer.commands.lock`][installer.commands.lock];
this module parses the options.

The command is registered on the main app by [`installer.cli.app`][installer.cli.app]
(`app.command()(lock)`); it imports the heavy modules inside the command so `--help`
stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def lock(
    platform: Annotated[
        str | None, typer.Option("--platform", help="linux or windows (default: both).")
    ] = None,
    torch_variant: Annotated[
        str | None,
        typer.Option(
            "--torch-variant",
            help="A configured torch variant (cu128, cpu, ...) or default (uv's default "
            "index). Default: every variant.",
        ),
    ] = None,
    python: Annotated[
        str | None,
        typer.Option(
            "--python",
            help="Python X.Y to lock for (default: python.default, and the Pythons of the "
            "locks already there).",
        ),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="Another dependencies.json.")
    ] = None,
    comfyui_url: Annotated[
        str | None,
        typer.Option(
            "--comfyui-url", help="Read ComfyUI's requirements.txt from here (URL, path, bundle)."
        ),
    ] = None,
    comfyui_ref: Annotated[
        str | None,
        typer.Option(
            "--comfyui-ref",
            help="Read requirements.txt at this ref instead of the pinned commit (a source "
            "without the commit but with the same tree); the lock still records the pin.",
        ),
    ] = None,
    index_url: Annotated[
        str | None, typer.Option("--index-url", help="Resolve against this index (a mirror).")
    ] = None,
    find_links: Annotated[
        list[str] | None, typer.Option("--find-links", help="Folder or URL of wheels (repeatable).")
    ] = None,
    lock_dir: Annotated[
        Path | None,
        typer.Option("--lock-dir", help="Folder of the lock files (default: the shipped locks/)."),
    ] = None,
    check: Annotated[
        bool,
        typer.Option("--check", help="Resolve nothing; exit 1 if a lock no longer matches."),
    ] = False,
    jobs: Annotated[
        int, typer.Option("--jobs", min=1, max=16, help="Targets resolved at the same time.")
    ] = 4,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the result as JSON on stdout.")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show uv's and git's output.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors.")] = False,
) -> None:
    """Resolve the dependencies into hash-pinned lock files, or check that they are current."""
    from installer.cli.common import guarded, make_logger, print_json
    from installer.commands.lock import LockRequest, refresh
    from installer.commands.lock import check as check_locks

    log = make_logger(verbose, quiet)
    request = LockRequest(
        platform=platform,
        torch_variant=torch_variant,
        python=python,
        config=config,
        comfyui_url=comfyui_url,
        comfyui_ref=comfyui_ref,
        index_url=index_url,
        find_links=tuple(find_links or ()),
        lock_dir=lock_dir,
        check=check,
        jobs=jobs,
    )
    command = ["lock", *(["--check"] if check else [])]
    body = check_locks if check else refresh
    data = guarded(command, as_json, log, verbose, lambda: body(request, log))
    if as_json:
        print_json(command, data)
    log.close()


def main() -> None:
    """Run `lock` as a program of its own (`python -m installer.cli.lock`)."""
    typer.run(lock)


if __name__ == "__main__":
    main()
