"""`comfy-install nodes add|remove|list|missing`: custom nodes that cannot break torch.

`add` clones the node at a pinned commit into a staging folder, reads its requirements as
ComfyUI-Manager does, and resolves them together with ComfyUI's and every installed node's,
torch and the accelerators held, before anything in DIR changes. A conflict changes nothing
and names the node, its requirement and what it fights. Only then are the requirements
installed (through the same function step 9 uses), the folder moved into `custom_nodes/`, and
torch proved byte for byte the same distribution. `remove` moves the folder aside and takes out
the packages only that node needed; `list` reads the record. `missing` is
[`installer.commands.nodes_missing`][installer.commands.nodes_missing].
"""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from installer.core.config import IndexOptions
from installer.core.errors import (
    NodeConflictError,
    ResolutionError,
    StepFailedError,
    UsageError,
)
from installer.core.log import InstallerLogger, redact
from installer.core.nodes import NodeRecord, NodesState, RemovedNode, ResolutionConflict
from installer.core.records import now_iso
from installer.edges.git import checkout_pinned
from installer.edges.probe import installed_distributions
from installer.edges.state import InstallLock, read_state
from installer.edges.uv import Uv
from installer.nodes.context import (
    Install,
    input_files,
    make_uv,
    node_name,
    open_install,
    resolution_sources,
    resolve_install,
)
from installer.nodes.files import node_folders, read_node_requirements
from installer.nodes.install import (
    distribution_digest,
    install_node_requirements,
    install_script_note,
    run_install_script,
    uninstall,
)
from installer.nodes.record import read_nodes, write_nodes
from installer.nodes.resolve import Resolution
from installer.plan.nodes import (
    apply_skips,
    explain_conflict,
    held_conflict,
    held_versions,
    node_file_name,
    plan_removal,
    to_install,
)


@dataclass(frozen=True)
class AddRequest:
    """What `nodes add` was asked."""

    install_dir: Path
    source: str
    ref: str | None = None
    name: str | None = None
    skip_requirements: tuple[str, ...] = ()
    no_deps: bool = False
    allow_install_script: bool = False
    dry_run: bool = False
    index: IndexOptions | None = None


@dataclass
class AddResult:
    """What `nodes add` did (or, with `--dry-run`, would do)."""

    name: str
    commit: str
    requirements: list[str]
    skipped: list[str]
    install: list[str]
    notes: list[str] = field(default_factory=list)
    torch_digest: str | None = None
    dry_run: bool = False
    seconds: float = 0.0

    def as_data(self) -> dict[str, Any]:
        """Return the result as the `data` of the JSON envelope."""
        return {
            "name": self.name,
            "commit": self.commit,
            "requirements": self.requirements,
            "skipped_requirements": self.skipped,
            "install": self.install,
            "notes": self.notes,
            "torch_sha256": self.torch_digest,
            "dry_run": self.dry_run,
        }


def add_node(request: AddRequest, log: InstallerLogger) -> AddResult:
    """Add a custom node to DIR with torch held: resolve first, change nothing on a conflict.

    Args:
        request: What was asked.
        log: Logger.

    Raises:
        UsageError: DIR holds no install, or the node is already there (exit code 2).
        NodeConflictError: Its requirements conflict with the held or installed packages; nothing
            was changed.
        StepFailedError: A clone, an install or the node's install.py failed, or torch changed.
    """
    import time

    start = time.monotonic()
    install = open_install(request.install_dir)
    name = request.name or node_name(request.source)
    dest = install.custom_nodes / name
    with InstallLock(request.install_dir, command="nodes add").held():
        nodes = read_nodes(request.install_dir, log)
        if dest.exists() or nodes.node(name) is not None:
            raise UsageError(
                f"custom node {name} is already in {install.custom_nodes}.",
                f"Remove it first (`comfy-install nodes remove {request.install_dir} {name}`), "
                "or pass --name for another folder.",
            )
        index = request.index or nodes.index
        uv = make_uv(index, log)
        work = install.paths["state_dir"] / "nodes-work" / name
        shutil.rmtree(work, ignore_errors=True)
        staging = work / "checkout"
        try:
            result, record, resolution = _stage(request, install, nodes, uv, name, staging, log)
            if request.dry_run:
                result.dry_run = True
                return result
            _apply(request, install, uv, nodes, record, resolution, staging, dest, result, log)
            nodes.index = index
            write_nodes(request.install_dir, nodes)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    result.seconds = time.monotonic() - start
    return result


def add_command(request: AddRequest) -> str:
    """Return the `comfy-install nodes add` command of a request, for hints.

    Args:
        request: What was asked.
    """
    import shlex

    words = ["comfy-install", "nodes", "add", str(request.install_dir), request.source]
    if request.ref:
        words += ["--ref", request.ref]
    if request.name:
        words += ["--name", request.name]
    return shlex.join(words)


def _stage(
    request: AddRequest,
    install: Install,
    nodes: NodesState,
    uv: Uv,
    name: str,
    staging: Path,
    log: InstallerLogger,
) -> tuple[AddResult, NodeRecord, Resolution | None]:
    """Clone the node into ``staging``, read and resolve its requirements; change nothing."""
    commit = checkout_pinned(staging, request.source, request.ref or "HEAD", log)
    found = read_node_requirements(staging)
    if request.no_deps:
        kept: list[str] = []
        skipped = list(found.requirements)
    else:
        kept, skipped = apply_skips(found.requirements, request.skip_requirements, name)
    installed = installed_distributions(install.paths["venv"], install.platform)
    held = held_versions(installed)
    command = add_command(request)
    conflict = held_conflict(name, kept, held, command)
    if conflict is not None:
        raise NodeConflictError(conflict.message, conflict.hint)
    notes = [f"requirements from {', '.join(found.files)}" if found.files else "no requirements"]
    notes += [f"ignored line {line!r} (pip options are not followed)" for line in found.ignored]
    if request.no_deps and found.requirements:
        notes.append("--no-deps: none of its requirements are installed")
    script = install_script_note(found, request.allow_install_script)
    if script:
        notes.append(script)
    resolution: Resolution | None = None
    plan: list[str] = []
    if kept:
        sources = resolution_sources(install, nodes)
        sources[name] = kept
        try:
            resolution = resolve_install(install, uv, sources, staging.parent / "resolve")
        except ResolutionError as exc:
            if not isinstance(exc.conflict, ResolutionConflict):
                raise
            why = explain_conflict(name, kept, exc.conflict, sources, held, command)
            raise NodeConflictError(why.message, why.hint) from exc
        plan = [entry.requirement for entry in to_install(resolution.entries, installed)]
    local = Path(request.source).expanduser()
    record = NodeRecord(
        name=name,
        url=str(local.resolve()) if local.exists() else request.source,
        ref=request.ref,
        commit=commit,
        requirements=kept,
        skipped_requirements=skipped,
        no_deps=request.no_deps,
        install_script="none" if not found.install_script else "not run",
        installed_packages=[line.split("==", 1)[0] for line in plan],
        added_at=now_iso(),
    )
    result = AddResult(name, commit, kept, skipped, plan, notes)
    return result, record, resolution


def _apply(
    request: AddRequest,
    install: Install,
    uv: Uv,
    nodes: NodesState,
    record: NodeRecord,
    resolution: Resolution | None,
    staging: Path,
    dest: Path,
    result: AddResult,
    log: InstallerLogger,
) -> None:
    """Install the resolved requirements held, move the node in, prove torch unchanged."""
    venv, platform = install.paths["venv"], install.platform
    before = distribution_digest(venv, platform, "torch")
    constraints = install.paths["state_dir"] / "constraints.txt"
    if resolution is not None:
        resolved = staging.parent / "resolve" / "resolved.txt"
        install_node_requirements(
            uv,
            install.paths["venv_python"],
            venv,
            platform,
            constraints,
            record.name,
            record.requirements,
            extra_constraints=[resolved],
            extra_index_urls=install.torch_index,
        )
        nodes.resolution = resolution.text
    install.custom_nodes.mkdir(parents=True, exist_ok=True)
    staging.replace(dest)
    if record.install_script == "not run" and request.allow_install_script:
        run_install_script(install.paths["venv_python"], dest, log)
        record.install_script = "ran"
    after = distribution_digest(venv, platform, "torch")
    if before != after:
        raise StepFailedError(
            f"adding custom node {record.name} changed the installed torch distribution.",
            "Reinstall torch with `comfy-install install DIR --force torch`, and report this.",
        )
    result.torch_digest = after
    nodes.nodes.append(record)
    log.info(
        f"{record.name} at {record.commit[:12]}: {len(result.install)} package(s) installed; "
        f"torch unchanged ({(after or 'not installed')[:16]})"
    )


@dataclass
class RemoveResult:
    """What `nodes remove` did."""

    name: str
    moved_to: str
    removed_packages: list[str]
    kept_packages: dict[str, str]

    def as_data(self) -> dict[str, Any]:
        """Return the result as the `data` of the JSON envelope."""
        return {
            "name": self.name,
            "moved_to": self.moved_to,
            "removed_packages": self.removed_packages,
            "kept_packages": self.kept_packages,
        }


def remove_node(install_dir: Path, name: str, log: InstallerLogger) -> RemoveResult:
    """Move a node's folder aside (never delete it) and remove the packages only it needed.

    Args:
        install_dir: DIR.
        name: The node's folder name.
        log: Logger.

    Raises:
        UsageError: No such node in DIR (exit code 2).
    """
    install = open_install(install_dir)
    folder = install.custom_nodes / name
    with InstallLock(install_dir, command="nodes remove").held():
        nodes = read_nodes(install_dir, log)
        record = nodes.node(name)
        if not folder.is_dir():
            raise UsageError(
                f"there is no custom node {name} in {install.custom_nodes}.",
                f"`comfy-install nodes list {install_dir}` lists them.",
            )
        installed = installed_distributions(install.paths["venv"], install.platform)
        removal_names: list[str] = []
        kept: dict[str, str] = {}
        if record is not None and nodes.resolution:
            from installer.core.lockfile import parse_entries

            entries = parse_entries(nodes.resolution.splitlines())
            files = input_files(resolution_sources(install, nodes))
            files.setdefault(node_file_name(name), record.requirements)
            removal = plan_removal(
                entries, node_file_name(name), files, record.installed_packages, installed
            )
            removal_names, kept = removal.remove, removal.kept
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        aside = install_dir / "removed-nodes" / f"{name}-{stamp}"
        aside.parent.mkdir(parents=True, exist_ok=True)
        folder.replace(aside)
        uninstall(make_uv(nodes.index, log), install.paths["venv_python"], removal_names)
        nodes.nodes = [node for node in nodes.nodes if node.name != name]
        nodes.removed.append(
            RemovedNode(
                name=name,
                commit=record.commit if record else "",
                moved_to=str(aside),
                removed_packages=removal_names,
                removed_at=now_iso(),
            )
        )
        write_nodes(install_dir, nodes)
    log.info(f"{name} moved to {aside}; removed {', '.join(removal_names) or 'no packages'}")
    return RemoveResult(name, str(aside), removal_names, kept)


def list_nodes(install_dir: Path) -> dict[str, Any]:
    """Return every node folder of DIR: pinned (added or configured) or found there by hand.

    Args:
        install_dir: DIR.

    Raises:
        UsageError: DIR holds no install (exit code 2).
    """
    from installer.edges.git import read_head

    install = open_install(install_dir)
    nodes = read_nodes(install_dir)
    state, _ = read_state(install_dir)
    step9 = state.done("custom_nodes") if state else None
    configured = dict((step9.outputs.get("nodes") or {}) if step9 else {})
    rows: list[dict[str, Any]] = []
    for folder in node_folders(install.custom_nodes):
        record = nodes.node(folder.name)
        head = read_head(folder) if (folder / ".git").exists() else None
        origin = record.origin if record else "config" if folder.name in configured else "user"
        rows.append(
            {
                "name": folder.name,
                "origin": origin,
                "url": redact(record.url) if record else None,
                "commit": record.commit if record else configured.get(folder.name),
                "head": head,
                "changed": bool(record and head and head != record.commit),
                "requirements": record.requirements if record else [],
                "skipped_requirements": record.skipped_requirements if record else [],
                "install_script": record.install_script if record else None,
            }
        )
    return {
        "install_dir": str(install_dir),
        "nodes": rows,
        "removed": [r.model_dump() for r in nodes.removed],
    }
