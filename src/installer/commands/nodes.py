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
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from installer.core.errors import (
    InstallerError,
    InterruptedByUserError,
    NetworkError,
    NodeConflictError,
    ResolutionError,
    StepFailedError,
    UsageError,
)
from installer.core.log import InstallerLogger, redact
from installer.core.nodes import NodeRecord, NodesState, RemovedNode, ResolutionConflict
from installer.core.records import now_iso
from installer.core.uv_options import IndexOptions
from installer.edges.git import checkout_pinned
from installer.edges.probe import installed_distributions
from installer.edges.state import InstallLock, read_state
from installer.edges.uv import Uv
from installer.nodes.context import Install, make_uv, node_name, open_install
from installer.nodes.files import node_folders, read_node_requirements
from installer.nodes.install import (
    distribution_digest,
    install_node_requirements,
    install_script_note,
    run_install_script,
    uninstall,
)
from installer.nodes.record import read_nodes, write_nodes
from installer.plan.nodes import apply_skips, held_conflict, held_versions

if TYPE_CHECKING:
    from installer.nodes.resolve import Resolution

# The resolution of everything together (`uv pip compile`, its lock entries and the reading of
# its errors) is imported where it is needed: on the happy path of `nodes add` uv resolves the
# node against the venv pinned in the install itself, and that path stays quick to start.


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
    with InstallLock(request.install_dir, command="nodes add").held(log):
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
        # torch's fingerprint before anything changes, taken while git clones (it is one
        # stat per file of torch, mostly waiting on the file system, like the clone).
        before = None if request.dry_run else _Background(
            distribution_digest, install.paths["venv"], install.platform, "torch"
        )  # fmt: skip
        try:
            staged = _stage(request, install, nodes, uv, name, staging, log)
            result = staged.result
            if request.dry_run:
                result.dry_run = True
                return result
            assert before is not None
            _apply(request, install, uv, nodes, staged, staging, dest, before.result(), log)
            nodes.index = index
            write_nodes(request.install_dir, nodes)
        finally:
            if before is not None:
                before.join()
            shutil.rmtree(work, ignore_errors=True)
    result.seconds = time.monotonic() - start
    return result


class _Background:
    """One call run on a thread from now on; `result()` waits for it (and re-raises its error)."""

    def __init__(self, call: Callable[..., str | None], *args: Any) -> None:
        import threading

        self._value: str | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(call, args), daemon=True)
        self._thread.start()

    def _run(self, call: Callable[..., str | None], args: tuple[Any, ...]) -> None:
        try:
            self._value = call(*args)
        except BaseException as exc:  # handed to the caller by result()
            self._error = exc

    def join(self) -> None:
        """Wait for the call to end."""
        self._thread.join()

    def result(self) -> str | None:
        """Wait for the call and return its value (or raise its error)."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


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


@dataclass
class Staged:
    """A node cloned into staging with its requirements read: what `_apply` installs."""

    result: AddResult
    record: NodeRecord
    constraint: Path | None = None
    """`-c` file of the install: the venv pinned (fast path) or the full resolution."""
    resolution: Resolution | None = None
    installed: dict[str, str] = field(default_factory=dict)
    """The venv's distributions before the install (nothing changes between stage and apply)."""


def _stage(
    request: AddRequest,
    install: Install,
    nodes: NodesState,
    uv: Uv,
    name: str,
    staging: Path,
    log: InstallerLogger,
) -> Staged:
    """Clone the node into ``staging``, read its requirements, check the held ones.

    Nothing in DIR changes here. With `--dry-run` the requirements are resolved too (against
    the venv pinned, else together with everything installed).
    """
    commit = checkout_pinned(staging, request.source, request.ref or "HEAD", log)
    found = read_node_requirements(staging)
    if request.no_deps:
        kept: list[str] = []
        skipped = list(found.requirements)
    else:
        kept, skipped = apply_skips(found.requirements, request.skip_requirements, name)
    installed = installed_distributions(install.paths["venv"], install.platform)
    held = held_versions(installed)
    conflict = held_conflict(name, kept, held, add_command(request))
    if conflict is not None:
        raise NodeConflictError(conflict.message, conflict.hint)
    notes = [f"requirements from {', '.join(found.files)}" if found.files else "no requirements"]
    notes += [f"ignored line {line!r} (pip options are not followed)" for line in found.ignored]
    if request.no_deps and found.requirements:
        notes.append("--no-deps: none of its requirements are installed")
    script = install_script_note(found, request.allow_install_script)
    if script:
        notes.append(script)
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
        added_at=now_iso(),
    )
    staged = Staged(AddResult(name, commit, kept, skipped, [], notes), record, installed=installed)
    if not kept:
        return staged
    staged.constraint = _pinned_environment(installed, staging.parent / "pinned.txt")
    if request.dry_run:
        plan = _dry_run(install, uv, staging.parent, kept, staged.constraint)
        if plan is None:
            from installer.plan.nodes import to_install

            _resolve_all(request, install, nodes, uv, staged, staging.parent, held)
            assert staged.resolution is not None
            plan = [e.requirement for e in to_install(staged.resolution.entries, installed)]
        staged.result.install = plan
    return staged


def _pinned_environment(installed: dict[str, str], path: Path) -> Path:
    """Write every installed distribution pinned exactly: the fast path's constraint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{n}=={v}\n" for n, v in sorted(installed.items())), "utf-8")
    return path


def _dry_run(
    install: Install, uv: Uv, work: Path, requirements: list[str], pinned: Path
) -> list[str] | None:
    """What `uv pip install --dry-run` of the requirements would add, the venv pinned.

    Returns:
        The `name==version` lines it would install; None when they do not resolve against the
        venv as it is (then everything is resolved together).
    """
    listed = work / "dry-run-requirements.txt"
    listed.write_text("".join(f"{line}\n" for line in requirements), "utf-8")
    try:
        done = uv.pip_install(
            install.paths["venv_python"],
            requirement_files=[listed],
            constraints=[pinned],
            options=["--dry-run"],
            extra_index_urls=install.torch_index,
            what="uv pip install --dry-run (custom node)",
        )
    except (NetworkError, InterruptedByUserError):
        raise
    except InstallerError:
        return None
    return [m.group(1) for m in re.finditer(r"^\s*\+ (\S+==\S+)", done.output, re.MULTILINE)]


def _resolve_all(
    request: AddRequest,
    install: Install,
    nodes: NodesState,
    uv: Uv,
    staged: Staged,
    work: Path,
    held: dict[str, str],
) -> None:
    """Resolve the node with ComfyUI and every installed node; a conflict changes nothing."""
    from installer.nodes.context import resolution_sources, resolve_install
    from installer.plan.nodes import explain_conflict

    name, kept = staged.record.name, staged.record.requirements
    sources = resolution_sources(install, nodes)
    sources[name] = kept
    try:
        staged.resolution = resolve_install(install, uv, sources, work / "resolve")
    except ResolutionError as exc:
        if not isinstance(exc.conflict, ResolutionConflict):
            raise
        why = explain_conflict(name, kept, exc.conflict, sources, held, add_command(request))
        raise NodeConflictError(why.message, why.hint) from exc
    staged.constraint = work / "resolve" / "resolved.txt"


def _apply(
    request: AddRequest,
    install: Install,
    uv: Uv,
    nodes: NodesState,
    staged: Staged,
    staging: Path,
    dest: Path,
    before: str | None,
    log: InstallerLogger,
) -> None:
    """Install the requirements held, move the node in, prove torch unchanged.

    The fast path installs them with the whole venv pinned: uv resolves them with every
    installed version held (so ComfyUI's and the other nodes' requirements stay satisfied)
    and changes nothing when that fails. Then everything is resolved together (which may move
    a package another requirement allows), and a conflict is reported with nothing changed.
    """
    venv, platform, python = install.paths["venv"], install.platform, install.paths["venv_python"]
    record, result = staged.record, staged.result
    dists = staged.installed
    constraints = install.paths["state_dir"] / "constraints.txt"

    def install_with(constraint: Path) -> None:
        install_node_requirements(
            uv, python, venv, platform, constraints, record.name, record.requirements,
            extra_constraints=[constraint], extra_index_urls=install.torch_index,
        )  # fmt: skip

    if staged.constraint is not None:
        try:
            install_with(staged.constraint)
        except (NetworkError, InterruptedByUserError):
            raise
        except InstallerError:
            if staged.resolution is not None:
                raise
            log.info(f"{record.name}: not resolvable with the venv as it is; resolving all")
            held = held_versions(dists)
            _resolve_all(request, install, nodes, uv, staged, staging.parent, held)
            assert staged.constraint is not None
            install_with(staged.constraint)
        if staged.resolution is not None:
            nodes.resolution = staged.resolution.text
    now = installed_distributions(venv, platform)
    changed = sorted(name for name, version in now.items() if dists.get(name) != version)
    result.install = [f"{name}=={now[name]}" for name in changed]
    record.installed_packages = changed
    install.custom_nodes.mkdir(parents=True, exist_ok=True)
    staging.replace(dest)
    if record.install_script == "not run" and request.allow_install_script:
        run_install_script(python, dest, log)
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
    from installer.nodes.context import resolution_sources, resolve_install
    from installer.plan.nodes import plan_removal

    with InstallLock(install_dir, command="nodes remove").held(log):
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
        uv = make_uv(nodes.index, log)
        if record is not None and record.installed_packages:
            # What the others need now: everything that remains, resolved together (the venv
            # preferred), so a package another node or ComfyUI reaches is never taken out.
            work = install.paths["state_dir"] / "nodes-work" / f"remove-{name}"
            shutil.rmtree(work, ignore_errors=True)
            try:
                remaining = resolve_install(
                    install, uv, resolution_sources(install, nodes, name), work
                )
            finally:
                shutil.rmtree(work, ignore_errors=True)
            removal = plan_removal(
                {entry.name for entry in remaining.entries}, record.installed_packages, installed
            )
            removal_names, kept = removal.remove, removal.kept
            nodes.resolution = remaining.text
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        aside = install_dir / "removed-nodes" / f"{name}-{stamp}"
        aside.parent.mkdir(parents=True, exist_ok=True)
        count = 1
        while aside.exists():  # removed twice within a second: never onto the earlier one
            count += 1
            aside = install_dir / "removed-nodes" / f"{name}-{stamp}-{count}"
        folder.replace(aside)
        uninstall(uv, install.paths["venv_python"], removal_names)
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
