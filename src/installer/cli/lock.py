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

from typing import Annotated

import typer

from installer.cli.options import (
    ComfyuiUrlOpt,
    ConfigOpt,
    FindLinksOpt,
    IndexUrlOpt,
    JsonOpt,
    LockComfyuiRefOpt,
    LockDirOpt,
    LockPlatformOpt,
    LockPythonOpt,
    QuietOpt,
    VerboseOpt,
    build_request,
)


def lock(
    platform: LockPlatformOpt = None,
    torch_variant: Annotated[
        str | None,
        typer.Option(
            "--torch-variant",
            help="A configured torch variant (cu128, cpu, ...) or default (uv's default "
            "index). Default: every variant.",
        ),
    ] = None,
    python: LockPythonOpt = None,
    config: ConfigOpt = None,
    comfyui_url: ComfyuiUrlOpt = None,
    comfyui_ref: LockComfyuiRefOpt = None,
    index_url: IndexUrlOpt = None,
    find_links: FindLinksOpt = None,
    lock_dir: LockDirOpt = None,
    check: Annotated[
        bool,
        typer.Option("--check", help="Resolve nothing; exit 1 if a lock no longer matches."),
    ] = False,
    jobs: Annotated[
        int, typer.Option("--jobs", min=1, max=16, help="Targets resolved at the same time.")
    ] = 4,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Resolve the dependencies into hash-pinned lock files, or check that they are current."""
    values = dict(locals())
    from installer.cli.common import guarded, make_logger, print_json
    from installer.commands.lock import LockRequest, refresh
    from installer.commands.lock import check as check_locks

    log = make_logger(verbose, quiet)
    request = build_request(LockRequest, values)
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
