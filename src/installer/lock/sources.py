"""The requirement files a lock is made from, read with git at their pinned commits.

ComfyUI and every custom node with requirements are cloned into a scratch folder
at the commit `dependencies.json` pins, and their requirements read into a
[`LockSources`][installer.core.lockfile.LockSources]: ComfyUI's `requirements.txt`, and each
node's `requirements.txt` and `pyproject.toml` dependencies as `nodes add` reads them
([`read_node_files`][installer.edges.node_files.read_node_files] and
[`node_requirements`][installer.plan.nodes.node_requirements]).
"""

from __future__ import annotations

from pathlib import Path

from installer.core.config import Dependencies
from installer.core.errors import InstallerError, StepFailedError
from installer.core.lockfile import LockSources
from installer.core.log import InstallerLogger, redact
from installer.edges.git import checkout_pinned
from installer.edges.node_files import read_node_files
from installer.plan.nodes import node_requirements, requirements_text


def read_sources(
    deps: Dependencies,
    workdir: Path,
    log: InstallerLogger,
    *,
    comfyui_url: str | None = None,
    comfyui_ref: str | None = None,
) -> LockSources:
    """Clone ComfyUI and the custom nodes at their pins and read their requirement files.

    Args:
        deps: The configuration (its pins).
        workdir: An empty scratch folder for the clones.
        log: Logger for git's output.
        comfyui_url: Clone ComfyUI from here instead of `comfyui.url` (a
            mirror, a local clone or a git bundle).
        comfyui_ref: Read `requirements.txt` at this ref instead of the pinned
            commit, for a source that lacks the commit but has the same tree
            (the lock still records the pinned commit, and the file's sha256).

    Raises:
        StepFailedError: A clone or checkout failed, or a file is missing.
    """
    url = comfyui_url or deps.comfyui.url
    target = comfyui_ref or deps.comfyui.commit
    expected = None if comfyui_ref else deps.comfyui.commit
    dest = workdir / "ComfyUI"
    try:
        commit = checkout_pinned(dest, url, target, log, expected=expected)
    except InstallerError as exc:
        raise StepFailedError(
            f"Could not read ComfyUI's requirements.txt at {target} from {redact(url)}: "
            f"{exc.message}",
            "Pass --comfyui-url with a reachable clone, mirror or git bundle (and "
            "--comfyui-ref REF if it lacks the pinned commit but has the same tree).",
        ) from exc
    requirements = _read_text(dest / "requirements.txt")
    nodes: dict[str, str | None] = {}
    for node in deps.custom_nodes:
        if not node.requirements:
            nodes[node.name] = None
            continue
        node_dir = workdir / "custom_nodes" / node.name
        try:
            checkout_pinned(node_dir, node.url, node.commit, log, expected=node.commit)
        except InstallerError as exc:
            raise StepFailedError(
                f"Could not read the requirements of custom node {node.name} at "
                f"{node.commit[:12]} from {redact(node.url)}: {exc.message}",
                "Check the node's url and commit in dependencies.json and the network.",
            ) from exc
        nodes[node.name] = node_requirements_text(node_dir)
    return LockSources(requirements, commit, nodes)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise StepFailedError(
            f"{path} cannot be read: {exc}.", "Check that the checkout is ComfyUI."
        ) from exc


def node_requirements_text(node_dir: Path) -> str | None:
    """Return a node's requirement lines as the lock resolves and hashes them (None: none).

    Args:
        node_dir: The node's folder.

    Raises:
        StepFailedError: A file exists but cannot be read or parsed.
    """
    files = read_node_files(node_dir)
    return requirements_text(
        node_requirements(files.requirements_txt, files.pyproject, files.install_script)
    )
