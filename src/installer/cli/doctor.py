"""`comfy-install doctor`: what this machine is, and what will and will not work on it."""

from __future__ import annotations

from installer import __version__
from installer.cli.common import guarded, make_logger, print_json
from installer.cli.options import DEFAULT_DIR, ConfigOpt, DirArg, JsonOpt, VerboseOpt


def doctor(
    install_dir: DirArg = DEFAULT_DIR,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Say what this machine is, what will work on it, and the state of DIR."""
    log = make_logger(verbose)
    command = ["doctor", str(install_dir)]

    def body() -> None:
        from installer.cli.render import render_checks, stdout_console
        from installer.commands.doctor import checks_from_report
        from installer.commands.doctor import doctor as run_doctor

        report = run_doctor(install_dir, config)
        if as_json:
            print_json(command, report)
        else:
            title = f"comfy-install doctor ({__version__})"
            render_checks(checks_from_report(report), stdout_console(soft_wrap=True), title)

    guarded(command, as_json, log, verbose, body)
