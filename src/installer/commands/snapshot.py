"""`comfy-install snapshot save DIR FILE` and `snapshot restore FILE DIR [--dry-run]`.

`save` writes one JSON file ([`Snapshot`][installer.core.snapshot.Snapshot]) with everything
needed to rebuild the install: the pins of ComfyUI and of every node, the torch build and index,
the accelerators, the platform and Python, the configuration pinned to what DIR holds, and a
lock file: the install's requirements resolved by `uv pip compile --generate-hashes` with every
installed version held, so the lock is exactly what the venv holds, with hashes.

`restore` rebuilds the install through the ordinary install: it writes the snapshot's
configuration and lock into `DIR/.comfy-install/snapshot/`, plans for this machine (the plan
must use the lock, give a torch of the same kind and install every accelerator the snapshot
has, else it refuses with the plan's reasons), then runs the install steps: ComfyUI and the
nodes cloned at their commits, torch from its index, every requirement from the lock with its
hash checked and nothing resolved. With a warm uv cache and local bundles (`--source`) it
needs no network (`--offline`). Restoring over an existing install needs the generations of
`comfy-install update` (so it can be rolled back); until this branch has them, it refuses.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from installer import __version__
from installer.core.config import Dependencies, IndexOptions
from installer.core.config_files import parse_model, read_json, shipped_path
from installer.core.errors import SnapshotRefusedError, UsageError
from installer.core.lockfile import LockSources, LockTarget, parse_entries, render_lock
from installer.core.log import InstallerLogger
from installer.core.nodes import NodeRecord, NodesState
from installer.core.records import now_iso
from installer.core.snapshot import (
    SNAPSHOT_SCHEMA_VERSION,
    Snapshot,
    SnapshotAccelerator,
    SnapshotNode,
    SnapshotSource,
    SnapshotTorch,
)
from installer.edges.environment import current_platform
from installer.edges.git import read_head
from installer.edges.probe import installed_distributions
from installer.edges.state import atomic_write_text, read_state, state_dir
from installer.lock.compile import split_sections
from installer.nodes.context import Install, make_uv, open_install
from installer.nodes.files import node_folders, read_node_requirements
from installer.nodes.record import read_nodes, write_nodes
from installer.nodes.resolve import ResolveRequest, resolve
from installer.plan.lock import lock_inputs
from installer.plan.nodes import requirements_txt_lines
from installer.plan.snapshot import Change, Holding, restore_config, restore_refusals, snapshot_diff


def _done(state: Any, step: str) -> dict[str, Any]:
    record = state.done(step) if state else None
    return dict(record.outputs) if record else {}


def snapshot_nodes(
    install: Install, config_nodes: list[dict[str, Any]], log: InstallerLogger
) -> list[SnapshotNode]:
    """Return the pinned nodes of DIR (added ones as recorded, configured ones from the config).

    Node folders the tool did not install (put there by hand) are left out, with a warning.

    Args:
        install: The install.
        config_nodes: The `custom_nodes` of the configuration the install was made with.
        log: Logger.
    """
    nodes = read_nodes(install.install_dir)
    configured = {str(node["name"]): node for node in config_nodes}
    found: list[SnapshotNode] = []
    for folder in node_folders(install.custom_nodes):
        record = nodes.node(folder.name)
        if record is not None:
            found.append(
                SnapshotNode(**record.model_dump(exclude={"installed_packages", "added_at"}))
            )
            continue
        entry = configured.get(folder.name)
        if entry is not None:
            reqs = (
                read_node_requirements(folder).requirements
                if entry.get("requirements", True)
                else ()
            )
            found.append(
                SnapshotNode(
                    name=folder.name,
                    url=str(entry["url"]),
                    commit=read_head(folder) or str(entry["commit"]),
                    origin="config",
                    requirements=list(reqs),
                    no_deps=not entry.get("requirements", True),
                )
            )
            continue
        log.warn(
            f"custom node {folder.name} was not installed by comfy-install: not in the snapshot"
        )
    return found


def save_snapshot(
    install_dir: Path,
    file: Path,
    log: InstallerLogger,
    *,
    config_path: Path | None = None,
    index: IndexOptions | None = None,
) -> dict[str, Any]:
    """Write the snapshot of the install in DIR to FILE.

    Args:
        install_dir: DIR.
        file: Where the snapshot goes (JSON).
        log: Logger.
        config_path: The dependencies.json the install was made with (default: the shipped one).
        index: Mirror and offline options for the resolution (default: those `nodes` recorded).

    Raises:
        UsageError: DIR holds no finished install.
        ResolutionError: The installed versions do not resolve (the venv was changed by hand).
    """
    install = open_install(install_dir)
    state, _ = read_state(install_dir)
    comfy = _done(state, "comfyui")
    venv = _done(state, "venv")
    gpu = _done(state, "gpu")
    python = str(venv.get("version") or "")
    minor = ".".join(python.split(".")[:2])
    torch = install.state_torch
    config: dict[str, Any] = read_json(config_path or shipped_path("dependencies.json"))
    nodes = snapshot_nodes(install, list(config.get("custom_nodes") or []), log)
    installed = installed_distributions(install.paths["venv"], install.platform)
    comfy_text = (install.paths["comfyui"] / "requirements.txt").read_text(encoding="utf-8")
    extras = list(dict.fromkeys([*install.extra, *[r for n in nodes for r in n.requirements]]))
    config["comfyui"] = {
        "url": comfy.get("url"),
        "ref": comfy.get("ref"),
        "commit": comfy.get("commit"),
    }
    config.setdefault("python", {})["default"] = minor
    config["extra_requirements"] = extras
    config["custom_nodes"] = [
        {"name": n.name, "url": n.url, "commit": n.commit, "requirements": False} for n in nodes
    ]
    deps = parse_model(Dependencies, config, "the snapshot's configuration")
    target = LockTarget(install.platform, str(torch.get("variant") or "default"), minor)
    inputs = lock_inputs(deps, target)
    nodes_state = read_nodes(install_dir)
    uv = make_uv(index or nodes_state.index, log)
    work = state_dir(install_dir) / "snapshot-work"
    shutil.rmtree(work, ignore_errors=True)
    try:
        files = {"comfyui-requirements.txt": requirements_txt_lines(comfy_text)[0]}
        if extras:
            files["extra-requirements.txt"] = extras
        resolution = resolve(
            uv,
            ResolveRequest(
                files=files,
                held=installed,
                preferences={},
                python=install.paths["venv_python"],
                extra_index_urls=install.torch_index,
            ),
            work,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    sources = LockSources(comfy_text, str(comfy.get("commit")), {n.name: None for n in nodes})
    lock = render_lock(
        inputs,
        sources,
        split_sections(resolution.entries),
        resolver=f"uv (comfy-install {__version__})",
    )
    accelerators = [
        SnapshotAccelerator(
            name=str(item["name"]),
            kind=str(item.get("kind") or ""),
            version=item.get("version"),
            requirement=item.get("requirement"),
            sha256=item.get("sha256"),
        )
        for item in _done(state, "optimizations").get("packages") or []
        if item.get("status") == "installed"
    ]
    snapshot = Snapshot(
        created_at=now_iso(),
        tool_version=__version__,
        platform=install.platform,
        python=python,
        comfyui=SnapshotSource(
            url=str(comfy.get("url")), ref=comfy.get("ref"), commit=str(comfy.get("commit"))
        ),
        torch=SnapshotTorch(
            versions={
                k: v for k, v in installed.items() if k in ("torch", "torchvision", "torchaudio")
            },
            variant=str(torch.get("variant") or "default"),
            index_url=torch.get("index_url"),
            cuda=torch.get("cuda"),
        ),
        accelerators=accelerators,
        nodes=nodes,
        gpu=gpu,
        index=index or nodes_state.index,
        lock_target=target.name,
        lock=lock,
        config=config,
    )
    atomic_write_text(file, snapshot.model_dump_json(indent=2) + "\n")
    log.info(
        f"snapshot of {install_dir} written to {file}: {len(resolution.entries)} packages, "
        f"{len(nodes)} custom nodes"
    )
    return {
        "file": str(file),
        "packages": len(resolution.entries),
        "nodes": [n.name for n in nodes],
        "lock_target": target.name,
    }


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
    command_line: tuple[str, ...] = ()


def holding(install_dir: Path) -> Holding:
    """Return what DIR holds now (nothing for a new DIR).

    Args:
        install_dir: DIR.
    """
    state, _ = read_state(install_dir)
    if state is None:
        return Holding()
    from installer.edges.probe import layout

    platform = current_platform()
    paths = layout(install_dir, platform)
    folders = node_folders(paths["comfyui"] / "custom_nodes")
    return Holding(
        comfyui_commit=read_head(paths["comfyui"]),
        nodes={f.name: read_head(f) for f in folders},
        packages=installed_distributions(paths["venv"], platform),
        python=_done(state, "venv").get("version"),
    )


def _is_existing(install_dir: Path) -> bool:
    try:
        return any(install_dir.iterdir())
    except FileNotFoundError:
        return False
    except NotADirectoryError:
        return True


def restore_snapshot(request: RestoreRequest, log: InstallerLogger) -> dict[str, Any]:
    """Rebuild the install of a snapshot in DIR (or, with `--dry-run`, show what would change).

    Args:
        request: What was asked.
        log: Logger.

    Raises:
        UsageError: Not a snapshot, or DIR is not empty (exit code 2).
        SnapshotRefusedError: This machine cannot run it (exit code 3), with the plan's reasons.
        InstallerError: A step of the install failed (its own exit code).
    """
    snapshot = read_snapshot(request.file)
    entries = parse_entries(snapshot.lock.splitlines())
    platform = current_platform()
    changes = snapshot_diff(snapshot, entries, holding(request.install_dir))
    data: dict[str, Any] = {
        "install_dir": str(request.install_dir),
        "snapshot": str(request.file),
        "changes": [_change(c) for c in changes],
        "dry_run": request.dry_run,
    }
    if platform != snapshot.platform:
        raise SnapshotRefusedError(
            f"{request.file} cannot be restored here: the snapshot was taken on "
            f"{snapshot.platform}, this machine runs {platform}."
        )
    if request.dry_run:
        return data
    if _is_existing(request.install_dir):
        raise UsageError(
            f"{request.install_dir} is not empty: restoring over an existing install needs the "
            "generations of `comfy-install update` (a new generation beside the current one, "
            "so it can be rolled back), which this build does not have yet.",
            f"Restore into a new DIR, or see the changes with `comfy-install snapshot restore "
            f"{request.file} {request.install_dir} --dry-run`.",
        )
    from installer.commands.executor import execute
    from installer.commands.planning import make_plan
    from installer.plan.records import InstallOptions

    staged = state_dir(request.install_dir) / "snapshot"
    config_file = staged / "dependencies.json"
    lock_dir = staged / "locks"
    lock_file = lock_dir / f"{snapshot.lock_target}.txt"
    atomic_write_text(config_file, json.dumps(restore_config(snapshot, request.sources), indent=2))
    atomic_write_text(lock_file, snapshot.lock)
    index = request.index or snapshot.index
    options = InstallOptions(
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
    )
    plan = make_plan(options).plan
    refusals = restore_refusals(snapshot, platform, plan, str(lock_file))
    if refusals:
        # DIR was empty: take back only what this command wrote.
        shutil.rmtree(state_dir(request.install_dir), ignore_errors=True)
        raise SnapshotRefusedError(
            f"{request.file} cannot be restored on this machine: " + "; ".join(refusals) + ".",
            "Restore it on a machine like the one it was taken on (same platform and GPU "
            "family), or install afresh with `comfy-install install` and add the nodes with "
            "`comfy-install nodes add`.",
        )
    result = execute(options, log)
    if result.error is not None:
        raise result.error
    _record_nodes(request, snapshot, log)
    data["steps"] = result.as_data()["steps"]
    return data


def _record_nodes(request: RestoreRequest, snapshot: Snapshot, log: InstallerLogger) -> None:
    """Write the restored nodes into nodes.json; run the install.py scripts allowed."""
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
