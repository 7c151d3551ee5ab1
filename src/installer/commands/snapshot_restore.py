"""`comfy-install snapshot restore FILE DIR [--dry-run] [--keep-nodes]`.

A snapshot is written by `comfy-install snapshot save`
([`installer.commands.snapshot`][installer.commands.snapshot]).

Into a new DIR, `restore` rebuilds the install through the ordinary install: it writes the
snapshot's configuration and lock into `DIR/.comfy-install/snapshot/`, plans for this machine
(the plan must use the lock, give a torch of the same kind and install every accelerator the
snapshot has, else it refuses with the plan's reasons), then runs the install steps: ComfyUI and the
nodes cloned at their commits, torch from its index, every requirement from the lock with its
hash checked and nothing resolved. With a warm uv cache and local bundles (`--source`) it
needs no network (`--offline`).

Restoring into an existing install goes through the generations of `comfy-install update`, so
`comfy-install rollback DIR` undoes it: under DIR's lock, a new generation is built beside the
current one from the snapshot's configuration and lock (written into that generation's own
`.comfy-install/snapshot/`): its ComfyUI checkout at the snapshot's commit, its venv with the
snapshot's torch and every locked requirement; it is verified, switched to in one rename, and
the generations beyond the default `--keep` are pruned. Nothing of the user's in `DIR/ComfyUI`
(models, input, output, user, `extra_model_paths.yaml`, the node folders) is copied, moved or
rewritten. The node folders are those of `DIR/ComfyUI/custom_nodes`, the user's, shared by every
generation (`launch` and the new generation's verify load them): a restore never moves one. A
node of the snapshot that DIR lacks is cloned there as a new folder (step 9 of the build); a
node folder at another commit than the snapshot's, with local changes or not a git checkout
makes the restore (and its `--dry-run`) refuse before anything changes, naming each one (exit
code 2): the check `update` makes of its configured nodes. `--keep-nodes` says to leave them as
they are (they are then reported, and step 9 of the build uses them as they are); node folders the
snapshot does not have stay (reported: their requirements are not in the new venv). A DIR
already holding the snapshot builds nothing; after a rollback, a kept generation restored from
the same configuration and lock is switched back to, by `update`'s rule
([`build_generation`][installer.commands.generations.build_generation]).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from installer.core.config import IndexOptions
from installer.core.config_files import read_json
from installer.core.errors import SnapshotRefusedError, UsageError
from installer.core.generations import data_root, generation_root
from installer.core.lockfile import LockEntry, parse_entries
from installer.core.log import InstallerLogger
from installer.core.nodes import NodeRecord, NodesState
from installer.core.records import now_iso
from installer.core.snapshot import SNAPSHOT_SCHEMA_VERSION, Snapshot
from installer.edges.environment import current_platform
from installer.edges.generations import current_generation, current_root, read_generations
from installer.edges.git import read_head
from installer.edges.probe import installed_distributions, layout
from installer.edges.state import InstallLock, atomic_write_text, read_state, state_dir
from installer.nodes.files import node_folders, shared_node_decisions
from installer.nodes.record import read_nodes, write_nodes
from installer.plan.generations import SharedNode, shared_nodes_refusal
from installer.plan.records import InstallOptions
from installer.plan.snapshot import (
    Change,
    Holding,
    NodesDecision,
    restore_config,
    restore_nodes,
    restore_refusals,
    snapshot_diff,
)


def read_snapshot(file: Path) -> Snapshot:
    """Read and check a snapshot file.

    Args:
        file: The snapshot.

    Raises:
        UsageError: It cannot be read, is not JSON, not a snapshot, or of a newer schema.
    """
    data = read_json(file)
    if isinstance(data, dict) and int(data.get("schema_version") or 0) > SNAPSHOT_SCHEMA_VERSION:
        raise UsageError(
            f"{file} is a snapshot of schema {data['schema_version']}; this comfy-install reads "
            f"{SNAPSHOT_SCHEMA_VERSION}.",
            "Restore it with the comfy-install version that saved it (or newer).",
        )
    try:
        return Snapshot.model_validate(data)
    except ValidationError as exc:
        raise UsageError(
            f"{file} is not a comfy-install snapshot: {exc.errors()[0]['msg']}."
        ) from exc


@dataclass(frozen=True)
class RestoreRequest:
    """What `snapshot restore` was asked."""

    file: Path
    install_dir: Path
    dry_run: bool = False
    gpu: str = "auto"
    sources: Mapping[str, str] = field(default_factory=dict)
    index: IndexOptions | None = None
    allow_install_script: bool = False
    keep_nodes: bool = False
    """Restore into an install whose node folders are at other commits, leaving them so."""
    command_line: tuple[str, ...] = ()


def holding(install_dir: Path) -> Holding:
    """Return what DIR holds now (nothing for a new DIR).

    ComfyUI, Python and the packages are the current generation's; the node folders are
    `DIR/ComfyUI/custom_nodes`'s, which every generation shares.

    Args:
        install_dir: DIR.
    """
    platform = current_platform()
    root = current_root(install_dir, platform)
    state, _ = read_state(root)
    if state is None:
        return Holding()
    paths = layout(root, platform)
    folders = node_folders(Path(data_root(install_dir, platform)) / "custom_nodes")
    venv = state.done("venv")
    return Holding(
        comfyui_commit=read_head(paths["comfyui"]),
        nodes={f.name: read_head(f) for f in folders},
        packages=installed_distributions(paths["venv"], platform),
        python=venv.outputs.get("version") if venv else None,
    )


def _is_existing(install_dir: Path) -> bool:
    try:
        return any(install_dir.iterdir())
    except FileNotFoundError:
        return False
    except NotADirectoryError:
        return True


def _is_install(install_dir: Path) -> bool:
    """True when DIR holds a finished install (its current generation has a venv and state)."""
    platform = current_platform()
    root = current_root(install_dir, platform)
    paths = layout(root, platform)
    state, _ = read_state(root)
    return state is not None and paths["venv_python"].is_file() and paths["comfyui"].is_dir()


def restore_snapshot(request: RestoreRequest, log: InstallerLogger) -> dict[str, Any]:
    """Rebuild the install of a snapshot in DIR (or, with `--dry-run`, show what would change).

    A new or empty DIR gets a fresh install; an existing install a new generation
    ([`restore_generation`][installer.commands.snapshot_restore.restore_generation]).

    Args:
        request: What was asked.
        log: Logger.

    Raises:
        UsageError: Not a snapshot; DIR is not empty and holds no finished install; or a
            node folder of the snapshot's is at another commit, has local changes or is not a
            git checkout (without `--keep-nodes`).
        SnapshotRefusedError: This machine cannot run it (exit code 3), with the plan's reasons.
        InstallerError: A step of the install failed (its own exit code).
    """
    snapshot = read_snapshot(request.file)
    entries = parse_entries(snapshot.lock.splitlines())
    platform = current_platform()
    now = holding(request.install_dir)
    changes = snapshot_diff(snapshot, entries, now)
    existing = _is_existing(request.install_dir)
    decisions = _node_decisions(request.install_dir, snapshot, log)
    data: dict[str, Any] = {
        "install_dir": str(request.install_dir),
        "snapshot": str(request.file),
        "changes": [_change(c) for c in changes],
        "dry_run": request.dry_run,
        "nodes": restore_nodes(decisions, now.nodes).as_data(),
    }
    if platform != snapshot.platform:
        raise SnapshotRefusedError(
            f"{request.file} cannot be restored here: the snapshot was taken on "
            f"{snapshot.platform}, this machine runs {platform}."
        )
    if request.dry_run:
        if existing and _is_install(request.install_dir):
            _check_nodes(request, decisions, restore_nodes(decisions, now.nodes), log)
        return data
    if existing and _is_install(request.install_dir):
        return restore_generation(request, snapshot, entries, data, log)
    if existing:
        raise UsageError(
            f"{request.install_dir} is not empty and holds no finished comfy-install install: "
            "a snapshot is restored into a new DIR or into an install (as a new generation).",
            f"Restore into a new DIR, or finish the install first with `comfy-install install "
            f"{request.install_dir}`.",
        )
    from installer.commands.executor import execute
    from installer.commands.planning import make_plan

    config_file, lock_dir, lock_file = _stage(request, snapshot, request.install_dir)
    options = restore_options(request, snapshot, config_file, lock_dir)
    # Planned once: the plan checked here is the one run (execute re-probes DIR under its lock).
    planned = make_plan(options)
    refusals = restore_refusals(snapshot, platform, planned.plan, str(lock_file))
    if refusals:
        # DIR was empty: take back only what this command wrote.
        shutil.rmtree(state_dir(request.install_dir), ignore_errors=True)
        raise _refused(request, refusals)
    result = execute(options, log, planned=planned)
    if result.error is not None:
        raise result.error
    _record_nodes(request, snapshot, log)
    data["steps"] = result.as_data()["steps"]
    return data


def _stage(request: RestoreRequest, snapshot: Snapshot, root: Path) -> tuple[Path, Path, Path]:
    """Write the snapshot's configuration and lock into `ROOT/.comfy-install/snapshot/`."""
    staged = state_dir(root) / "snapshot"
    config_file = staged / "dependencies.json"
    lock_dir = staged / "locks"
    lock_file = lock_dir / f"{snapshot.lock_target}.txt"
    atomic_write_text(config_file, json.dumps(restore_config(snapshot, request.sources), indent=2))
    atomic_write_text(lock_file, snapshot.lock)
    return config_file, lock_dir, lock_file


def restore_options(
    request: RestoreRequest, snapshot: Snapshot, config_file: Path, lock_dir: Path
) -> InstallOptions:
    """Return `install`'s options for the snapshot (recorded, so a re-run plans the same).

    Args:
        request: What was asked.
        snapshot: The snapshot.
        config_file: Its staged configuration.
        lock_dir: The folder of its staged lock.
    """
    index = request.index or snapshot.index
    given = {"config_path", "lock_dir", "python", "torch_index"}
    given |= {"gpu"} if request.gpu != "auto" else set()
    given |= {"index_url"} if index.index_url else set()
    given |= {"extra_index_urls"} if index.extra_index_urls else set()
    given |= {"find_links"} if index.find_links else set()
    return InstallOptions(
        install_dir=request.install_dir,
        config_path=config_file,
        gpu=request.gpu,
        python=snapshot.python_minor,
        torch_index=snapshot.torch.variant,
        index_url=index.index_url,
        extra_index_urls=tuple(index.extra_index_urls),
        find_links=tuple(index.find_links),
        offline=index.offline,
        lock_dir=lock_dir,
        command_line=request.command_line,
        given=frozenset(given),
    )


def _refused(request: RestoreRequest, refusals: list[str]) -> SnapshotRefusedError:
    return SnapshotRefusedError(
        f"{request.file} cannot be restored on this machine: " + "; ".join(refusals) + ".",
        "Restore it on a machine like the one it was taken on (same platform and GPU "
        "family), or install afresh with `comfy-install install` and add the nodes with "
        "`comfy-install nodes add`.",
    )


def restore_generation(
    request: RestoreRequest,
    snapshot: Snapshot,
    entries: list[LockEntry],
    data: dict[str, Any],
    log: InstallerLogger,
) -> dict[str, Any]:
    """Restore a snapshot into an existing install as a new generation, under DIR's lock.

    Args:
        request: What was asked.
        snapshot: The snapshot.
        entries: Its lock's entries.
        data: The result so far (the diff); completed and returned.
        log: Logger.

    Returns:
        ``data`` with `generation` (the one now current), `previous_generation`,
        `switched`, `reused`, `pruned` and the `nodes` decision.

    Raises:
        UsageError: A node folder of DIR is at another commit, has local changes or is not a
            git checkout (without `--keep-nodes`); nothing was changed.
        SnapshotRefusedError: This machine cannot run the snapshot.
        InstallerError: Building the generation failed; the current one is unchanged.
    """
    from installer.commands.generations import (
        GenerationBuild,
        build_generation,
        generation_options,
        prune_generations,
        switch_generation,
    )
    from installer.commands.planning import make_plan
    from installer.plan.generations import DEFAULT_KEEP, next_generation_id

    install_dir = request.install_dir
    platform = current_platform()
    with InstallLock(install_dir, command="snapshot restore").held(log):
        now = holding(install_dir)
        decisions = _node_decisions(install_dir, snapshot, log)
        nodes = restore_nodes(decisions, now.nodes)
        data["nodes"] = nodes.as_data()
        data["changes"] = [_change(c) for c in snapshot_diff(snapshot, entries, now)]
        current = current_generation(install_dir)
        data.update(previous_generation=current, generation=current, switched=False)
        _check_nodes(request, decisions, nodes, log)
        if not [c for c in data["changes"] if not c["what"].startswith("custom node ")]:
            # ComfyUI and every package as the snapshot has them: only nodes DIR lacks are
            # cloned (their requirements are in the venv already).
            venv_python = layout(current_root(install_dir, platform), platform)["venv_python"]
            _add_nodes(request, snapshot, nodes, venv_python, log)
            log.info(f"generation {current} already holds the snapshot; nothing to build")
            return data
        url = request.sources.get("ComfyUI") or snapshot.comfyui.url
        commit = snapshot.comfyui.commit
        registry = read_generations(install_dir, platform)
        # A new (or unfinished) generation's own state folder holds the staged files. When
        # build_generation switches back to a verified one instead (one restored from the same
        # files whose steps are all done: the rule `update` follows too), that folder is an
        # orphan the prune below removes.
        number = next_generation_id(registry.generations, url, commit)
        root = Path(generation_root(install_dir, number, platform))
        config_file, lock_dir, lock_file = _stage(request, snapshot, root)
        base = restore_options(request, snapshot, config_file, lock_dir)
        options = replace(
            base,
            keep_nodes=request.keep_nodes,
            given=base.given | {"comfyui_url", "comfyui_ref"},
            next_command=f"comfy-install launch {install_dir}",
        )
        build = GenerationBuild(
            install_dir=install_dir, options=options, url=url, target=commit,
            ref=snapshot.comfyui.ref,
        )  # fmt: skip
        # Planned once: the generation's own options, checked here and run by the build.
        planned = make_plan(generation_options(build, root, commit))
        refusals = restore_refusals(snapshot, platform, planned.plan, str(lock_file))
        if refusals:
            if registry.get(number) is None:
                shutil.rmtree(root, ignore_errors=True)
            raise _refused(request, refusals)
        build = replace(build, planned=planned)
        built = build_generation(build, log)
        new_root = Path(built.generation.root)
        _add_nodes(request, snapshot, nodes, layout(new_root, platform)["venv_python"], log)
        switch_generation(install_dir, built.generation.id, log)
        pruned = prune_generations(install_dir, DEFAULT_KEEP, log)
    data.update(
        generation=built.generation.id,
        switched=True,
        reused=built.reused,
        pruned=[item.generation for item in pruned],
        steps=built.result.as_data()["steps"],
    )
    log.info(
        f"restored {request.file} as generation {built.generation.id}; "
        f"`comfy-install rollback {install_dir}` goes back to generation {current}"
    )
    return data


def _node_decisions(
    install_dir: Path, snapshot: Snapshot, log: InstallerLogger
) -> list[SharedNode]:
    """What a restore does with the folder of each of the snapshot's nodes in DIR.

    The check `update` makes of its configured nodes
    ([`shared_node_decisions`][installer.nodes.files.shared_node_decisions]): a folder at
    another commit than the snapshot's, with local changes or not a git checkout is refused.
    """
    folder = Path(data_root(install_dir, current_platform())) / "custom_nodes"
    return shared_node_decisions(snapshot.nodes, folder, log)


def _check_nodes(
    request: RestoreRequest,
    decisions: list[SharedNode],
    nodes: NodesDecision,
    log: InstallerLogger,
) -> None:
    """Refuse the node folders a build may not use unless `--keep-nodes`; report the others."""
    from installer.core.log import command_text

    again = list(request.command_line) or [
        "snapshot", "restore", str(request.file), str(request.install_dir),
    ]  # fmt: skip
    refusal = shared_nodes_refusal(
        decisions,
        "the snapshot",
        command_text(again),
        repin=False,
        instead="Or pass --keep-nodes to restore anyway and leave those folders as they are.",
    )
    if refusal is not None and not request.keep_nodes:
        raise refusal
    for decision in nodes.differing:
        log.warn(f"{decision.reason}: used as it is (--keep-nodes)")
    if nodes.extra:
        log.warn(
            "kept, not in the snapshot (their requirements are not in the new generation's "
            f"venv): {', '.join(nodes.extra)}"
        )


def _add_nodes(
    request: RestoreRequest,
    snapshot: Snapshot,
    nodes: NodesDecision,
    venv_python: Path,
    log: InstallerLogger,
) -> None:
    """Clone the snapshot's nodes DIR lacks into `DIR/ComfyUI/custom_nodes` (new folders only).

    Their requirements are in the new generation's venv already (the lock holds them). The
    nodes record gets an entry for each one; the records of the other nodes stay.
    """
    from installer.edges.git import checkout_pinned
    from installer.nodes.install import run_install_script

    folder = request.install_dir / "ComfyUI" / "custom_nodes"
    state = read_nodes(request.install_dir)
    for node in snapshot.nodes:
        if node.name not in nodes.added:
            continue
        url = request.sources.get(node.name) or node.url
        dest = folder / node.name
        checkout_pinned(dest, url, node.commit, log, expected=node.commit)
        record = NodeRecord(**node.model_dump(), added_at=now_iso())
        if node.install_script == "ran":
            if request.allow_install_script:
                run_install_script(venv_python, dest, log)
            else:
                record.install_script = "not run"
                log.warn(f"{node.name}'s install.py was not run (pass --allow-install-script)")
        state.nodes = [n for n in state.nodes if n.name != node.name] + [record]
        log.info(f"custom node {node.name} cloned at {node.commit[:12]}")
    if nodes.added:
        write_nodes(request.install_dir, state)


def _record_nodes(request: RestoreRequest, snapshot: Snapshot, log: InstallerLogger) -> None:
    """Write the restored nodes into nodes.json; run the install.py scripts allowed."""
    from installer.nodes.context import open_install
    from installer.nodes.install import run_install_script

    venv_python = open_install(request.install_dir).paths["venv_python"]
    state = NodesState(index=request.index or snapshot.index, resolution=snapshot.lock)
    for node in snapshot.nodes:
        record = NodeRecord(**node.model_dump(), added_at=now_iso())
        if node.install_script == "ran":
            folder = request.install_dir / "ComfyUI" / "custom_nodes" / node.name
            if request.allow_install_script:
                run_install_script(venv_python, folder, log)
            else:
                record.install_script = "not run"
                log.warn(
                    f"{node.name}'s install.py ran where the snapshot was taken; not run here "
                    "(it is arbitrary code: pass --allow-install-script to run it)"
                )
        state.nodes.append(record)
    write_nodes(request.install_dir, state)


def _change(change: Change) -> dict[str, Any]:
    return {
        "what": change.what,
        "kind": change.kind,
        "now": change.now,
        "snapshot": change.snapshot,
    }
