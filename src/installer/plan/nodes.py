"""Custom nodes, decided as data: their requirements, the held packages, conflicts, removals.

Everything here is pure: the texts of a node's files, the venv's distributions and a resolution
go in, requirement lists, conflicts with their ways out, and the packages to install or remove
come out. [`installer.nodes`][installer.nodes] reads the files and runs uv;
[`installer.commands.nodes`][installer.commands.nodes] puts the two together.

A node's dependencies are read the way ComfyUI-Manager reads them: the lines of its
`requirements.txt` (comments and pip options dropped) and its `pyproject.toml`'s
`[project].dependencies`; an `install.py` is code, run only when the user allows it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from installer.core.errors import UsageError
from installer.core.nodes import ResolutionConflict

if TYPE_CHECKING:
    from installer.core.lockfile import LockEntry

HELD_PACKAGES = (
    "torch",
    "torchvision",
    "torchaudio",
    "xformers",
    "triton",
    "triton-windows",
    "sageattention",
    "sageattn3",
)
"""Packages a node's requirements never change: the torch trio and the accelerators."""

UI_ONLY_CLASSES = frozenset({"Reroute", "Note", "MarkdownNote", "PrimitiveNode", "GroupNode"})
"""Node types of the UI format that the frontend draws itself (the server has no class)."""

COMFYUI_SOURCE = "ComfyUI"
EXTRA_SOURCE = "extra requirements"


@dataclass(frozen=True)
class NodeRequirements:
    """What a node asks for: its requirements, where they came from, and its install script."""

    requirements: tuple[str, ...]
    files: tuple[str, ...]
    ignored: tuple[str, ...] = ()
    install_script: bool = False


@dataclass(frozen=True)
class Conflict:
    """Why a node cannot be installed beside what is there, and the ways out."""

    node: str
    requirement: str
    fights: str
    detail: str
    ways_out: tuple[str, ...] = ()

    @property
    def message(self) -> str:
        """One sentence: which node, which requirement, which package it fights."""
        return (
            f"custom node {self.node} cannot be installed: its requirement {self.requirement} "
            f"conflicts with {self.fights} ({self.detail}); nothing was changed."
        )

    @property
    def hint(self) -> str:
        """The ways out, one after another."""
        return "Ways out: " + "; or ".join(self.ways_out) + "."


def requirements_txt_lines(text: str) -> tuple[list[str], list[str]]:
    """Split a `requirements.txt` the way ComfyUI-Manager reads it.

    Args:
        text: The file's text.

    Returns:
        ``(requirements, ignored)``: requirement lines (comments stripped), and the lines that are
        pip options (`-r`, `--index-url`, `-e`, ...) or not requirements at all.
    """
    requirements: list[str] = []
    ignored: list[str] = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            ignored.append(line)
            continue
        try:
            Requirement(line)
        except InvalidRequirement:
            ignored.append(line)
            continue
        requirements.append(line)
    return requirements, ignored


def node_requirements(
    requirements_txt: str | None, pyproject: Mapping[str, Any] | None, has_install_script: bool
) -> NodeRequirements:
    """Return a node's requirements: its `requirements.txt`, then its pyproject dependencies.

    Args:
        requirements_txt: The text of its `requirements.txt` (None: it has none).
        pyproject: Its parsed `pyproject.toml` (None: it has none).
        has_install_script: It has an `install.py`.
    """
    found: list[str] = []
    ignored: list[str] = []
    files: list[str] = []
    if requirements_txt is not None:
        files.append("requirements.txt")
        found, ignored = requirements_txt_lines(requirements_txt)
    project = pyproject.get("project") if isinstance(pyproject, Mapping) else None
    dependencies = project.get("dependencies") if isinstance(project, Mapping) else None
    if isinstance(dependencies, list) and dependencies:
        files.append("pyproject.toml")
        named = {requirement_name(line) for line in found}
        for item in dependencies:
            if not isinstance(item, str):
                continue
            try:
                Requirement(item)
            except InvalidRequirement:
                ignored.append(item)
                continue
            if requirement_name(item) not in named:
                found.append(item)
    if has_install_script:
        files.append("install.py")
    return NodeRequirements(tuple(found), tuple(files), tuple(ignored), has_install_script)


def requirements_text(found: NodeRequirements) -> str | None:
    """Return a node's requirement lines as one text (None: it has none).

    What `lock` resolves for a node and hashes into its header: the lines of its
    `requirements.txt` and its pyproject dependencies, as
    [`node_requirements`][installer.plan.nodes.node_requirements] read them (pip options
    and comments dropped), so a lock covers the same requirements `nodes add` and step 9
    install.

    Args:
        found: What the node asks for.
    """
    if not found.requirements:
        return None
    return "".join(f"{line}\n" for line in found.requirements)


def requirement_name(text: str) -> str:
    """Return the canonical project name of a requirement line (the line itself if unparsable).

    Args:
        text: A requirement, e.g. `Shared_Lib>=1`.
    """
    try:
        return canonicalize_name(Requirement(text).name)
    except InvalidRequirement:
        return text.strip()


def unmet_requirements(
    nodes: Mapping[str, Sequence[str]], installed: Mapping[str, str]
) -> dict[str, list[str]]:
    """Return, by node, the requirement lines a venv does not satisfy (absent or another version).

    `rollback` says with it which node folders (the user's, shared by every generation) stay
    without their requirements in the generation it goes back to.

    Args:
        nodes: Each node's requirement lines (as recorded when it was added).
        installed: ``{canonical name: version}`` of the venv.
    """
    unmet: dict[str, list[str]] = {}
    for node, lines in nodes.items():
        for line in lines:
            try:
                requirement = Requirement(line)
            except InvalidRequirement:
                continue
            if requirement.marker is not None and not requirement.marker.evaluate():
                continue
            have = installed.get(canonicalize_name(requirement.name))
            try:
                fits = have is not None and requirement.specifier.contains(
                    Version(have), prereleases=True
                )
            except InvalidVersion:
                fits = True
            if not fits:
                unmet.setdefault(node, []).append(line)
    return unmet


def apply_skips(
    requirements: Sequence[str], skip: Sequence[str], node: str
) -> tuple[list[str], list[str]]:
    """Drop the requirements named by `--skip-requirement`.

    Args:
        requirements: The node's requirement lines.
        skip: Project names to leave out.
        node: The node's name, for the message.

    Returns:
        ``(kept, skipped)`` requirement lines.

    Raises:
        UsageError: A skipped name is not among the node's requirements.
    """
    wanted = {canonicalize_name(name) for name in skip}
    have = {requirement_name(line) for line in requirements}
    unknown = sorted(wanted - have)
    if unknown:
        raise UsageError(
            f"--skip-requirement {', '.join(unknown)}: custom node {node} does not require it.",
            f"Its requirements are: {', '.join(requirements) or 'none'}.",
        )
    kept = [line for line in requirements if requirement_name(line) not in wanted]
    skipped = [line for line in requirements if requirement_name(line) in wanted]
    return kept, skipped


def held_versions(installed: Mapping[str, str]) -> dict[str, str]:
    """Return the held packages present in the venv, with their installed versions.

    Args:
        installed: ``{canonical name: version}`` of the venv.
    """
    return {name: installed[name] for name in HELD_PACKAGES if name in installed}


def ways_out(command: str, requirement: str) -> tuple[str, ...]:
    """Return what the user can do about a conflicting requirement of a node.

    Args:
        command: The `comfy-install nodes add DIR SOURCE ...` command that was run.
        requirement: The requirement that conflicts.
    """
    name = requirement_name(requirement)
    return (
        f"`{command} --skip-requirement {name}` (the node without {name}; it may not work)",
        f"`{command} --no-deps` (none of its requirements)",
        f"`{command} --ref REF` with a release of the node that fits",
    )


def held_conflict(
    node: str, requirements: Sequence[str], held: Mapping[str, str], source: str
) -> Conflict | None:
    """Find a requirement on a held package that the installed version does not satisfy.

    A requirement on torch (or torchvision, torchaudio, xformers, triton, sageattention) that the
    held version satisfies is fine; one it does not is a conflict, never an install.

    Args:
        node: The node's name.
        requirements: Its requirement lines (after skips).
        held: The held packages and their installed versions.
        source: The `nodes add` command that was run (the ways out repeat it).
    """
    for line in requirements:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        name = canonicalize_name(requirement.name)
        if name not in held:
            continue
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        try:
            version = Version(held[name])
        except InvalidVersion:
            continue
        if requirement.specifier.contains(version, prereleases=True):
            continue
        return Conflict(
            node=node,
            requirement=line,
            fights=f"the held {name} {held[name]}",
            detail="a held package is never replaced",
            ways_out=ways_out(source, line),
        )
    return None


def explain_conflict(
    node: str,
    node_lines: Sequence[str],
    conflict: ResolutionConflict,
    sources: Mapping[str, Sequence[str]],
    held: Mapping[str, str],
    source: str,
) -> Conflict:
    """Name the requirement of ``node`` and the package it fights, from uv's resolver error.

    Everything installed resolved before, so the new node is the culprit: the requirement of
    it that uv names (directly, or through a package it depends on) is the one, and the other
    side is the held package, or the installed node or ComfyUI that names the same project.

    Args:
        node: The new node's name.
        node_lines: Its requirement lines.
        conflict: What uv's error named.
        sources: Requirement lines by who asked for them (`ComfyUI`, other nodes' names).
        held: The held packages and their versions.
        source: The `nodes add` command that was run (the ways out repeat it).
    """
    named = [requirement_name(item) for item in conflict.requirements]
    named += [requirement_name(pkg) for pkg, _ in conflict.depends]
    named += [requirement_name(req) for _, req in conflict.depends]
    mine = {requirement_name(line): line for line in node_lines}
    culprit = next((mine[name] for name in named if name in mine), None)
    if culprit is None:
        culprit = node_lines[0] if node_lines else "(none)"
    others: list[str] = []
    for name in dict.fromkeys(named):
        # The culprit's own project counts too: another source may pin it otherwise
        # (`you require shared-lib==2.0 and shared-lib==1.0`); the node's own lines never do.
        if name in held:
            others.append(f"the held {name} {held[name]}")
            continue
        for who, lines in sources.items():
            if who == node:
                continue
            for line in lines:
                if requirement_name(line) == name:
                    owner = who if who in (COMFYUI_SOURCE, EXTRA_SOURCE) else f"custom node {who}"
                    others.append(f"{line} (required by {owner})")
    fights = "; ".join(dict.fromkeys(others)) or "the installed packages"
    return Conflict(
        node=node,
        requirement=culprit,
        fights=fights,
        detail=conflict.summary or "uv found no resolution",
        ways_out=ways_out(source, culprit),
    )


def entry_version(entry: LockEntry) -> str | None:
    """Return the version an entry pins (`name==version`), or None for another form.

    Args:
        entry: A resolved entry.
    """
    head = entry.requirement.split(";", 1)[0].strip()
    if "==" not in head:
        return None
    return head.split("==", 1)[1].strip()


def to_install(
    entries: Sequence[LockEntry], installed: Mapping[str, str], held: Iterable[str] = HELD_PACKAGES
) -> list[LockEntry]:
    """Return the resolved entries the venv lacks or holds at another version (never held ones).

    Args:
        entries: The resolution.
        installed: ``{canonical name: version}`` of the venv.
        held: Names never installed by a node.
    """
    keep = set(held)
    wanted: list[LockEntry] = []
    for entry in entries:
        if entry.name in keep:
            continue
        version = entry_version(entry)
        have = installed.get(entry.name)
        if have is not None and version is not None and _same_version(have, version):
            continue
        wanted.append(entry)
    return wanted


def _same_version(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


@dataclass(frozen=True)
class Removal:
    """What `nodes remove` will take out of the venv, and why each package stays or goes."""

    remove: list[str] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)


def plan_removal(
    still_needed: Iterable[str], candidates: Iterable[str], installed: Mapping[str, str]
) -> Removal:
    """Decide which packages leave the venv with a node: those only it needed.

    Args:
        still_needed: Every package the resolution of what remains (ComfyUI, the extra
            requirements, the other nodes) holds.
        candidates: Packages the node's `nodes add` brought in (nothing else is ever removed).
        installed: The venv's distributions.
    """
    still = set(still_needed)
    remove: list[str] = []
    kept: dict[str, str] = {}
    for name in sorted(set(candidates)):
        if name in HELD_PACKAGES:
            kept[name] = "held"
        elif name in still:
            kept[name] = "another node or ComfyUI needs it"
        elif name not in installed:
            kept[name] = "not in the venv"
        else:
            remove.append(name)
    return Removal(remove, kept)


def node_file_name(name: str) -> str:
    """Return the resolution's input file name of a node (`custom-node-NAME.txt`).

    Args:
        name: The node's folder name.
    """
    return f"custom-node-{name}.txt"


def workflow_classes(workflow: Any) -> list[str]:
    """Return the node classes a workflow uses, from its API or UI JSON format.

    Args:
        workflow: The parsed JSON: the API format (``{id: {"class_type": ...}}``) or the UI
            format (``{"nodes": [{"type": ...}], ...}``, subgraphs included).

    Raises:
        UsageError: It is neither.
    """
    classes: set[str] = set()
    if isinstance(workflow, dict) and isinstance(workflow.get("nodes"), list):
        subgraphs = ((workflow.get("definitions") or {}).get("subgraphs")) or []
        ids = {graph.get("id") for graph in subgraphs if isinstance(graph, dict)}
        groups = ((workflow.get("extra") or {}).get("groupNodes")) or {}
        graphs = [workflow, *[g for g in subgraphs if isinstance(g, dict)]]
        for graph in graphs:
            for node in graph.get("nodes") or []:
                kind = node.get("type") if isinstance(node, dict) else None
                if isinstance(kind, str) and kind not in ids and kind not in UI_ONLY_CLASSES:
                    if kind.startswith("workflow>") or kind.startswith("workflow/"):
                        continue
                    classes.add(kind)
        for group in groups.values() if isinstance(groups, dict) else []:
            for node in (group or {}).get("nodes") or []:
                kind = node.get("type") if isinstance(node, dict) else None
                if isinstance(kind, str) and kind not in UI_ONLY_CLASSES:
                    classes.add(kind)
        return sorted(classes)
    if isinstance(workflow, dict) and workflow:
        for node in workflow.values():
            if not (isinstance(node, dict) and isinstance(node.get("class_type"), str)):
                break
            classes.add(node["class_type"])
        else:
            return sorted(classes)
    raise UsageError(
        "The file is not a ComfyUI workflow (neither the API format nor the UI format).",
        "Pass a workflow saved from ComfyUI (Save, or Export (API)).",
    )


def missing_classes(used: Iterable[str], available: Iterable[str]) -> list[str]:
    """Return the classes a workflow uses that the install does not have.

    Args:
        used: The workflow's classes.
        available: The classes ComfyUI's `/object_info` lists.
    """
    have = set(available)
    return sorted(name for name in set(used) if name not in have)
