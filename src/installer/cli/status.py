"""`comfy-install status`: which steps of an install are done, when, and with which inputs."""

from __future__ import annotations

from installer.cli.common import guarded, make_logger, print_json
from installer.cli.options import DEFAULT_DIR, DirArg, JsonOpt


def status(
    install_dir: DirArg = DEFAULT_DIR,
    as_json: JsonOpt = False,
) -> None:
    """Show which steps of the install in DIR are done, when, and with which inputs."""
    log = make_logger()
    command = ["status", str(install_dir)]

    def body() -> None:
        from installer.cli.render import render_status, stdout_console
        from installer.commands.status import install_status

        report = install_status(install_dir.expanduser().absolute())
        if as_json:
            print_json(command, report)
        else:
            render_status(report, stdout_console(soft_wrap=True))

    guarded(command, as_json, log, False, body)
