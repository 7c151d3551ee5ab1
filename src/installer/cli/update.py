"""`comfy-install update`: parse the options, call the command, render the diff or result."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from installer.cli.common import given_options, guarded, make_logger, print_json
from installer.cli.options import (
    DEFAULT_DIR,
    AllowUnverifiedOpt,
    ComfyuiRefOpt,
    ComfyuiUrlOpt,
    ConfigOpt,
    CudaDriverOpt,
    DirArg,
    DryRunOpt,
    ExtraIndexUrlOpt,
    FindLinksOpt,
    GpuOpt,
    IndexUrlOpt,
    JsonOpt,
    MinFreeGbOpt,
    OfflineOpt,
    PythonOpt,
    QuietOpt,
    ToolsManifestOpt,
    UpdateTorchIndexOpt,
    VerboseOpt,
)

if TYPE_CHECKING:
    from rich.console import Console

    from installer.plan.update import UpdateDiff


_RECORDABLE = {
    "config": "config_path",
    "tools_manifest": "tools_manifest_path",
    "gpu": "gpu",
    "cuda_driver": "cuda_driver",
    "index_url": "index_url",
    "extra_index_url": "extra_index_urls",
    "find_links": "find_links",
}
"""The options an update records in its new generation when the user gives them (by parameter
name); the ComfyUI source, torch index and Python are recorded always."""


def update(
    ctx: typer.Context,
    install_dir: DirArg = DEFAULT_DIR,
    comfyui_ref: ComfyuiRefOpt = None,
    comfyui_url: ComfyuiUrlOpt = None,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
    keep: Annotated[
        int, typer.Option("--keep", help="Generations kept after the switch (the current one too).")
    ] = 2,
    config: ConfigOpt = None,
    tools_manifest: ToolsManifestOpt = None,
    gpu: GpuOpt = "auto",
    cuda_driver: CudaDriverOpt = None,
    python: PythonOpt = None,
    torch_index: UpdateTorchIndexOpt = None,
    index_url: IndexUrlOpt = None,
    extra_index_url: ExtraIndexUrlOpt = None,
    find_links: FindLinksOpt = None,
    offline: OfflineOpt = False,
    allow_unverified: AllowUnverifiedOpt = False,
    min_free_gb: MinFreeGbOpt = None,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Move DIR to this comfy-install's pins (or --comfyui-ref) in a new generation.

    The new generation is built beside the running one and verified before it becomes
    current; the user's folders are not touched.
    """
    from installer.commands.update import UpdateRequest
    from installer.plan.records import InstallOptions

    log = make_logger(verbose, quiet)
    target = install_dir.expanduser().absolute()
    command = ["update", str(install_dir), *(["--dry-run"] if dry_run else [])]
    words = tuple(sys.argv[1:]) if sys.argv[1:2] == ["update"] else tuple(command)
    request = UpdateRequest(
        install_dir=target,
        comfyui_ref=comfyui_ref,
        comfyui_url=comfyui_url,
        torch_index=torch_index,
        python=python,
        keep=keep,
        dry_run=dry_run,
        command_line=words,
        options=InstallOptions(
            install_dir=target,
            config_path=config,
            tools_manifest_path=tools_manifest,
            gpu=gpu,
            cuda_driver=cuda_driver,
            index_url=index_url,
            extra_index_urls=tuple(extra_index_url or ()),
            find_links=tuple(find_links or ()),
            offline=offline,
            allow_unverified=allow_unverified,
            min_free_gb=min_free_gb,
            given=given_options(ctx, _RECORDABLE),
        ),
    )

    def body() -> None:
        from installer.cli.render import stdout_console

        if dry_run:
            from installer.commands.update import preview_update

            diff = preview_update(request, log).diff
            if as_json:
                print_json(command, diff.model_dump(mode="json"))
            else:
                render_diff(diff, stdout_console())
            return
        from installer.commands.update import update as run_update

        result = run_update(request, log)
        if as_json:
            print_json(command, result.as_data())
            return
        if result.switched and result.generation is not None:
            log.info(
                f"generation {result.generation.id} is current: ComfyUI "
                f"{(result.generation.comfyui_commit or '')[:12]}, torch {result.generation.torch}"
                + (f"; pruned {', '.join(map(str, result.pruned))}" if result.pruned else "")
            )
            log.info(f"Next: comfy-install launch {install_dir}  (back: comfy-install rollback)")

    guarded(command, as_json, log, verbose, body)
    log.close()


def render_diff(diff: UpdateDiff, console: Console) -> None:
    """Print the change an update makes, old -> new, as tables.

    Args:
        diff: The planned update.
        console: Where to print (stdout).
    """
    from rich.markup import escape
    from rich.table import Table

    def arrow(old: str | None, new: str | None) -> str:
        if old == new:
            return escape(f"{old or '-'} (unchanged)")
        return escape(f"{old or '-'} -> {new or '-'}")

    console.print(
        f"update {escape(diff.install_dir)}: generation {diff.current_generation} -> "
        f"{diff.new_generation} (built in {escape(diff.new_root)})"
    )
    for line in diff.inputs:
        console.print(escape(line))
    if diff.up_to_date:
        console.print("already up to date: nothing would be built")
    elif diff.outdated is not None:
        console.print(
            f"generation {diff.current_generation} is at the target commit, but this update "
            f"would change it: {escape(diff.outdated)}"
        )
    table = Table(title="What changes")
    table.add_column("what")
    table.add_column("old -> new")
    table.add_column("note")
    table.add_row("ComfyUI", arrow(diff.comfyui.old, diff.comfyui.new), escape(diff.comfyui.note))
    table.add_row(
        "torch build",
        arrow(diff.torch_build.old, diff.torch_build.new),
        escape(diff.torch_build.note),
    )
    for group, changes in (
        ("", diff.torch),
        ("accelerator ", diff.accelerators),
        ("requirement ", diff.requirements),
        ("custom node ", diff.custom_nodes),
    ):
        for change in changes:
            table.add_row(
                escape(group + change.name), arrow(change.old, change.new), escape(change.note)
            )
    console.print(table)
    console.print("verified before the switch:")
    for line in diff.verify:
        console.print(f"  - {escape(line)}")
    console.print(f"switch: {escape(diff.switch)}")
    if diff.prune:
        console.print(f"then pruned: generation {', '.join(map(str, diff.prune))}")
    for warning in diff.warnings:
        console.print(f"warning: {escape(warning)}")
