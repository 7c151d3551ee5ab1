r"""Generations, planned: where each one lives, the switch, rollback, pruning, shared folders.

Everything here is pure: paths are `PurePath`s of the target platform
(`PureWindowsPath` for Windows, so the Windows plan is tested on Linux), and the
edges module [`installer.edges.generations`][installer.edges.generations] carries the
plans out.

**The switch.** Which generation is current is one small file,
`DIR/.comfy-install/current-generation`, holding the generation's number. A switch
writes the new number to a temporary file in the same folder, flushes it, and renames it
over the pointer: a rename within one folder is atomic on POSIX (`rename(2)`) and on
NTFS (`MoveFileEx` with `MOVEFILE_REPLACE_EXISTING`, what Python's `os.replace` calls),
so a reader sees the old number or the new one, never neither. A symlink or a directory
junction was not chosen: Windows cannot replace an existing junction in one step (a
directory cannot be renamed over another), and symlinks there need a privilege. No
pointer file means generation 1: an install made before generations existed is adopted
as it is.

**What is shared.** The user's folders stay where the first install put them, in
`DIR/ComfyUI` (models, input, output, user, custom_nodes, extra_model_paths.yaml). A
later generation's ComfyUI is a separate checkout that holds none of them; `launch`
starts it with `--base-directory DIR/ComfyUI` (ComfyUI v0.3.77 and v0.33.0 both take
models, custom_nodes, input, output, temp and user from there) and, when the user has
one, `--extra-model-paths-config DIR/ComfyUI/extra_model_paths.yaml` (ComfyUI reads that
file only from its own folder otherwise). Nothing is copied, moved or linked.

**Custom nodes are shared too.** The configured nodes (dependencies.json's `custom_nodes`)
live where ComfyUI loads them in every generation, `DIR/ComfyUI/custom_nodes/NAME`, like the
ones `nodes add` puts there. A later generation's build
([`plan_shared_nodes`][installer.plan.generations.plan_shared_nodes]) clones a node that is
not there yet (a new folder), uses one already at the pinned commit as it is, and refuses,
before anything changes, one at another commit, with local changes or not a git checkout:
the folder is the user's and every generation loads it, so no build may move it. Each build
still installs every configured node's requirements into its own venv. Its verify step loads
the same folder ([`verify_nodes_paths`][installer.plan.generations.verify_nodes_paths]).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Literal, Protocol

from installer.core.errors import UsageError
from installer.core.facts import pure_path
from installer.core.generations import (
    EXTRA_PATHS_NAME,
    POINTER_NAME,
    STATE_FOLDER,
    Generation,
    data_root,
    generation_root,
    owning_install,
)
from installer.core.nodes import NodeFolder
from installer.plan.records import PlannedStep

DEFAULT_KEEP = 2


@dataclass(frozen=True)
class SwitchPlan:
    """How the current generation is switched: one rename of a small file."""

    target: int
    pointer: PurePath
    temporary: PurePath
    text: str
    method: str

    def describe(self) -> str:
        """One line for people: what is renamed onto what."""
        return f"{self.method}: {self.temporary.name} -> {self.pointer} (generation {self.target})"


def plan_switch(install_dir: PurePath, target: int, platform: str) -> SwitchPlan:
    """Plan the switch of DIR's current generation to ``target``.

    Args:
        install_dir: DIR.
        target: The generation to make current.
        platform: The target OS; it names the rename used.

    Returns:
        The pointer file, the temporary file written beside it (same folder, so the rename
        never crosses a file system) and the text written.
    """
    folder = pure_path(platform, install_dir) / STATE_FOLDER
    method = (
        "MoveFileEx(MOVEFILE_REPLACE_EXISTING) rename"
        if platform == "windows"
        else "rename(2) over the pointer"
    )
    return SwitchPlan(
        target=target,
        pointer=folder / POINTER_NAME,
        temporary=folder / f".{POINTER_NAME}.{target}.tmp",
        text=f"{target}\n",
        method=method,
    )


def rollback_target(generations: Sequence[Generation], current: int) -> int:
    """Return the generation `rollback` goes back to: the newest verified one before current.

    Args:
        generations: Every recorded generation.
        current: The current generation's number.

    Raises:
        UsageError: There is no verified generation older than the current one (exit code 2).
    """
    older = [g.id for g in generations if g.id < current and g.verified]
    if not older:
        raise UsageError(
            f"There is no previous generation to roll back to (generation {current} is the "
            "oldest one kept).",
            "`comfy-install status DIR` lists the generations; an update makes a new one.",
        )
    return max(older)


@dataclass(frozen=True)
class PruneItem:
    """One generation to prune and the paths removed with it (relative to nothing: absolute)."""

    generation: int
    remove: tuple[PurePath, ...]
    reason: str


def plan_prune(
    generations: Sequence[Generation],
    current: int,
    keep: int,
    install_dir: PurePath,
    platform: str,
    building: int | None = None,
) -> list[PruneItem]:
    """Choose the generations to remove so that ``keep`` remain (the current one always does).

    The newest ones are kept. Generation 1 loses only its venv: its `ComfyUI` folder holds
    the user's folders (and the git repository the later checkouts are worktrees of).

    Args:
        generations: Every recorded generation.
        current: The current generation (never pruned).
        keep: How many generations to keep, the current one included (at least 1).
        install_dir: DIR.
        platform: The target OS.
        building: A generation being built right now (never pruned).

    Raises:
        UsageError: ``keep`` is below 1 (exit code 2).
    """
    if keep < 1:
        raise UsageError(f"--keep {keep}: at least the current generation is kept (1 or more).")
    others = sorted((g.id for g in generations if g.id not in (current, building)), reverse=True)
    kept = set(others[: keep - 1])
    items: list[PruneItem] = []
    for number in others:
        if number in kept:
            continue
        root = generation_root(install_dir, number, platform)
        if number == 1:
            paths: tuple[PurePath, ...] = (root / "venv",)
            reason = f"beyond --keep {keep}; DIR/ComfyUI stays (it holds your folders)"
        else:
            paths = (root,)
            reason = f"beyond --keep {keep}"
        items.append(PruneItem(number, paths, reason))
    return items


def shared_folder_args(
    install_dir: PurePath,
    checkout: PurePath,
    platform: str,
    *,
    extra_paths_exists: bool,
    user_args: Sequence[str] = (),
) -> list[str]:
    """Return the ComfyUI arguments that point a generation's checkout at the user's folders.

    Args:
        install_dir: DIR.
        checkout: The current generation's ComfyUI folder.
        platform: The target OS.
        extra_paths_exists: `DIR/ComfyUI/extra_model_paths.yaml` exists.
        user_args: The ComfyUI arguments the user gave (their own choice wins).

    Returns:
        Nothing for generation 1 (its checkout is the data folder); else `--base-directory`
        and, when the user has the file, `--extra-model-paths-config`.
    """
    data = data_root(install_dir, platform)
    if pure_path(platform, checkout) == data:
        return []
    given = {arg.split("=", 1)[0] for arg in user_args}
    args: list[str] = []
    if "--base-directory" not in given:
        args += ["--base-directory", str(data)]
    if extra_paths_exists:
        args += ["--extra-model-paths-config", str(data / EXTRA_PATHS_NAME)]
    return args


def next_generation_id(generations: Sequence[Generation], url: str, target: str) -> int:
    """Return the generation an update builds: an unfinished one for the same target, else new.

    Args:
        generations: Every recorded generation.
        url: The ComfyUI source of the update.
        target: The commit (or ref) it moves to.

    Returns:
        The id of a `building` or `failed` generation for ``url`` and ``target`` (a re-run
        continues it), else one more than the highest id.
    """
    for generation in generations:
        same = generation.comfyui_url == url and target in (
            generation.comfyui_commit,
            generation.comfyui_ref,
        )
        if same and generation.status != "ready":
            return generation.id
    return max((g.id for g in generations), default=1) + 1


MACHINE_STEPS = ("preflight", "uv", "python", "gpu")
"""Steps that check or record this machine (the tool, the interpreter, the GPUs), not what a
generation holds: a build may run them again without the generation being rebuilt."""


def reuse_refusal(steps: Sequence[PlannedStep]) -> str | None:
    """Say why a built generation does not hold what a build would make (None: it does).

    After a rollback, a build for a ComfyUI commit that a kept, verified generation was built
    for switches back to it instead of building again, but only when it holds what the build
    would install. The judge is the plan of the build's own options for that generation's root
    (its state, venv and checkout), as a re-run of `install` there would make it: a step of the
    generation it would run (other inputs: the torch set, the accelerators, the requirements,
    the configured nodes; a `--force`; outputs that are gone) means a new generation. The
    [`MACHINE_STEPS`][installer.plan.generations.MACHINE_STEPS] do not count, nor do steps that
    run only in case a step they depend on changes its outputs (a cascade).

    Args:
        steps: The steps planned for the generation's root.

    Returns:
        None when no step of the generation would run; else each one that would for a reason
        of its own (not because a step before it runs), with why, e.g. `requirements: inputs
        changed (extra)`.
    """
    running = [
        step
        for step in steps
        if step.action == "run" and not step.cascade and step.id not in MACHINE_STEPS
    ]
    if not running:
        return None
    ids = {step.id for step in running}
    # The first of a chain says why; the steps after it run because it does.
    causes = [step for step in running if not ids.intersection(step.depends_on)]
    return "; ".join(f"{step.id}: {step.reason}" for step in causes)


def shares_custom_nodes(root: PurePath, platform: str) -> bool:
    """True when an install root loads its custom nodes from another folder than its own.

    A later generation's checkout holds none of the user's folders: its nodes are those of
    `DIR/ComfyUI/custom_nodes`, which it shares with every generation.

    Args:
        root: DIR, or a generation's root (`DIR/.comfy-install/generations/<id>`).
        platform: The target OS.
    """
    root = pure_path(platform, root)
    return pure_path(platform, owning_install(root)) != root


def shared_nodes_dir(root: PurePath, platform: str) -> PurePath:
    """Return the folder the custom nodes of an install root live in: `DIR/ComfyUI/custom_nodes`.

    Args:
        root: DIR, or a generation's root.
        platform: The target OS.
    """
    return data_root(owning_install(pure_path(platform, root)), platform) / "custom_nodes"


SharedNodeAction = Literal["clone", "reuse", "refuse"]


class PinnedNode(Protocol):
    """A custom node at a pinned commit: a configured one (`CustomNode`) or a snapshot's."""

    @property
    def name(self) -> str:
        """Its folder's name in `custom_nodes/`."""

    @property
    def commit(self) -> str:
        """The commit it is pinned at."""


@dataclass(frozen=True)
class SharedNode:
    """What a later generation's build does with one configured node's shared folder."""

    name: str
    path: PurePath
    """`DIR/ComfyUI/custom_nodes/NAME`."""
    pinned: str
    """The commit the configuration pins."""
    action: SharedNodeAction
    found: NodeFolder | None = None
    """The folder as it is (None: there is none)."""
    reason: str = ""

    @property
    def note(self) -> str:
        """A few words for the update diff."""
        if self.action == "clone":
            return f"cloned into {self.path}"
        if self.action == "reuse":
            return f"{self.path} is at this commit: used as it is"
        return self.reason


def plan_shared_nodes(
    nodes: Sequence[PinnedNode], found: Mapping[str, NodeFolder | None], folder: PurePath
) -> list[SharedNode]:
    """Decide, for each pinned node, what a later generation's build does with its folder.

    The one rule of `update` (its preview), `snapshot restore` (before it builds) and step 9:
    a shared folder is the user's, so a build never moves one.

    Args:
        nodes: The nodes the build installs (step 9's configured ones, or a snapshot's).
        found: Each node's folder in ``folder`` as it is, by name (None or absent: no folder).
        folder: `DIR/ComfyUI/custom_nodes`.

    Returns:
        One decision a node, in ``nodes``' order: `clone` (no folder: a new one is made at the
        pin), `reuse` (at the pin, no local changes: not touched), or `refuse` (at another
        commit, with local changes, or not a git checkout), with the reason in words.
    """
    decisions: list[SharedNode] = []
    for node in nodes:
        path = folder / node.name
        seen = found.get(node.name)
        if seen is None:
            decisions.append(SharedNode(node.name, path, node.commit, "clone"))
            continue
        problems: list[str] = []
        if seen.head is None:
            problems.append(f"{path} is not a git checkout")
        elif seen.head != node.commit:
            problems.append(f"custom node {node.name} is at {seen.head[:12]} in {path}")
        if seen.changes:
            listed = ", ".join(seen.changes[:3]) + (" ..." if len(seen.changes) > 3 else "")
            where = "it has" if problems else f"custom node {node.name} in {path} has"
            problems.append(f"{where} local changes ({listed})")
        if not problems:
            decisions.append(SharedNode(node.name, path, node.commit, "reuse", seen))
            continue
        decisions.append(
            SharedNode(node.name, path, node.commit, "refuse", seen, "; ".join(problems))
        )
    return decisions


def shared_nodes_refusal(
    decisions: Sequence[SharedNode],
    pinned_by: str,
    again: str,
    unchanged: str = "Nothing was changed.",
    *,
    repin: bool = True,
    instead: str = "",
) -> UsageError | None:
    """Return the error that stops a build meeting shared node folders it may not use.

    Args:
        decisions: What [`plan_shared_nodes`][installer.plan.generations.plan_shared_nodes]
            decided.
        pinned_by: Who pins the commits, e.g. `this update`.
        again: The command to run once the folders are fixed, e.g. `comfy-install update DIR`.
        unchanged: The sentence that ends the message: what the refusal left as it was.
        repin: Offer to pin a folder's own commit in dependencies.json instead (not for a
            snapshot, whose pins are its own).
        instead: Another way out, a sentence ending the hint (e.g. `snapshot restore`'s
            `--keep-nodes`).

    Returns:
        None when no folder is refused; else one UsageError (exit code 2) naming each refused
        folder, its commit and the pinned one, and what to do.
    """
    refused = [d for d in decisions if d.action == "refuse"]
    if not refused:
        return None
    said = "; ".join(
        f"{d.reason}, shared by every generation; {pinned_by} pins {d.pinned[:12]}" for d in refused
    )
    fixes: list[str] = []
    for d in refused:
        if d.found is None or d.found.head is None:
            fixes.append(f"move {d.path} away (a build then clones {d.name} there)")
            continue
        keep = f"`git -C {d.path} stash`, then " if d.found.changes else ""
        fixes.append(f"{keep}`git -C {d.path} checkout {d.pinned}`")
        if repin and d.found.head != d.pinned:
            fixes[-1] += f" (or pin {d.found.head} for {d.name} in dependencies.json)"
    hint = f"Fix each folder yourself: {'; '.join(fixes)}; then run `{again}` again."
    return UsageError(f"{said}. {unchanged}", f"{hint} {instead}".strip())


def verify_nodes_paths(root: PurePath, platform: str) -> str | None:
    """Return the extra paths file that points a later generation's verify at the shared nodes.

    `launch` starts a later generation with `--base-directory DIR/ComfyUI`, so ComfyUI loads
    the nodes of `DIR/ComfyUI/custom_nodes`. Verify starts it before the switch, so it does
    not take the user's whole folder (that would let the new ComfyUI clean `temp/` and write
    `user/` before it is current): it adds only the nodes folder, as an
    `--extra-model-paths-config` file's `custom_nodes` entry (ComfyUI's
    `utils/extra_config.py` adds every key of a section to its folder paths).

    Args:
        root: The install root being verified.
        platform: The target OS.

    Returns:
        The YAML text, or None for generation 1 (its checkout is the data folder).
    """
    if not shares_custom_nodes(root, platform):
        return None
    folder = shared_nodes_dir(root, platform)
    # A JSON string is a YAML double-quoted scalar: Windows backslashes stay escaped.
    return f"comfy_install_shared_nodes:\n  custom_nodes: {json.dumps(str(folder))}\n"
