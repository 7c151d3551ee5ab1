"""The install `comfy-install nodes` works on, and the resolution of all its requirements.

[`open_install`][installer.nodes.context.open_install] finds DIR's venv, ComfyUI and recorded
torch; [`resolution_sources`][installer.nodes.context.resolution_sources] gathers the
requirements of ComfyUI, the extras and every node folder (recorded ones as recorded, the others
read as ComfyUI-Manager reads them); [`resolve_install`][installer.nodes.context.resolve_install]
resolves them together, torch and the accelerators held.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from installer.core.errors import UsageError
from installer.core.log import InstallerLogger
from installer.core.nodes import NodesState
from installer.core.uv_options import IndexOptions
from installer.edges.environment import current_platform, find_uv_binary
from installer.edges.generations import current_root
from installer.edges.probe import installed_distributions, layout
from installer.edges.state import read_state
from installer.edges.uv import Uv
from installer.nodes.files import node_folders, read_node_requirements
from installer.plan.nodes import (
    COMFYUI_SOURCE,
    EXTRA_SOURCE,
    held_versions,
    node_file_name,
    requirements_txt_lines,
)

if TYPE_CHECKING:
    from installer.nodes.resolve import Resolution


@dataclass(frozen=True)
class Install:
    """The parts of an existing install that `nodes` works on."""

    install_dir: Path
    platform: str
    paths: dict[str, Path]
    state_torch: dict[str, Any]
    extra: list[str]

    @property
    def custom_nodes(self) -> Path:
        """`DIR/ComfyUI/custom_nodes`: the user's node folders, whichever generation is current."""
        return layout(self.install_dir, self.platform)["comfyui"] / "custom_nodes"

    @property
    def torch_index(self) -> list[str]:
        """The torch index the install used, as an extra index (none for uv's default)."""
        url = self.state_torch.get("index_url")
        return [str(url)] if url else []


def open_install(install_dir: Path) -> Install:
    """Find the venv, ComfyUI and the recorded torch of DIR's current generation.

    After an update or a restore, the venv, the ComfyUI checkout (its requirements) and the
    state are the current generation's; the node folders stay the user's, in DIR/ComfyUI.

    Args:
        install_dir: DIR.

    Raises:
        UsageError: DIR holds no finished install (exit code 2).
    """
    platform = current_platform()
    root = current_root(install_dir, platform)
    paths = layout(root, platform)
    state, _ = read_state(root)
    if state is None or not paths["venv_python"].exists() or not paths["comfyui"].is_dir():
        raise UsageError(
            f"{install_dir} holds no finished comfy-install install.",
            f"Run `comfy-install install {install_dir}` first.",
        )
    torch = state.done("torch")
    requirements = state.done("requirements")
    extra = list(requirements.inputs.get("extra") or []) if requirements else []
    return Install(install_dir, platform, paths, dict(torch.outputs) if torch else {}, extra)


def make_uv(index: IndexOptions, log: InstallerLogger) -> Uv:
    """Return uv bound to the index options.

    Args:
        index: The mirror and offline options.
        log: Logger.
    """
    return Uv(binary=find_uv_binary() or "uv", index=index, log=log)


def node_name(source: str) -> str:
    """Return the folder name a node from ``source`` gets (the URL's or path's last part).

    Args:
        source: A git URL or a local path.

    Raises:
        UsageError: No usable name can be made from it.
    """
    tail = re.split(r"[/\\:]", source.rstrip("/\\"))[-1]
    tail = tail.removesuffix(".git").removesuffix(".bundle")
    if not re.fullmatch(r"[A-Za-z0-9._-]+", tail) or tail in (".", ".."):
        raise UsageError(f"{source}: cannot name a node folder after it.", "Pass --name NAME.")
    return tail


def resolution_sources(
    install: Install, nodes: NodesState, skip: str | None = None
) -> dict[str, list[str]]:
    """Return the requirement lines of ComfyUI, the extras and each installed node, by source.

    Args:
        install: The install.
        nodes: The nodes record (its nodes' recorded requirements, skips applied, count).
        skip: A node folder to leave out (the one being removed).
    """
    text = (install.paths["comfyui"] / "requirements.txt").read_text(encoding="utf-8")
    sources: dict[str, list[str]] = {COMFYUI_SOURCE: requirements_txt_lines(text)[0]}
    if install.extra:
        sources[EXTRA_SOURCE] = list(install.extra)
    for folder in node_folders(install.custom_nodes):
        if folder.name == skip:
            continue
        record = nodes.node(folder.name)
        if record is not None:
            sources[folder.name] = list(record.requirements)
        else:
            sources[folder.name] = list(read_node_requirements(folder).requirements)
    return sources


def input_files(sources: dict[str, list[str]]) -> dict[str, list[str]]:
    """Return the resolution's input files (by name) for the sources.

    Args:
        sources: Requirement lines by source.
    """
    files: dict[str, list[str]] = {}
    for who, lines in sources.items():
        if who == COMFYUI_SOURCE:
            files["comfyui-requirements.txt"] = lines
        elif who == EXTRA_SOURCE:
            files["extra-requirements.txt"] = lines
        elif lines:
            files[node_file_name(who)] = lines
    return files


def resolve_install(
    install: Install,
    uv: Uv,
    sources: dict[str, list[str]],
    workdir: Path,
) -> Resolution:
    """Resolve every source together, torch and the accelerators held, the venv preferred.

    Args:
        install: The install.
        uv: uv, bound to the index options.
        sources: Requirement lines by source.
        workdir: A scratch folder.

    Raises:
        ResolutionFailed: No resolution exists.
        NetworkError: An index could not be reached.
    """
    from installer.nodes.resolve import ResolveRequest, resolve

    installed = installed_distributions(install.paths["venv"], install.platform)
    held = held_versions(installed)
    request = ResolveRequest(
        files=input_files(sources),
        held=held,
        preferences={name: v for name, v in installed.items() if name not in held},
        python=install.paths["venv_python"],
        extra_index_urls=install.torch_index,
    )
    return resolve(uv, request, workdir)
