"""`comfy-install snapshot save DIR FILE`.

`save` writes one JSON file ([`Snapshot`][installer.core.snapshot.Snapshot]) with everything
needed to rebuild the install: the pins of ComfyUI and of every node, the torch build and index,
the accelerators, the platform and Python, the configuration pinned to what DIR holds, and a
lock file: the install's requirements resolved by `uv pip compile --generate-hashes` with every
installed version held, so the lock is exactly what the venv holds, with hashes.
`snapshot restore` is [`installer.commands.snapshot_restore`][installer.commands.snapshot_restore].
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from installer import __version__
from installer.core.config import Dependencies, IndexOptions
from installer.core.config_files import parse_model, read_json, shipped_path
from installer.core.lockfile import LockSources, LockTarget, render_lock
from installer.core.log import InstallerLogger
from installer.core.records import now_iso
from installer.core.snapshot import (
    Snapshot,
    SnapshotNode,
    SnapshotSource,
    SnapshotTorch,
)
from installer.edges.git import read_head
from installer.edges.probe import installed_distributions
from installer.edges.state import atomic_write_text, read_state, state_dir
from installer.lock.compile import split_sections
from installer.nodes.context import Install, make_uv, open_install
from installer.nodes.files import node_folders, read_node_requirements
from installer.nodes.record import read_nodes
from installer.nodes.resolve import ResolveRequest, resolve
from installer.plan.lock import lock_inputs
from installer.plan.nodes import requirements_txt_lines
from installer.plan.snapshot import snapshot_accelerators


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
    state, _ = read_state(install.paths["install_dir"])  # the current generation's
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
    step10 = state.done("optimizations") if state else None
    accelerators = (
        snapshot_accelerators(step10.outputs, step10.inputs) if step10 is not None else []
    )
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
