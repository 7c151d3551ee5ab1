"""The `comfy-install` command line (typer). Parses options and calls the rest.

No logic lives here. Heavy modules (pydantic, httpx, pynvml, rich tables) are
imported inside the commands, so `comfy-install --help` and `--version` start
fast. Every command reports failures the same way: one message and one hint on
stderr (or the JSON envelope on stdout with `--json`) and the exit code of the
CLI contract.
"""

from __future__ import annotations

from typing import Annotated

import typer

from installer import __version__
from installer.cli.benchmark import benchmark
from installer.cli.config import config_app
from installer.cli.doctor import doctor
from installer.cli.image import image_app
from installer.cli.install import install
from installer.cli.launch import LAUNCH_CONTEXT_SETTINGS, launch, stop
from installer.cli.lock import lock
from installer.cli.models import models_app
from installer.cli.nodes import nodes_app
from installer.cli.pins import pins_app
from installer.cli.rollback import rollback
from installer.cli.snapshot import snapshot_app
from installer.cli.status import status
from installer.cli.tune import TUNE_CONTEXT_SETTINGS, tune
from installer.cli.update import update

app = typer.Typer(
    name="comfy-install",
    help="Install ComfyUI on a GPU machine in one command: planned, verified, resumable.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


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


app.add_typer(config_app, name="config")
app.add_typer(models_app, name="models")
app.add_typer(nodes_app, name="nodes")
app.add_typer(pins_app, name="pins")
app.add_typer(image_app, name="image")
app.add_typer(snapshot_app, name="snapshot")
app.command()(install)
app.command()(doctor)
app.command()(status)
app.command(context_settings=LAUNCH_CONTEXT_SETTINGS)(launch)
app.command()(stop)
app.command()(lock)
app.command()(benchmark)
app.command(context_settings=TUNE_CONTEXT_SETTINGS)(tune)
app.command()(update)
app.command()(rollback)


def main() -> None:
    """Entry point of the `comfy-install` console script."""
    app()


if __name__ == "__main__":
    main()
