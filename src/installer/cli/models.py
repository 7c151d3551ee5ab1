"""`comfy-install models`: download, organize and share model files.

The commands parse options, call [`installer.commands.models`][installer.commands.models]
and render what it returns;
like the rest of the CLI they hold no logic, import heavy modules (httpx,
pydantic, the downloader) only when a command runs, and report failures with
one message, one hint and the exit code of the CLI contract (or the JSON
envelope with `--json`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from installer.cli.options import (
    DEFAULT_DIR,
    AllowUnverifiedOpt,
    DirArg,
    DryRunOpt,
    JsonOpt,
    QuietOpt,
    VerboseOpt,
)

if TYPE_CHECKING:
    from rich.console import Console

    from installer.models.organize import OrganizePlan

models_app = typer.Typer(
    help="Download, organize and share model files (ComfyUI/models/<kind>/).",
    no_args_is_help=True,
    rich_markup_mode=None,
)


ManifestOpt = Annotated[
    Path | None,
    typer.Option(
        "--manifest",
        help="A model manifest (JSON), see `comfy-install config schema model-manifest`.",
    ),
]
SharedOpt = Annotated[
    Path | None,
    typer.Option(
        "--shared-models",
        help="Keep the files in this shared store (laid out like "
        "ComfyUI/models) and point ComfyUI at it with extra_model_paths.yaml.",
    ),
]
LinkOpt = Annotated[
    bool,
    typer.Option(
        "--link",
        help="Symlink each shared file into models/<kind>/ (copy where "
        "symlinks are not allowed) instead of writing extra_model_paths.yaml.",
    ),
]
_ACTION_STYLE = {
    "move": "green",
    "remove-duplicate": "cyan",
    "skip": "yellow",
    "unclassified": "dim",
}


@models_app.command("download")
def download(
    install_dir: DirArg = DEFAULT_DIR,
    manifest: ManifestOpt = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Downloads at a time.")] = 4,
    allow_unverified: AllowUnverifiedOpt = False,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="When a different file already has an entry's name and the entry has no "
            "sha256, move that file aside (renamed NAME.replaced-<date>.EXT, never deleted) "
            "instead of stopping.",
        ),
    ] = False,
    shared_models: SharedOpt = None,
    link: LinkOpt = False,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Download the files of a model manifest into DIR/ComfyUI/models/<kind>/, verified.

    Without --manifest, the `models` list of the shipped dependencies.json is used.
    A file already there is never written over: one that matches the entry's sha256
    is kept, one that does not is moved aside once the right file is downloaded, and
    without a sha256 a different file stops the download (exit code 1) unless
    --replace moves it aside.
    """
    from installer.cli.common import guarded, make_logger, print_json
    from installer.commands.models import DownloadRequest
    from installer.commands.models import download as run_download

    log = make_logger(verbose, quiet)
    command = ["models", "download", str(install_dir)]

    request = DownloadRequest(
        install_dir=install_dir,
        manifest=manifest,
        jobs=jobs,
        allow_unverified=allow_unverified,
        replace=replace,
        shared_models=shared_models,
        link=link,
    )
    data = guarded(command, as_json, log, verbose, lambda: run_download(request, log))
    if as_json:
        print_json(command, data)
    log.close()


@models_app.command("organize")
def organize(
    install_dir: DirArg = DEFAULT_DIR,
    sources: Annotated[
        list[Path] | None,
        typer.Option(
            "--from",
            metavar="<path>",
            help="Also organize the model files in this folder, or this file (repeatable).",
        ),
    ] = None,
    manifest: ManifestOpt = None,
    dry_run: DryRunOpt = False,
    shared_models: SharedOpt = None,
    link: LinkOpt = False,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Move loose model files into DIR/ComfyUI/models/<kind>/.

    Loose files are those directly in ComfyUI/models/ and in the --from folders.
    Each is classified by the manifest (file name or sha256), else by its
    safetensors header, else by its name. A different file of the same name is
    never overwritten; an identical one makes the loose copy a duplicate that is
    removed; files of no clear kind stay where they are.
    """
    from installer.cli.common import guarded, make_logger, print_json
    from installer.commands.models import OrganizeRequest, report_share
    from installer.commands.models import organize as run_organize

    log = make_logger(verbose, quiet)
    command = ["models", "organize", str(install_dir), *(["--dry-run"] if dry_run else [])]

    request = OrganizeRequest(
        install_dir=install_dir,
        sources=tuple(sources or ()),
        manifest=manifest,
        dry_run=dry_run,
        shared_models=shared_models,
        link=link,
    )

    def body() -> None:
        outcome = run_organize(request, log)
        if as_json:
            print_json(command, outcome.as_data())
        elif log.verbosity >= 0:
            _render_organize(outcome.plan, log.console, dry_run=dry_run)
        if outcome.shared is not None:
            report_share(outcome.shared, log)

    guarded(command, as_json, log, verbose, body)
    log.close()


def _short(path: Path, plan: OrganizePlan) -> str:
    """Show ``path`` relative to the target or models folder when it is inside one."""
    for base in (plan.target_dir, plan.models_dir):
        if path.is_relative_to(base):
            return str(path.relative_to(base))
    return str(path)


def _render_organize(plan: OrganizePlan, console: Console, *, dry_run: bool) -> None:
    """Print the organize plan as a table, then a one-line summary."""
    from rich.markup import escape
    from rich.table import Table

    if not plan.actions:
        console.print("No loose model files found.")
        return
    title = f"{'Dry run, nothing changed: ' if dry_run else ''}loose files → {plan.target_dir}"
    table = Table(title=escape(title), expand=False)
    table.add_column("file")
    table.add_column("kind")
    table.add_column("action")
    table.add_column("to / why")
    for action in plan.actions:
        where = "" if action.destination is None else f"→ {_short(action.destination, plan)}\n"
        style = _ACTION_STYLE[action.action]
        table.add_row(
            escape(_short(action.source, plan)),
            escape(action.classification.kind or "?"),
            f"[{style}]{action.action}[/]",
            escape(where + action.reason),
        )
    console.print(table)
    counts = plan.counts()
    verb = "would be" if dry_run else "were"
    console.print(
        f"{counts['move']} file(s) {verb} moved, {counts['remove-duplicate']} duplicate(s) "
        f"{verb} removed, {counts['skip']} skipped, {counts['unclassified']} left unclassified."
    )


@models_app.command("share")
def share(
    install_dir: Annotated[Path, typer.Argument(help="Install directory.")],
    store: Annotated[
        Path,
        typer.Argument(
            help="The shared model store (a folder laid out like "
            "ComfyUI/models, e.g. on a network volume)."
        ),
    ],
    link: Annotated[
        bool,
        typer.Option(
            "--link",
            help="Symlink each file into models/<kind>/ (copy where "
            "symlinks are not allowed) instead of writing extra_model_paths.yaml.",
        ),
    ] = False,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Point the ComfyUI in DIR at a shared model store instead of copying models.

    Writes the comfy_install_shared section of DIR/ComfyUI/extra_model_paths.yaml
    (the rest of the file is kept), or with --link links each file.
    """
    from installer.cli.common import guarded, make_logger, print_json
    from installer.commands.models import share as run_share

    log = make_logger(verbose, quiet)
    command = ["models", "share", str(install_dir), str(store)]

    result = guarded(
        command, as_json, log, verbose, lambda: run_share(install_dir, store, link, log)
    )
    if as_json:
        print_json(command, result.as_dict())
    log.close()
