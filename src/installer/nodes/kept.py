"""The custom nodes an update keeps: DIR's `nodes.json` nodes, resolved with the new ComfyUI.

`nodes add` installs a node's requirements into the current generation's venv only, while
`launch` loads every node folder of `DIR/ComfyUI/custom_nodes` whichever generation is current.
So an update's new generation keeps each recorded node whose folder is there
([`recorded_nodes`][installer.nodes.kept.recorded_nodes]), and before anything is built its
recorded requirements are resolved with the new ComfyUI's, torch and the accelerators held
([`check_recorded_nodes`][installer.nodes.kept.check_recorded_nodes]), so that a conflict is
named before anything changes.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from installer.core.config import Dependencies, IndexOptions
from installer.core.errors import NodeConflictError, ResolutionError
from installer.core.log import InstallerLogger
from installer.core.nodes import NodesState, ResolutionConflict
from installer.plan.generations import shared_nodes_dir
from installer.plan.nodes import Conflict, requirement_name
from installer.plan.records import InstallOptions, Plan, RecordedNode


def recorded_nodes(
    record: NodesState, install_dir: Path, platform: str, log: InstallerLogger
) -> tuple[RecordedNode, ...]:
    """Return the nodes of DIR's `nodes.json` a new generation keeps: those whose folder is there.

    Their requirements are in the current venv only (`nodes add` installed them there), while
    `launch` loads their folders from `DIR/ComfyUI/custom_nodes` whichever generation is
    current. A record whose folder is gone is left out, with a warning.

    Args:
        record: DIR's `nodes.json`, as read.
        install_dir: DIR.
        platform: The target OS.
        log: Where the warning goes.
    """
    folder = Path(shared_nodes_dir(install_dir, platform))
    kept: list[RecordedNode] = []
    for node in record.nodes:
        if not (folder / node.name).is_dir():
            log.warn(
                f"custom node {node.name} is recorded in nodes.json but {folder / node.name} "
                "is gone: its requirements are not carried into the new generation"
            )
            continue
        kept.append(
            RecordedNode(
                name=node.name,
                commit=node.commit,
                requirements=tuple(node.requirements),
                skipped_requirements=tuple(node.skipped_requirements),
                no_deps=node.no_deps,
            )
        )
    return tuple(kept)


def with_nodes_index(
    options: InstallOptions,
    index: IndexOptions,
    kept: Sequence[RecordedNode],
    log: InstallerLogger,
) -> tuple[InstallOptions, list[str]]:
    """Add the find-links and extra indexes of DIR's `nodes.json` to an update keeping its nodes.

    See [`node_index_inputs`][installer.plan.update.node_index_inputs]; a local find-links
    folder that no longer exists is left out, with a warning (the resolve then says what it
    cannot find).

    Args:
        options: The update's options, filled from the install's record.
        index: The index options DIR's `nodes.json` recorded.
        kept: The nodes the update keeps.
        log: Where the warning goes.

    Returns:
        The options to plan with, and a line for each added input, for the preview.
    """
    from installer.plan.update import node_index_inputs

    present: list[str] = []
    for link in index.find_links:
        if "://" in link or Path(link).exists():
            present.append(link)
        else:
            log.warn(f"--find-links {link}, recorded by nodes add in nodes.json, is gone")
    index = index.model_copy(update={"find_links": present})
    return node_index_inputs(options, index, [node.name for node in kept if node.requirements])


def check_recorded_nodes(
    plan: Plan,
    deps: Dependencies,
    new_requirements: str | None,
    installed: dict[str, str],
    venv_python: Path,
    install_dir: Path,
    again: str,
    log: InstallerLogger,
) -> None:
    """Resolve the kept nodes' requirements with the new ComfyUI's, torch and accelerators held.

    The same resolution `nodes add` makes (`uv pip compile`, never pip): the new ComfyUI's
    `requirements.txt`, the extra requirements, the configured nodes' and each kept node's
    recorded requirements, with the new generation's torch set and accelerators (and its lock's
    pins) as constraints and the current venv's versions preferred. Nothing is written in DIR
    (the scratch files go to a temporary folder). No kept node with requirements: no resolve.

    Args:
        plan: The new generation's plan (its `recorded_nodes` are the kept nodes).
        deps: The configuration it was planned from.
        new_requirements: The new commit's `requirements.txt` (None: it has none).
        installed: ``{canonical name: version}`` of the current venv.
        venv_python: The current venv's interpreter (its markers and version).
        install_dir: DIR (its shared `custom_nodes` folder, and the hint).
        again: The update's own command line, for the hint.
        log: Logger (uv's output).

    Raises:
        NodeConflictError: A kept node's requirement conflicts; the message names the node, the
            requirement and what it fights (the new ComfyUI, an extra requirement, another node
            or a held package).
        NetworkError: An index could not be reached.
    """
    from installer.edges.probe import venv_version
    from installer.nodes.context import make_uv
    from installer.nodes.files import read_node_requirements
    from installer.nodes.resolve import ResolveRequest, resolve
    from installer.plan.nodes import (
        COMFYUI_SOURCE,
        EXTRA_SOURCE,
        held_conflict,
        node_file_name,
        requirements_txt_lines,
    )
    from installer.plan.update import kept_node_conflict, planned_held

    nodes = [node for node in plan.recorded_nodes if node.requirements]
    if not nodes:
        return
    held = planned_held(plan, installed)
    for node in nodes:
        found = held_conflict(node.name, node.requirements, held, "comfy-install")
        if found is not None:
            raise _kept_node_error(found, install_dir, again)
    folder = Path(shared_nodes_dir(install_dir, plan.platform))
    sources: dict[str, list[str]] = {
        COMFYUI_SOURCE: requirements_txt_lines(new_requirements or "")[0]
    }
    if deps.extra_requirements:
        sources[EXTRA_SOURCE] = list(deps.extra_requirements)
    for configured in plan.custom_nodes:
        if configured.requirements and (folder / configured.name).is_dir():
            sources[configured.name] = list(
                read_node_requirements(folder / configured.name).requirements
            )
    for node in nodes:
        sources[node.name] = list(node.requirements)
    constraints = dict(held)
    marked: list[str] = []
    if plan.lock is not None and plan.lock.path:
        pins, marked = lock_constraints(Path(plan.lock.path), held)
        constraints.update(pins)
    files = {"comfyui-requirements.txt": sources[COMFYUI_SOURCE]}
    if EXTRA_SOURCE in sources:
        files["extra-requirements.txt"] = sources[EXTRA_SOURCE]
    files.update(
        {node_file_name(who): lines for who, lines in sources.items()
         if who not in (COMFYUI_SOURCE, EXTRA_SOURCE) and lines}
    )  # fmt: skip
    uv = make_uv(plan.index, log)
    venv_dir = venv_python.parent.parent
    with tempfile.TemporaryDirectory(prefix="comfy-install-update-nodes-") as work:
        try:
            resolve(
                uv,
                ResolveRequest(
                    files=files,
                    held=constraints,
                    constraints=marked,
                    preferences={n: v for n, v in installed.items() if n not in constraints},
                    python=venv_python,
                    python_version=target_python_version(plan.python, venv_version(venv_dir)),
                    extra_index_urls=[plan.torch.index_url] if plan.torch.index_url else [],
                ),
                Path(work),
            )
        except ResolutionError as exc:
            conflict = exc.conflict if isinstance(exc.conflict, ResolutionConflict) else None
            raise _kept_node_error(
                kept_node_conflict(conflict, nodes, sources, held), install_dir, again
            ) from exc
    log.info(
        "the kept custom nodes resolve with the new ComfyUI, torch held: "
        + ", ".join(node.name for node in nodes)
    )


def target_python_version(planned: str, current: str | None) -> str | None:
    """The Python version to resolve kept nodes for, when the new generation's is another.

    The resolve runs with the current venv's interpreter (its platform markers); an update
    that moves to another Python (`--python 3.13`, or a new shipped default) must resolve for
    that version, or a node's requirement that the new Python excludes (or only it needs) is
    judged for the old one.

    Args:
        planned: The new generation's Python request (a version such as ``3.13``, or a path).
        current: The current venv's Python version (None: unknown).

    Returns:
        ``planned`` where it is a version whose major.minor differs from ``current``'s;
        None where the interpreter's own version is the right one (or ``planned`` is a path,
        whose version is not known without running it).
    """
    from packaging.version import InvalidVersion, Version

    try:
        target = Version(planned)
    except InvalidVersion:
        return None
    try:
        now = Version(current) if current else None
    except InvalidVersion:
        now = None
    if now is not None and now.release[:2] == target.release[:2]:
        return None
    return planned


def lock_constraints(lock: Path, held: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """The pins of a lock file (step 9 installs with it as a constraint), held packages aside.

    Args:
        lock: The lock file the new generation installs with.
        held: The packages held at their planned versions (they win over the lock's).

    Returns:
        ``{name: version}`` of the lock's unconditional `name==version` entries, and the
        requirement lines of its entries with environment markers (`name==version ; marker`),
        which uv applies where the marker holds; nothing where the file cannot be read.
    """
    from installer.core.lockfile import parse_entries
    from installer.plan.nodes import entry_version

    try:
        text = lock.read_text(encoding="utf-8")
    except OSError:
        return {}, []
    pins: dict[str, str] = {}
    marked: list[str] = []
    for entry in parse_entries(text.splitlines()):
        version = entry_version(entry)
        if version is None or entry.name in held:
            continue
        if ";" in entry.requirement:
            marked.append(entry.requirement)
        else:
            pins[entry.name] = version
    return pins, marked


def _kept_node_error(conflict: Conflict, install_dir: Path, again: str) -> NodeConflictError:
    """The refusal of an update whose kept node conflicts: who, what, the ways out."""
    name = requirement_name(conflict.requirement)
    return NodeConflictError(
        f"this update cannot keep custom node {conflict.node}: its requirement "
        f"{conflict.requirement} conflicts with {conflict.fights} ({conflict.detail}); nothing "
        "was changed (the current generation stays current).",
        "Ways out: update to a ComfyUI the node fits (`comfy-install update "
        f"{install_dir} --comfyui-ref REF`); or take the node out (`comfy-install nodes remove "
        f"{install_dir} {conflict.node}`), run `{again}` again, then add it back "
        f"without {name} (`comfy-install nodes add {install_dir} SOURCE --skip-requirement "
        f"{name}`) or at a release that fits (`--ref REF`).",
    )
