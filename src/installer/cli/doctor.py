"""`comfy-install doctor`: what this machine is, and what will and will not work on it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from installer import __version__
from installer.cli.common import (
    DEFAULT_DIR,
    DirArg,
    JsonOpt,
    VerboseOpt,
    guarded,
    make_logger,
    print_json,
)

if TYPE_CHECKING:
    pass


def doctor(
    install_dir: DirArg = DEFAULT_DIR,
    as_json: JsonOpt = False,
    config: Annotated[
        Path | None, typer.Option("--config", help="Another dependencies.json.")
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Say what this machine is, what will work on it, and the state of DIR."""
    from installer.plan.model import InstallOptions

    log = make_logger(verbose)
    command = ["doctor", str(install_dir)]

    def body() -> None:
        from installer.cli.render import render_checks, stdout_console
        from installer.commands.doctor import checks_from_report, doctor_report
        from installer.commands.planning import make_plan

        options = InstallOptions(
            install_dir=install_dir.expanduser().absolute(),
            config_path=config,
            dry_run=True,
            given=frozenset({"config_path"}) if config is not None else frozenset(),
        )
        context = make_plan(options, probe_build_tools=True)
        kitchen = None
        if context.probe is not None and context.probe.venv_python_exists:
            from installer.edges.kitchen import probe_kitchen
            from installer.edges.probe import layout

            venv_python = layout(context.probe.install_dir, context.plan.platform)["venv_python"]
            kitchen = probe_kitchen(venv_python)
        gpu = context.gpu
        if "gpu" in context.options.recorded:
            # The plan is the install's (made for the GPU it recorded); the machine checks
            # are of this machine's GPUs.
            from installer.edges.gpu import detect_gpus

            gpu = detect_gpus()
        report = doctor_report(context.env, gpu, context.plan, context.probe, kitchen)
        if as_json:
            print_json(command, report)
        else:
            title = f"comfy-install doctor ({__version__})"
            render_checks(checks_from_report(report), stdout_console(soft_wrap=True), title)

    guarded(command, as_json, log, verbose, body)
