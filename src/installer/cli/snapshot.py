"""`comfy-install snapshot save|restore`: parsing and rendering only.

The work is [`installer.commands.snapshot`][installer.commands.snapshot] (save) and
[`installer.commands.snapshot_restore`][installer.commands.snapshot_restore] (restore).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from installer.cli.common import guarded, index_options, make_logger, print_json
from installer.cli.options import (
    AllowInstallScriptOpt,
    ConfigOpt,
    DryRunOpt,
    ExtraIndexUrlOpt,
    FindLinksOpt,
    GpuOpt,
    IndexUrlOpt,
    JsonOpt,
    OfflineOpt,
    QuietOpt,
    VerboseOpt,
)

snapshot_app = typer.Typer(
    help="Save an install to one JSON file; rebuild it from that file on a like machine.",
    no_args_is_help=True,
    rich_markup_mode=None,
    # As the root app's: `comfy-install snapshot ...` runs this group on its own (entry.py).
    add_completion=False,
    pretty_exceptions_enable=False,
)


@snapshot_app.command("save")
def save(
    install_dir: Annotated[Path, typer.Argument(help="Install directory.")],
    file: Annotated[Path, typer.Argument(help="The snapshot file to write (JSON).")],
    config: ConfigOpt = None,
    index_url: IndexUrlOpt = None,
    extra_index_url: ExtraIndexUrlOpt = None,
    find_links: FindLinksOpt = None,
    offline: OfflineOpt = False,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Write everything needed to rebuild the install in DIR to FILE."""
    log = make_logger(verbose)
    command = ["snapshot", "save", str(install_dir), str(file)]

    def body() -> None:
        from installer.commands.snapshot import save_snapshot

        data = save_snapshot(
            install_dir.expanduser().absolute(),
            file.expanduser().absolute(),
            log,
            config_path=config,
            index=index_options(index_url, extra_index_url, find_links, offline),
        )
        if as_json:
            print_json(command, data)
        else:
            typer.echo(f"wrote {data['file']}: {data['packages']} packages, nodes: "
                       f"{', '.join(data['nodes']) or 'none'}")  # fmt: skip

    guarded(command, as_json, log, verbose, body)


@snapshot_app.command("restore")
def restore(
    file: Annotated[Path, typer.Argument(help="The snapshot file.")],
    install_dir: Annotated[
        Path,
        typer.Argument(help="Install directory: new, empty, or an install (a new generation)."),
    ],
    dry_run: DryRunOpt = False,
    gpu: GpuOpt = "auto",
    source: Annotated[
        list[str] | None,
        typer.Option(
            "--source",
            help="NAME=URL: clone ComfyUI (NAME ComfyUI), a node or a source-built "
            "accelerator (its sageattention_sources name) from here instead (a local clone or "
            "git bundle; repeatable).",
        ),
    ] = None,
    allow_install_script: AllowInstallScriptOpt = False,
    keep_nodes: Annotated[
        bool,
        typer.Option(
            "--keep-nodes",
            help="Into an install whose custom node folders are at other commits than the "
            "snapshot's, or have local changes: restore anyway and leave those folders as they "
            "are.",
        ),
    ] = False,
    index_url: IndexUrlOpt = None,
    extra_index_url: ExtraIndexUrlOpt = None,
    find_links: FindLinksOpt = None,
    offline: OfflineOpt = False,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Rebuild the install of a snapshot in DIR: a new install, or a new generation of one.

    Into an existing install the snapshot becomes a new generation (`comfy-install rollback
    DIR` goes back); the user's folders are never changed, and node folders at other commits
    than the snapshot's or with local changes make it refuse unless --keep-nodes.
    """
    log = make_logger(verbose, quiet)
    command = ["snapshot", "restore", str(file), str(install_dir)]

    def body() -> None:
        from installer.commands.snapshot_restore import RestoreRequest, restore_snapshot
        from installer.core.errors import UsageError

        sources: dict[str, str] = {}
        for item in source or []:
            name, sep, url = item.partition("=")
            if not sep or not name or not url:
                raise UsageError(f"--source {item}: expected NAME=URL.")
            sources[name] = str(Path(url).absolute()) if Path(url).exists() else url
        data = restore_snapshot(
            RestoreRequest(
                file=file.expanduser().absolute(),
                install_dir=install_dir.expanduser().absolute(),
                dry_run=dry_run,
                gpu=gpu,
                sources=sources,
                index=index_options(index_url, extra_index_url, find_links, offline),
                allow_install_script=allow_install_script,
                keep_nodes=keep_nodes,
                command_line=tuple(sys.argv[1:]),
            ),
            log,
        )
        if as_json:
            print_json(command, data)
            return
        if not data["changes"]:
            typer.echo(f"{install_dir} already holds the snapshot")
        for change in data["changes"] if dry_run else []:
            now, then = change["now"] or "-", change["snapshot"] or "-"
            typer.echo(f"{change['kind']:7} {change['what']:40} {now} -> {then}")
        if not dry_run and data.get("switched"):
            typer.echo(f"restored {file} into {install_dir} as generation {data['generation']} "
                       f"({len(data['changes'])} changes; `comfy-install rollback {install_dir}` "
                       f"goes back to generation {data['previous_generation']})")  # fmt: skip
        elif not dry_run and data["changes"]:
            typer.echo(f"restored {file} into {install_dir} ({len(data['changes'])} changes)")

    guarded(command, as_json, log, verbose, body)
