"""What every command shares: the logger, failures and JSON.

Command modules import these helpers from here, never from each other or from
[`installer.cli.app`][installer.cli.app]. The options live in
[`installer.cli.options`][installer.cli.options]; the few most used ones (`DirArg`,
`JsonOpt`, `VerboseOpt`, `QuietOpt`, `DEFAULT_DIR`) are also importable from here.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer

from installer.cli.options import DEFAULT_DIR, DirArg, JsonOpt, QuietOpt, VerboseOpt

if TYPE_CHECKING:
    from installer.core.errors import InstallerError
    from installer.core.log import InstallerLogger

T = TypeVar("T")

__all__ = [
    "DEFAULT_DIR",
    "DirArg",
    "JsonOpt",
    "QuietOpt",
    "VerboseOpt",
    "fail",
    "given_options",
    "guarded",
    "make_logger",
    "print_json",
]


def given_options(ctx: typer.Context, fields: Mapping[str, str]) -> frozenset[str]:
    """Return the fields whose options the user gave (on the command line, not by default).

    A re-run reuses the inputs an install recorded for every option not given, so the
    command must tell `--torch-index auto` typed from `auto` left as the default.

    Args:
        ctx: The command's typer context.
        fields: Parameter name (as the command function names it) → field name of the
            request, e.g. ``{"config": "config_path"}``.
    """
    given: set[str] = set()
    for param, field in fields.items():
        source = ctx.get_parameter_source(param)
        # By name: typer may bring its own copy of click's ParameterSource.
        if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"):
            given.add(field)
    return frozenset(given)


def make_logger(verbose: bool = False, quiet: bool = False) -> InstallerLogger:
    """Return the terminal logger for the verbosity flags, with the CLI's download bars.

    Args:
        verbose: `--verbose`: subprocess output on the terminal too (verbosity 1).
        quiet: `--quiet`: only warnings and errors (verbosity -1); ``verbose`` wins when both are
            set.
    """
    from installer.cli.render import TransferBars
    from installer.core.log import InstallerLogger

    log = InstallerLogger(verbosity=1 if verbose else (-1 if quiet else 0))
    log.transfer_display = lambda requests: TransferBars(log.console, requests)
    return log


def fail(
    error: InstallerError,
    log: InstallerLogger,
    command: list[str],
    as_json: bool,
    verbose: bool = False,
    data: Any = None,
) -> NoReturn:
    """Report ``error`` once (stderr, or the JSON envelope) and exit with its code.

    Args:
        error: The error to report; its exit code becomes the process's.
        log: The command's logger; it prints the message and hint, then is closed.
        command: The command words and arguments, e.g. ``["install", "/srv/x"]``.
        as_json: `--json` was given: also print the envelope, with the error, on stdout.
        verbose: Also write the traceback to the log (the terminal shows it with `--verbose`).
        data: The envelope's `data`, e.g. the steps run before the failure; ``{}`` when None.

    Raises:
        typer.Exit: Always, with the error's exit code.
    """
    from installer.core.envelope import dumps, envelope

    if as_json:
        sys.stdout.write(dumps(envelope(command, data=data, error=error)) + "\n")
    log.error(error.message, error.hint)
    if verbose:
        import traceback

        log.debug("".join(traceback.format_exception(error)))
    # The footer names the log file unless the message or hint did already (a generation's
    # failed build, a launch that did not get ready): each is said once.
    if log.log_path is not None and str(log.log_path) not in f"{error.message} {error.hint}":
        log.info(f"log: {log.log_path}")
    log.close()
    raise typer.Exit(int(error.exit_code))


def guarded(
    command: list[str], as_json: bool, log: InstallerLogger, verbose: bool, body: Callable[[], T]
) -> T:
    """Run ``body``; turn InstallerError and Ctrl-C into one message and an exit code.

    Args:
        command: The command words and arguments, e.g. ``["doctor", "/srv/x"]``.
        as_json: `--json` was given: a failure is also printed as the JSON envelope.
        log: The command's logger.
        verbose: Write the traceback of a failure to the log.
        body: The command's work, called with no arguments.

    Returns:
        What ``body`` returns.

    Raises:
        typer.Exit: ``body`` raised an InstallerError (its exit code) or was interrupted (the exit
            code of InterruptedByUserError).
    """
    from installer.core.errors import InstallerError, InterruptedByUserError

    try:
        return body()
    except InstallerError as error:
        fail(error, log, command, as_json, verbose)
    except KeyboardInterrupt:
        fail(InterruptedByUserError("Interrupted."), log, command, as_json, verbose)


def print_json(command: list[str], data: Any, exit_code: int = 0) -> None:
    """Print a result in the JSON envelope on stdout.

    Args:
        command: The command words and arguments, e.g. ``["status", "/srv/x"]``.
        data: The command's result, JSON-serialisable (other values are written with `str()`).
        exit_code: The envelope's `exit_code`; non-zero makes its `status` `error`.
    """
    from installer.core.envelope import dumps, envelope

    sys.stdout.write(dumps(envelope(command, data=data, exit_code=exit_code)) + "\n")


def index_options(
    index_url: str | None,
    extra_index_urls: list[str] | None,
    find_links: list[str] | None,
    offline: bool,
) -> Any:
    """Return the IndexOptions of the mirror options, or None when none was given.

    Args:
        index_url: `--index-url`.
        extra_index_urls: `--extra-index-url` values.
        find_links: `--find-links` values.
        offline: `--offline`.
    """
    if not (index_url or extra_index_urls or find_links or offline):
        return None
    from installer.core.uv_options import IndexOptions

    return IndexOptions(
        index_url=index_url,
        extra_index_urls=list(extra_index_urls or []),
        find_links=[
            str(Path(link).absolute()) if Path(link).exists() else link for link in find_links or []
        ],
        offline=offline,
    )
