"""The `comfy-install` command line (typer): parses options, calls the commands, prints.

What lives here: the typer app ([`app`][installer.cli.app]) that registers every command,
one module per command group, the shared option types and failure handling
([`common`][installer.cli.common]) and the rich renderings
([`render`][installer.cli.render]). No logic: every decision is made below. Heavy
modules are imported inside the commands, so `--help` and `--version` start fast.
May import: everything below it. Nothing imports the CLI (except the console entry point),
and no command module imports another command's module.
"""
