"""`comfy-install models`: download, organize and share model files.

The commands parse options and call [`installer.models`][installer.models];
like the rest of the CLI they hold no logic, import heavy modules (httpx,
pydantic, the downloader) only when a command runs, and report failures with
one message, one hint and the exit code of the CLI contract (or the JSON
envelope with `--json`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from installer.cli.common import DEFAULT_DIR

if TYPE_CHECKING:
    from rich.console import Console

    from installer.core.log import InstallerLogger
    from installer.models.organize import OrganizePlan
    from installer.models.share import ShareResult

models_app = typer.Typer(
    help="Download, organize and share model files (ComfyUI/models/<kind>/).",
    no_args_is_help=True,
    rich_markup_mode=None,
)


DirArg = Annotated[Path, typer.Argument(help="Install directory.", show_default=True)]
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
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Show more detail.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors.")]

_ACTION_STYLE = {
    "move": "green",
    "remove-duplicate": "cyan",
    "skip": "yellow",
    "unclassified": "dim",
}


def _comfyui_dir(install_dir: Path) -> Path:
    """Return `DIR/ComfyUI`, which must exist (never created here: step 5 clones into it)."""
    from installer.core.errors import UsageError

    comfyui = install_dir.expanduser().absolute() / "ComfyUI"
    if not comfyui.is_dir():
        raise UsageError(
            f"{comfyui} does not exist, so {install_dir} holds no ComfyUI install.",
            f"Install first (`comfy-install install {install_dir}`), or give the install "
            "directory as DIR.",
        )
    return comfyui


def _check_link(link: bool, shared_models: Path | None) -> None:
    from installer.core.errors import UsageError

    if link and shared_models is None:
        raise UsageError("--link needs --shared-models PATH.", "Add --shared-models PATH.")


def _report_share(result: ShareResult, log: InstallerLogger) -> None:
    if result.config_path is not None:
        log.success(f"ComfyUI reads models from {result.store} ({result.config_path}).")
        return
    counts = {
        action: sum(link.action == action for link in result.links)
        for action in ("linked", "copied", "present", "skipped")
    }
    log.success(
        f"{len(result.links)} shared file(s) in {result.store}: "
        + ", ".join(f"{count} {action}" for action, count in counts.items())
    )
    for link in result.links:
        if link.action == "skipped":
            log.warn(f"{link.destination}: {link.reason}")


@models_app.command("download")
def download(
    install_dir: DirArg = DEFAULT_DIR,
    manifest: ManifestOpt = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Downloads at a time.")] = 4,
    allow_unverified: Annotated[
        bool, typer.Option("--allow-unverified", help="Accept files without a sha256.")
    ] = False,
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

    log = make_logger(verbose, quiet)
    command = ["models", "download", str(install_dir)]

    def body() -> None:
        from installer.core.config_files import load_dependencies, load_model_manifest, shipped_path
        from installer.models.downloads import fetch_planned_models
        from installer.models.share import check_shared_store, share_models
        from installer.plan.models import plan_model_downloads

        _check_link(link, shared_models)
        comfyui = _comfyui_dir(install_dir)
        models_dir = comfyui / "models"
        store = (
            None
            if shared_models is None
            else check_shared_store(shared_models.expanduser(), models_dir)
        )
        if manifest is not None:
            entries, source = load_model_manifest(manifest).models, str(manifest)
        else:
            entries, source = load_dependencies().models, str(shipped_path("dependencies.json"))
        target = store or models_dir
        planned = plan_model_downloads(
            entries, target, allow_unverified=allow_unverified, source=source
        )
        results = fetch_planned_models(
            planned, log=log, jobs=jobs, allow_unverified=allow_unverified, replace=replace
        )
        shared = None if store is None else share_models(comfyui, store, log=log, link=link)
        fetched = sum(not result.skipped for result in results)
        moved = [result.moved_aside for result in results if result.moved_aside is not None]
        if planned:
            log.success(
                f"{len(results)} model file(s) in {target}: {fetched} downloaded, "
                f"{len(results) - fetched} already present"
                + (
                    f"; {len(moved)} file(s) that were in the way moved aside (kept)."
                    if moved
                    else "."
                )
            )
        else:
            log.info(f"{source} lists no models; nothing to download.")
        if shared is not None:
            _report_share(shared, log)
        if as_json:
            files = [
                {
                    "index": item.index,
                    "kind": item.kind,
                    "url": item.request.url,
                    "path": str(result.path),
                    "sha256": result.sha256,
                    "size": result.size,
                    "status": "present"
                    if result.skipped
                    else ("replaced" if result.moved_aside else "downloaded"),
                    "moved_aside": None if result.moved_aside is None else str(result.moved_aside),
                }
                for item, result in zip(planned, results, strict=True)
            ]
            data: dict[str, Any] = {
                "manifest": source,
                "target_dir": str(target),
                "files": files,
                "shared": None if shared is None else shared.as_dict(),
            }
            print_json(command, data)

    guarded(command, as_json, log, verbose, body)
    log.close()


@models_app.command("organize")
def organize(
    install_dir: DirArg = DEFAULT_DIR,
    sources: Annotated[
        list[Path] | None,
        typer.Option(
            "--from",
            help="Also organize the model files in this folder, or this file (repeatable).",
        ),
    ] = None,
    manifest: ManifestOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the moves; change nothing.")
    ] = False,
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

    log = make_logger(verbose, quiet)
    command = ["models", "organize", str(install_dir), *(["--dry-run"] if dry_run else [])]

    def body() -> None:
        from installer.core.config_files import load_model_manifest
        from installer.models.classify import ManifestIndex
        from installer.models.organize import apply_organize, plan_organize
        from installer.models.share import check_shared_store, share_models

        _check_link(link, shared_models)
        comfyui = _comfyui_dir(install_dir)
        models_dir = comfyui / "models"
        store = (
            None
            if shared_models is None
            else check_shared_store(shared_models.expanduser(), models_dir)
        )
        index = None
        if manifest is not None:
            entries = load_model_manifest(manifest).models
            index = ManifestIndex.from_entries(entries, source=str(manifest))
        plan = plan_organize(
            models_dir,
            sources=[path.expanduser() for path in sources or ()],
            manifest=index,
            target_dir=store,
        )
        shared = None
        if not dry_run:
            apply_organize(plan, log=log)
            if store is not None:
                shared = share_models(comfyui, store, log=log, link=link)
        if as_json:
            data: dict[str, Any] = {
                "dry_run": dry_run,
                **plan.as_dict(),
                "shared": None if shared is None else shared.as_dict(),
            }
            print_json(command, data)
        elif log.verbosity >= 0:
            _render_organize(plan, log.console, dry_run=dry_run)
        if shared is not None:
            _report_share(shared, log)

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

    log = make_logger(verbose, quiet)
    command = ["models", "share", str(install_dir), str(store)]

    def body() -> None:
        from installer.models.share import share_models

        comfyui = _comfyui_dir(install_dir)
        result = share_models(comfyui, store.expanduser(), log=log, link=link)
        _report_share(result, log)
        if as_json:
            print_json(command, result.as_dict())

    guarded(command, as_json, log, verbose, body)
    log.close()
