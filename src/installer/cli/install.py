"""`comfy-install install`: plan the install of DIR, show it (`--dry-run`) or run it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from installer.cli.common import (
    DEFAULT_DIR,
    DirArg,
    JsonOpt,
    QuietOpt,
    VerboseOpt,
    fail,
    guarded,
    make_logger,
    print_json,
)

if TYPE_CHECKING:
    from installer.core.log import InstallerLogger
    from installer.plan.model import InstallOptions


def install(
    install_dir: DirArg = DEFAULT_DIR,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the plan; change nothing.")
    ] = False,
    as_json: JsonOpt = False,
    config: Annotated[
        Path | None, typer.Option("--config", help="Another dependencies.json.")
    ] = None,
    tools_manifest: Annotated[
        Path | None,
        typer.Option("--tools-manifest", help="Another tools_manifest.json (artifact checksums)."),
    ] = None,
    gpu: Annotated[
        str,
        typer.Option(
            "--gpu", help="auto, none, or a compute capability like 8.9 to plan for that GPU."
        ),
    ] = "auto",
    cuda_driver: Annotated[
        str | None,
        typer.Option(
            "--cuda-driver", help="With --gpu CC: newest CUDA the target driver supports."
        ),
    ] = None,
    cuda_toolkit: Annotated[
        str | None,
        typer.Option(
            "--cuda-toolkit",
            help="X.Y: plan as if nvcc X.Y (and its host compiler) were installed (with "
            "--dry-run); none: without a CUDA toolkit (no SageAttention source build).",
        ),
    ] = None,
    platform: Annotated[
        str | None,
        typer.Option("--platform", help="linux or windows (with --dry-run: plan for another OS)."),
    ] = None,
    python: Annotated[str | None, typer.Option("--python", help="Python for the venv.")] = None,
    comfyui_ref: Annotated[
        str | None,
        typer.Option("--comfyui-ref", help="Tag, branch or commit instead of the pinned commit."),
    ] = None,
    comfyui_url: Annotated[
        str | None,
        typer.Option("--comfyui-url", help="Clone ComfyUI from here (URL, path or git bundle)."),
    ] = None,
    torch_index: Annotated[
        str,
        typer.Option(
            "--torch-index",
            help="auto, cpu, a variant (cu128), default (uv's default index) or an index URL.",
        ),
    ] = "auto",
    index_url: Annotated[
        str | None, typer.Option("--index-url", help="Package index for every uv call (a mirror).")
    ] = None,
    extra_index_url: Annotated[
        list[str] | None,
        typer.Option("--extra-index-url", help="Extra package index (repeatable)."),
    ] = None,
    find_links: Annotated[
        list[str] | None, typer.Option("--find-links", help="Folder or URL of wheels (repeatable).")
    ] = None,
    only: Annotated[
        list[str] | None, typer.Option("--only", help="Run only these steps (comma separated).")
    ] = None,
    skip: Annotated[list[str] | None, typer.Option("--skip", help="Skip these steps.")] = None,
    force: Annotated[list[str] | None, typer.Option("--force", help="Redo these steps.")] = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="Use only caches and local files.")
    ] = False,
    allow_unverified: Annotated[
        bool,
        typer.Option(
            "--allow-unverified", help="Accept artifacts without a checksum in the manifest."
        ),
    ] = False,
    min_free_gb: Annotated[
        float | None, typer.Option("--min-free-gb", help="Free disk space DIR needs (GiB).")
    ] = None,
    no_lock: Annotated[
        bool, typer.Option("--no-lock", help="Resolve the requirements live, even with a lock.")
    ] = False,
    lock_dir: Annotated[
        Path | None,
        typer.Option("--lock-dir", help="Folder of lock files (default: the shipped locks/)."),
    ] = None,
    tune: Annotated[
        bool,
        typer.Option(
            "--tune/--no-tune",
            help="At the end, measure attention on this machine's GPU (`comfy-install tune`).",
        ),
    ] = True,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Install ComfyUI into DIR (or, with --dry-run, show exactly what would happen)."""
    from installer.plan.model import InstallOptions

    log = make_logger(verbose, quiet)
    command = ["install", str(install_dir), *(["--dry-run"] if dry_run else [])]
    options = InstallOptions(
        install_dir=install_dir.expanduser().absolute(),
        config_path=config,
        tools_manifest_path=tools_manifest,
        gpu=gpu,
        cuda_driver=cuda_driver,
        cuda_toolkit=cuda_toolkit,
        platform=platform,
        python=python,
        comfyui_ref=comfyui_ref,
        comfyui_url=comfyui_url,
        torch_index=torch_index,
        index_url=index_url,
        extra_index_urls=tuple(extra_index_url or ()),
        find_links=tuple(find_links or ()),
        only=tuple(only or ()),
        skip=tuple(skip or ()),
        force=tuple(force or ()),
        offline=offline,
        allow_unverified=allow_unverified,
        dry_run=dry_run,
        min_free_gb=min_free_gb,
        no_lock=no_lock,
        lock_dir=lock_dir,
        tune=tune,
        command_line=tuple(sys.argv[1:]) if sys.argv[1:2] == ["install"] else tuple(command),
    )
    code = guarded(command, as_json, log, verbose, lambda: _install(options, log, command, as_json))
    log.close()
    if code:
        raise typer.Exit(code)


def _install(
    options: InstallOptions, log: InstallerLogger, command: list[str], as_json: bool
) -> int:
    if options.dry_run:
        from installer.cli.render import render_plan, stdout_console
        from installer.commands.install import plan_install

        plan = plan_install(options)
        if not as_json:
            render_plan(plan, stdout_console())
        if plan.blocking:
            from installer.plan.preflight import blocking_error

            fail(
                blocking_error(plan.blocking),
                log,
                command,
                as_json,
                data=plan.model_dump(mode="json"),
            )
        if as_json:
            print_json(command, plan.model_dump(mode="json"))
        return 0
    from installer.commands.install import install as run_install

    outcome = run_install(options, log)
    if outcome.result.error is not None:
        fail(outcome.result.error, log, command, as_json, data=outcome.as_data())
    if as_json:
        print_json(command, outcome.as_data())
    return 0
