"""`comfy-install nodes add|remove|list|missing`: parsing and rendering only.

The work is [`installer.commands.nodes`][installer.commands.nodes].
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from installer.cli.common import guarded, index_options, make_logger, print_json
from installer.cli.options import (
    AllowInstallScriptOpt,
    DryRunOpt,
    ExtraIndexUrlOpt,
    FindLinksOpt,
    IndexUrlOpt,
    JsonOpt,
    OfflineOpt,
    QuietOpt,
    VerboseOpt,
)

nodes_app = typer.Typer(
    help="Add, remove and list custom nodes, torch held; find the ones a workflow lacks.",
    no_args_is_help=True,
    rich_markup_mode=None,
    # As the root app's: `comfy-install nodes ...` runs this group on its own (entry.py).
    add_completion=False,
    pretty_exceptions_enable=False,
)

InstallDirArg = Annotated[Path, typer.Argument(help="Install directory.")]


@nodes_app.command("add")
def add(
    install_dir: InstallDirArg,
    source: Annotated[str, typer.Argument(help="The node's git URL or local path.")],
    ref: Annotated[
        str | None, typer.Option("--ref", help="Branch, tag or commit (default: its HEAD).")
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Folder name under custom_nodes/.")
    ] = None,
    skip_requirement: Annotated[
        list[str] | None,
        typer.Option("--skip-requirement", help="Leave this requirement out (repeatable)."),
    ] = None,
    no_deps: Annotated[
        bool, typer.Option("--no-deps", help="Install none of the node's requirements.")
    ] = False,
    allow_install_script: AllowInstallScriptOpt = False,
    dry_run: DryRunOpt = False,
    index_url: IndexUrlOpt = None,
    extra_index_url: ExtraIndexUrlOpt = None,
    find_links: FindLinksOpt = None,
    offline: OfflineOpt = False,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Add a custom node at a pinned commit; its requirements resolved with torch held."""
    log = make_logger(verbose, quiet)
    command = ["nodes", "add", str(install_dir), source]

    def body() -> None:
        from installer.commands.nodes import AddRequest, add_node

        result = add_node(
            AddRequest(
                install_dir=install_dir.expanduser().absolute(),
                source=source,
                ref=ref,
                name=name,
                skip_requirements=tuple(skip_requirement or ()),
                no_deps=no_deps,
                allow_install_script=allow_install_script,
                dry_run=dry_run,
                index=index_options(index_url, extra_index_url, find_links, offline),
            ),
            log,
        )
        if as_json:
            print_json(command, result.as_data())
            return
        if quiet and not result.dry_run:  # --quiet: what was skipped, not what was done
            for note in result.notes:
                typer.echo(f"{result.name}: {note}")
            return
        verb = "would add" if result.dry_run else "added"
        typer.echo(f"{verb} {result.name} at {result.commit}")
        for note in result.notes:
            typer.echo(f"  {note}")
        for line in result.install:
            typer.echo(f"  install {line}")
        if not result.install:
            typer.echo("  nothing to install")
        if result.torch_digest:
            typer.echo(f"  torch unchanged (sha256 {result.torch_digest[:16]})")

    guarded(command, as_json, log, verbose, body)


@nodes_app.command("remove")
def remove(
    install_dir: InstallDirArg,
    name: Annotated[str, typer.Argument(help="The node's folder name.")],
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Move a node's folder aside and remove the packages only it needed."""
    log = make_logger(verbose)
    command = ["nodes", "remove", str(install_dir), name]

    def body() -> None:
        from installer.commands.nodes import remove_node

        result = remove_node(install_dir.expanduser().absolute(), name, log)
        if as_json:
            print_json(command, result.as_data())
            return
        typer.echo(f"removed {result.name}: its folder is now {result.moved_to}")
        typer.echo(f"  packages removed: {', '.join(result.removed_packages) or 'none'}")
        for package, why in result.kept_packages.items():
            typer.echo(f"  kept {package}: {why}")

    guarded(command, as_json, log, verbose, body)


@nodes_app.command("list")
def list_(install_dir: InstallDirArg, as_json: JsonOpt = False) -> None:
    """List the custom nodes of DIR with their pinned commits."""
    log = make_logger()
    command = ["nodes", "list", str(install_dir)]

    def body() -> None:
        from installer.commands.nodes import list_nodes

        data = list_nodes(install_dir.expanduser().absolute())
        if as_json:
            print_json(command, data)
            return
        _render_list(data)

    guarded(command, as_json, log, False, body)


def _render_list(data: dict[str, Any]) -> None:
    if not data["nodes"]:
        typer.echo("no custom nodes")
    for node in data["nodes"]:
        commit = (node["commit"] or node["head"] or "?")[:12]
        changed = " (moved off its pin)" if node["changed"] else ""
        typer.echo(f"{node['name']:30} {commit:12} {node['origin']:6} {node['url'] or ''}{changed}")


@nodes_app.command("missing")
def missing(
    install_dir: InstallDirArg,
    workflow: Annotated[Path, typer.Argument(help="A workflow (API or UI JSON format).")],
    url: Annotated[
        str | None, typer.Option("--url", help="Ask this running ComfyUI (default: start one).")
    ] = None,
    cpu: Annotated[bool, typer.Option("--cpu", help="Start ComfyUI on the CPU.")] = False,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """List the node classes a workflow uses that the install lacks."""
    log = make_logger(verbose)
    command = ["nodes", "missing", str(install_dir), str(workflow)]

    def body() -> None:
        from installer.commands.nodes_missing import missing_nodes

        data = missing_nodes(install_dir.expanduser().absolute(), workflow, log, url=url, cpu=cpu)
        if as_json:
            print_json(command, data)
            return
        if not data["missing"]:
            typer.echo(f"all {len(data['used'])} node classes of the workflow are installed")
        for name in data["missing"]:
            typer.echo(name)

    guarded(command, as_json, log, verbose, body)
