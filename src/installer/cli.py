"""The `comfy-install` command line (typer). Parses options and calls the rest.

No logic lives here. Heavy modules (pydantic, httpx, pynvml, rich tables) are
imported inside the commands, so `comfy-install --help` and `--version` start
fast. Every command reports failures the same way: one message and one hint on
stderr (or the JSON envelope on stdout with `--json`) and the exit code of the
CLI contract.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from installer import __version__
from installer.cli_benchmark import benchmark
from installer.cli_image import image_app
from installer.cli_launch import LAUNCH_CONTEXT_SETTINGS, launch, stop
from installer.cli_lock import lock
from installer.cli_models import models_app

if TYPE_CHECKING:
    from installer.errors import InstallerError
    from installer.log import InstallerLogger
    from installer.plan import InstallOptions

T = TypeVar("T")

app = typer.Typer(
    name="comfy-install",
    help="Install ComfyUI on a GPU machine in one command: planned, verified, resumable.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
config_app = typer.Typer(
    help="Inspect and check configuration files.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(config_app, name="config")
app.add_typer(models_app, name="models")
app.add_typer(image_app, name="image")

DEFAULT_DIR = Path("ComfyUI-install")

DirArg = Annotated[Path, typer.Argument(help="Install directory.", show_default=True)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Show subprocess output.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors.")]


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"comfy-install {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version_callback,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Install ComfyUI on a GPU machine in one command: planned, verified, resumable."""


def make_logger(verbose: bool = False, quiet: bool = False) -> InstallerLogger:
    """Return the terminal logger for the verbosity flags.

    Args:
        verbose: `--verbose`: subprocess output on the terminal too (verbosity 1).
        quiet: `--quiet`: only warnings and errors (verbosity -1); ``verbose`` wins when both are
            set.
    """
    from installer.log import InstallerLogger

    return InstallerLogger(verbosity=1 if verbose else (-1 if quiet else 0))


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
    from installer.envelope import dumps, envelope

    if as_json:
        sys.stdout.write(dumps(envelope(command, data=data, error=error)) + "\n")
    log.error(error.message, error.hint)
    if verbose:
        import traceback

        log.debug("".join(traceback.format_exception(error)))
    if log.log_path is not None:
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
    from installer.errors import InstallerError, InterruptedByUserError

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
    from installer.envelope import dumps, envelope

    sys.stdout.write(dumps(envelope(command, data=data, exit_code=exit_code)) + "\n")


@app.command()
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
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Install ComfyUI into DIR (or, with --dry-run, show exactly what would happen)."""
    from installer.plan import InstallOptions

    log = make_logger(verbose, quiet)
    command = ["install", str(install_dir), *(["--dry-run"] if dry_run else [])]
    options = InstallOptions(
        install_dir=install_dir.expanduser().absolute(),
        config_path=config,
        tools_manifest_path=tools_manifest,
        gpu=gpu,
        cuda_driver=cuda_driver,
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
        from installer.planning import make_plan
        from installer.render import render_plan, stdout_console

        plan = make_plan(options).plan
        if as_json:
            print_json(command, plan.model_dump(mode="json"))
        else:
            render_plan(plan, stdout_console())
        return 0
    from installer.executor import execute

    result = execute(options, log)
    if result.error is not None:
        fail(result.error, log, command, as_json, data=result.as_data())
    if as_json:
        print_json(command, result.as_data())
    return 0


@app.command()
def doctor(
    install_dir: DirArg = DEFAULT_DIR,
    as_json: JsonOpt = False,
    config: Annotated[
        Path | None, typer.Option("--config", help="Another dependencies.json.")
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Say what this machine is, what will work on it, and the state of DIR."""
    from installer.plan import InstallOptions

    log = make_logger(verbose)
    command = ["doctor", str(install_dir)]

    def body() -> None:
        from installer.doctor import checks_from_report, doctor_report
        from installer.planning import make_plan
        from installer.render import render_checks

        options = InstallOptions(
            install_dir=install_dir.expanduser().absolute(), config_path=config, dry_run=True
        )
        context = make_plan(options, probe_build_tools=True)
        report = doctor_report(context.env, context.gpu, context.plan, context.probe)
        if as_json:
            print_json(command, report)
        else:
            render_checks(
                checks_from_report(report), log.console, f"comfy-install doctor ({__version__})"
            )

    guarded(command, as_json, log, verbose, body)


@app.command()
def status(
    install_dir: DirArg = DEFAULT_DIR,
    as_json: JsonOpt = False,
) -> None:
    """Show which steps of the install in DIR are done, when, and with which inputs."""
    log = make_logger()
    command = ["status", str(install_dir)]

    def body() -> None:
        from installer.status import install_status, render_status

        report = install_status(install_dir.expanduser().absolute())
        if as_json:
            print_json(command, report)
        else:
            render_status(report, log.console)

    guarded(command, as_json, log, False, body)


@config_app.command("schema")
def config_schema(
    kind: Annotated[
        str, typer.Argument(help="dependencies, tools-manifest or model-manifest.")
    ] = "dependencies",
) -> None:
    """Print the JSON Schema of a configuration file."""
    import json

    from installer.config import SCHEMAS, json_schema
    from installer.errors import UsageError

    log = make_logger()
    if kind not in SCHEMAS:
        fail(
            UsageError(f"Unknown schema {kind!r}.", f"Choose one of: {', '.join(SCHEMAS)}."),
            log,
            ["config", "schema", kind],
            False,
        )
    sys.stdout.write(json.dumps(json_schema(kind), indent=2) + "\n")


@config_app.command("validate")
def config_validate(
    file: Annotated[Path, typer.Argument(help="The file to check.")],
    kind: Annotated[
        str | None,
        typer.Option(
            "--kind", help="dependencies, tools-manifest or model-manifest (default: guessed)."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check a configuration file against its schema."""
    log = make_logger()
    command = ["config", "validate", str(file)]

    def body() -> None:
        from installer.config import SCHEMAS, validate_file
        from installer.errors import UsageError

        if kind is not None and kind not in SCHEMAS:
            raise UsageError(f"Unknown kind {kind!r}.", f"Choose one of: {', '.join(SCHEMAS)}.")
        checked = validate_file(file, kind)
        if as_json:
            print_json(command, {"file": str(file), "kind": checked, "valid": True})
        else:
            log.success(f"{file} is a valid {checked} file.")

    guarded(command, as_json, log, False, body)


app.command(context_settings=LAUNCH_CONTEXT_SETTINGS)(launch)
app.command()(stop)
app.command()(lock)
app.command()(benchmark)


def main() -> None:
    """Entry point of the `comfy-install` console script."""
    app()


if __name__ == "__main__":
    main()
