"""`comfy-install config schema|validate`: the configuration files' JSON Schemas and checks."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from installer.cli.common import (
    JsonOpt,
    fail,
    guarded,
    make_logger,
    print_json,
)

config_app = typer.Typer(
    help="Inspect and check configuration files.", no_args_is_help=True, rich_markup_mode=None
)


@config_app.command("schema")
def config_schema(
    kind: Annotated[
        str, typer.Argument(help="dependencies, tools-manifest or model-manifest.")
    ] = "dependencies",
) -> None:
    """Print the JSON Schema of a configuration file."""
    import json

    from installer.core.config_files import SCHEMAS, json_schema
    from installer.core.errors import UsageError

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
        from installer.core.config_files import SCHEMAS, validate_file
        from installer.core.errors import UsageError

        if kind is not None and kind not in SCHEMAS:
            raise UsageError(f"Unknown kind {kind!r}.", f"Choose one of: {', '.join(SCHEMAS)}.")
        checked = validate_file(file, kind)
        if as_json:
            print_json(command, {"file": str(file), "kind": checked, "valid": True})
        else:
            log.success(f"{file} is a valid {checked} file.")

    guarded(command, as_json, log, False, body)
