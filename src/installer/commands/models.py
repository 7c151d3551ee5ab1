"""What `comfy-install models` does: download, organize and share model files.

Each verb takes a request built by the CLI and returns data (the `--json` result, or
the organize plan the CLI renders as a table); the work itself is
[`installer.models`][installer.models]. Heavy modules are imported inside the
functions, so the CLI can import this module cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from installer.core.log import InstallerLogger
    from installer.models.organize import OrganizePlan
    from installer.models.share import ShareResult


@dataclass(frozen=True)
class DownloadRequest:
    """The options of one `comfy-install models download` run."""

    install_dir: Path
    manifest: Path | None = None
    jobs: int = 4
    allow_unverified: bool = False
    replace: bool = False
    shared_models: Path | None = None
    link: bool = False


@dataclass(frozen=True)
class OrganizeRequest:
    """The options of one `comfy-install models organize` run."""

    install_dir: Path
    sources: tuple[Path, ...] = ()
    manifest: Path | None = None
    dry_run: bool = False
    shared_models: Path | None = None
    link: bool = False


@dataclass(frozen=True)
class OrganizeOutcome:
    """The organize plan (applied unless a dry run) and the share made after it, if any."""

    plan: OrganizePlan
    dry_run: bool
    shared: ShareResult | None = None

    def as_data(self) -> dict[str, Any]:
        """Return the outcome as the `data` of the JSON envelope."""
        return {
            "dry_run": self.dry_run,
            **self.plan.as_dict(),
            "shared": None if self.shared is None else self.shared.as_dict(),
        }


def comfyui_dir(install_dir: Path) -> Path:
    """Return `DIR/ComfyUI`, which must exist (never created here: step 5 clones into it).

    Args:
        install_dir: DIR, as given on the command line.

    Raises:
        UsageError: DIR holds no ComfyUI checkout (exit code 2).
    """
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


def report_share(result: ShareResult, log: InstallerLogger) -> None:
    """Say where ComfyUI now reads the shared models from, and which files were skipped.

    Args:
        result: What [`share_models`][installer.models.share.share_models] did.
        log: Where to say it.
    """
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


def download(request: DownloadRequest, log: InstallerLogger) -> dict[str, Any]:
    """Download the files of a model manifest into DIR/ComfyUI/models/<kind>/ (or a shared store).

    Args:
        request: The options of the run; without a manifest, the shipped dependencies.json's
            `models` list is used.
        log: Progress and the summary.

    Returns:
        The `data` of `models download --json`: the manifest, the target folder, one row per
        file and the share made, if any.

    Raises:
        UsageError: DIR holds no ComfyUI, or `--link` without `--shared-models`.
        InstallerError: A download failed or a file is in the way (see the models package).
    """
    from installer.core.config_files import load_dependencies, load_model_manifest, shipped_path
    from installer.models.downloads import fetch_planned_models
    from installer.models.share import check_shared_store, share_models
    from installer.plan.model_downloads import plan_model_downloads

    _check_link(request.link, request.shared_models)
    comfyui = comfyui_dir(request.install_dir)
    models_dir = comfyui / "models"
    shared_models = request.shared_models
    store = (
        None
        if shared_models is None
        else check_shared_store(shared_models.expanduser(), models_dir)
    )
    if request.manifest is not None:
        entries, source = load_model_manifest(request.manifest).models, str(request.manifest)
    else:
        entries, source = load_dependencies().models, str(shipped_path("dependencies.json"))
    target = store or models_dir
    planned = plan_model_downloads(
        entries, target, allow_unverified=request.allow_unverified, source=source
    )
    results = fetch_planned_models(
        planned,
        log=log,
        jobs=request.jobs,
        allow_unverified=request.allow_unverified,
        replace=request.replace,
    )
    shared = None if store is None else share_models(comfyui, store, log=log, link=request.link)
    fetched = sum(not result.skipped for result in results)
    moved = [result.moved_aside for result in results if result.moved_aside is not None]
    if planned:
        log.success(
            f"{len(results)} model file(s) in {target}: {fetched} downloaded, "
            f"{len(results) - fetched} already present"
            + (f"; {len(moved)} file(s) that were in the way moved aside (kept)." if moved else ".")
        )
    else:
        log.info(f"{source} lists no models; nothing to download.")
    if shared is not None:
        report_share(shared, log)
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
    return {
        "manifest": source,
        "target_dir": str(target),
        "files": files,
        "shared": None if shared is None else shared.as_dict(),
    }


def organize(request: OrganizeRequest, log: InstallerLogger) -> OrganizeOutcome:
    """Plan the moves of loose model files into models/<kind>/ and, unless a dry run, make them.

    Loose files are those directly in ComfyUI/models/ and in the request's sources. With a
    shared store the files go there, and ComfyUI is pointed at it once they are moved.

    Args:
        request: The options of the run.
        log: The moves as they are made.

    Returns:
        The plan, and the share made after it (None on a dry run or without a store); the
        CLI reports the share after rendering the plan.

    Raises:
        UsageError: DIR holds no ComfyUI, or `--link` without `--shared-models`.
    """
    from installer.core.config_files import load_model_manifest
    from installer.models.classify import ManifestIndex
    from installer.models.organize import apply_organize, plan_organize
    from installer.models.share import check_shared_store, share_models

    _check_link(request.link, request.shared_models)
    comfyui = comfyui_dir(request.install_dir)
    models_dir = comfyui / "models"
    shared_models = request.shared_models
    store = (
        None
        if shared_models is None
        else check_shared_store(shared_models.expanduser(), models_dir)
    )
    index = None
    if request.manifest is not None:
        entries = load_model_manifest(request.manifest).models
        index = ManifestIndex.from_entries(entries, source=str(request.manifest))
    plan = plan_organize(
        models_dir,
        sources=[path.expanduser() for path in request.sources],
        manifest=index,
        target_dir=store,
    )
    shared = None
    if not request.dry_run:
        apply_organize(plan, log=log)
        if store is not None:
            shared = share_models(comfyui, store, log=log, link=request.link)
    return OrganizeOutcome(plan=plan, dry_run=request.dry_run, shared=shared)


def share(install_dir: Path, store: Path, link: bool, log: InstallerLogger) -> ShareResult:
    """Point the ComfyUI in DIR at a shared model store (or link each file), and say so.

    Args:
        install_dir: DIR.
        store: The shared store, laid out like ComfyUI/models.
        link: Link each file into models/<kind>/ instead of writing extra_model_paths.yaml.
        log: Where to say what was done.

    Raises:
        UsageError: DIR holds no ComfyUI.
    """
    from installer.models.share import share_models

    comfyui = comfyui_dir(install_dir)
    result = share_models(comfyui, store.expanduser(), log=log, link=link)
    report_share(result, log)
    return result
