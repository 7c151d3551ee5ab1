"""`comfy-install install`: plan the install of DIR, show it (`--dry-run`) or run it."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from installer.cli.common import fail, given_options, guarded, make_logger, print_json
from installer.cli.options import (
    DEFAULT_DIR,
    AllowUnverifiedOpt,
    ComfyuiRefOpt,
    ComfyuiUrlOpt,
    ConfigOpt,
    CudaDriverOpt,
    CudaToolkitOpt,
    DirArg,
    DryRunOpt,
    ExtraIndexUrlOpt,
    FindLinksOpt,
    ForceOpt,
    GpuOpt,
    IndexUrlOpt,
    JsonOpt,
    LockDirOpt,
    MinFreeGbOpt,
    NoLockOpt,
    OfflineOpt,
    OnlyOpt,
    PlatformOpt,
    PythonOpt,
    QuietOpt,
    SkipOpt,
    ToolsManifestOpt,
    TorchIndexOpt,
    VerboseOpt,
    build_request,
)

if TYPE_CHECKING:
    from installer.commands.executor import ExecutionResult
    from installer.core.log import InstallerLogger
    from installer.plan.records import InstallOptions

CLI_ONLY = frozenset({"ctx", "as_json", "verbose", "quiet"})
"""The parameters of `install` that are not fields of its request (output and prompts)."""


_RECORDABLE = {
    "config_path": "config_path",
    "tools_manifest_path": "tools_manifest_path",
    "comfyui_url": "comfyui_url",
    "comfyui_ref": "comfyui_ref",
    "torch_index": "torch_index",
    "python": "python",
    "gpu": "gpu",
    "cuda_driver": "cuda_driver",
    "index_url": "index_url",
    "extra_index_urls": "extra_index_urls",
    "find_links": "find_links",
    "lock_dir": "lock_dir",
    "no_lock": "no_lock",
}
"""The options a re-run reuses from the install's record when they are not given again."""


def install(
    ctx: typer.Context,
    install_dir: DirArg = DEFAULT_DIR,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
    config_path: ConfigOpt = None,
    tools_manifest_path: ToolsManifestOpt = None,
    gpu: GpuOpt = "auto",
    cuda_driver: CudaDriverOpt = None,
    cuda_toolkit: CudaToolkitOpt = None,
    platform: PlatformOpt = None,
    python: PythonOpt = None,
    comfyui_ref: ComfyuiRefOpt = None,
    comfyui_url: ComfyuiUrlOpt = None,
    torch_index: TorchIndexOpt = "auto",
    index_url: IndexUrlOpt = None,
    extra_index_urls: ExtraIndexUrlOpt = None,
    find_links: FindLinksOpt = None,
    only: OnlyOpt = None,
    skip: SkipOpt = None,
    force: ForceOpt = None,
    offline: OfflineOpt = False,
    allow_unverified: AllowUnverifiedOpt = False,
    min_free_gb: MinFreeGbOpt = None,
    no_lock: NoLockOpt = False,
    lock_dir: LockDirOpt = None,
    tune: Annotated[
        bool,
        typer.Option(
            "--tune/--no-tune",
            help="At the end, measure attention on this machine's GPU (`comfy-install tune`).",
        ),
    ] = True,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Install ComfyUI into DIR (or, with --dry-run, show exactly what would happen)."""
    values = dict(locals())
    from installer.plan.records import InstallOptions

    log = make_logger(verbose, quiet)
    command = ["install", str(install_dir), *(["--dry-run"] if dry_run else [])]
    options = build_request(
        InstallOptions,
        values,
        install_dir=install_dir.expanduser().absolute(),
        command_line=tuple(sys.argv[1:]) if sys.argv[1:2] == ["install"] else tuple(command),
        given=given_options(ctx, _RECORDABLE),
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
    from installer.cli.render import render_summary
    from installer.commands.install import install as run_install

    def summary(result: ExecutionResult) -> None:
        render_summary(result.outcomes, log.console, result.next_command)

    outcome = run_install(options, log, summary)
    if outcome.result.error is not None:
        fail(outcome.result.error, log, command, as_json, data=outcome.as_data())
    if as_json:
        print_json(command, outcome.as_data())
    return 0
