"""What an update changes, as data: the diff `update --dry-run` shows.

[`update_diff`][installer.plan.update.update_diff] compares the current generation (what
its venv and checkout hold) with the plan of the new one: the ComfyUI commit, the torch
set, each accelerator, ComfyUI's requirements line by line, the configured custom nodes,
and what the new generation's verify step checks before anything switches.
[`judge_current`][installer.plan.update.judge_current] then decides whether the current
generation is up to date: the same commit, torch set and nodes are not enough, every step
of it must be done with the build's inputs (the rule a kept generation is reused by).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from pydantic import BaseModel, Field

from installer.core.generations import Generation
from installer.core.nodes import ResolutionConflict
from installer.core.uv_options import IndexOptions
from installer.plan.generations import SharedNode
from installer.plan.nodes import Conflict
from installer.plan.records import InstallOptions, Plan, RecordedNode


class Change(BaseModel):
    """One thing before and after (None: absent on that side)."""

    name: str
    old: str | None = None
    new: str | None = None
    note: str = ""

    @property
    def changed(self) -> bool:
        """True when the two sides differ."""
        return self.old != self.new


class UpdateDiff(BaseModel):
    """The change an update makes, from the current generation to the new one."""

    install_dir: str
    current_generation: int
    new_generation: int
    new_root: str
    comfyui: Change
    torch: list[Change] = Field(default_factory=list)
    torch_build: Change
    accelerators: list[Change] = Field(default_factory=list)
    requirements: list[Change] = Field(default_factory=list)
    custom_nodes: list[Change] = Field(default_factory=list)
    verify: list[str] = Field(default_factory=list)
    switch: str
    prune: list[int] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    inputs: list[str] = Field(
        default_factory=list,
        description=(
            "The options not given to `update` that come from what the current generation "
            "recorded, e.g. `config: /srv/mine.json (recorded by the install)`."
        ),
    )
    up_to_date: bool = False
    outdated: str | None = Field(
        default=None,
        description=(
            "Why the current generation, at the target commit with the planned torch set and "
            "nodes, is still not up to date: the steps of it the build's plan would run, e.g. "
            "`requirements: inputs changed (extra)` (None: it is, or those already differ)."
        ),
    )


def requirement_lines(text: str | None) -> dict[str, str]:
    """Return ``{canonical name: requirement as written}`` of a `requirements.txt`.

    Args:
        text: The file's content (None: no file).
    """
    found: dict[str, str] = {}
    for raw in (text or "").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        try:
            found[canonicalize_name(Requirement(line).name)] = line
        except InvalidRequirement:
            found[line] = line
    return found


def _spec_version(spec: str) -> str:
    try:
        requirement = Requirement(spec)
    except InvalidRequirement:
        return spec
    return str(requirement.specifier).lstrip("=") or "any"


def _satisfies(installed: str | None, spec: str | None) -> bool:
    """True when the installed version meets the planned requirement (local tags aside)."""
    if installed is None or spec is None:
        return False
    from packaging.version import InvalidVersion, Version

    try:
        return Requirement(spec).specifier.contains(Version(installed).public, prereleases=True)
    except (InvalidRequirement, InvalidVersion):
        return False


def update_diff(
    *,
    install_dir: str,
    current: Generation,
    new_generation: int,
    new_root: str,
    new_commit: str | None,
    plan: Plan,
    old_requirements: str | None,
    new_requirements: str | None,
    old_installed: Mapping[str, str],
    old_nodes: Mapping[str, Any],
    switch: str,
    prune: list[int],
    shared_nodes: Sequence[SharedNode] = (),
    inputs: Sequence[str] = (),
) -> UpdateDiff:
    """Compare the current generation with the plan of the new one.

    Args:
        install_dir: DIR.
        current: The current generation as it is on disk.
        new_generation: The number the new generation gets.
        new_root: Where it is built.
        new_commit: The commit it checks out (None: resolved when it is built).
        plan: The install plan of the new generation.
        old_requirements: The current checkout's `requirements.txt` (None: none).
        new_requirements: The new commit's `requirements.txt` (None: not known yet).
        old_installed: ``{canonical name: version}`` of the current venv.
        old_nodes: The current install's custom nodes by name (their commits).
        switch: How the switch is done, in words.
        prune: The generations an update with this `--keep` removes after the switch.
        shared_nodes: What the build does with each configured node's folder in
            `DIR/ComfyUI/custom_nodes`; a node's old side is then that folder's commit (the
            one `launch` loads), and a node to clone there makes the update not up to date.
        inputs: The lines saying which options came from what the install recorded.
    """
    commit = new_commit or plan.comfyui.commit
    comfyui = Change(
        name="ComfyUI",
        old=current.comfyui_commit,
        new=commit,
        note=f"{current.comfyui_ref or '?'} -> {plan.comfyui.ref} ({plan.comfyui.url})",
    )
    torch: list[Change] = []
    planned: dict[str, str] = {
        canonicalize_name(Requirement(s).name): s for s in plan.torch.packages
    }
    for name in ("torch", "torchvision", "torchaudio"):
        old = current.packages.get(name)
        new = _spec_version(planned[name]) if name in planned else None
        if old is None and new is None:
            continue
        note = "" if name in planned else "not in the new ComfyUI's requirements: not held"
        torch.append(Change(name=name, old=old, new=new, note=note))
    build = Change(
        name="torch build",
        old=f"CUDA {current.torch_cuda}" if current.torch_cuda else "CPU",
        new=f"{plan.torch.variant} ({'CUDA ' + plan.torch.cuda if plan.torch.cuda else 'CPU'})",
        note=plan.torch.reason,
    )
    accelerators = [
        Change(
            name=entry.name,
            old=old_installed.get(canonicalize_name(entry.distribution or entry.name)),
            new=(entry.requirement or entry.name) if entry.action == "install" else None,
            note=entry.reason,
        )
        for entry in plan.optimizations
    ]
    before, after = requirement_lines(old_requirements), requirement_lines(new_requirements)
    requirements = [
        Change(name=name, old=before.get(name), new=after.get(name))
        for name in sorted(set(before) | set(after))
        if new_requirements is not None and before.get(name) != after.get(name)
    ]
    shared = {decision.name: decision for decision in shared_nodes}
    nodes: list[Change] = []
    for node in plan.custom_nodes:
        decision = shared.get(node.name)
        if decision is None:
            old = str(old_nodes.get(node.name) or "") or None
            nodes.append(Change(name=node.name, old=old, new=node.commit))
            continue
        head = decision.found.head if decision.found else None
        nodes.append(Change(name=node.name, old=head, new=node.commit, note=decision.note))
    same_nodes = not any(change.changed for change in nodes)
    configured = {node.name for node in plan.custom_nodes}
    nodes += [
        recorded_node_change(node) for node in plan.recorded_nodes if node.name not in configured
    ]
    kept = configured | {node.name for node in plan.recorded_nodes}
    nodes += [
        Change(name=name, old=str(value), new=None, note="no longer configured; its folder stays")
        for name, value in old_nodes.items()
        if name not in kept
    ]
    verify = plan.step("verify").details if plan.steps else []
    same_torch = all(
        _satisfies(change.old, planned.get(change.name)) for change in torch if change.new
    ) and all(change.new is not None for change in torch if change.old)
    return UpdateDiff(
        install_dir=install_dir,
        current_generation=current.id,
        new_generation=new_generation,
        new_root=new_root,
        comfyui=comfyui,
        torch=torch,
        torch_build=build,
        accelerators=accelerators,
        requirements=requirements,
        custom_nodes=nodes,
        verify=list(verify),
        switch=switch,
        prune=prune,
        warnings=list(plan.warnings),
        inputs=list(inputs),
        up_to_date=(
            commit is not None and commit == current.comfyui_commit and same_torch and same_nodes
        ),
    )


def judge_current(diff: UpdateDiff, lacks: Callable[[], str | None]) -> UpdateDiff:
    """Decide whether the current generation is up to date, as a kept one is judged for reuse.

    The diff's comparison (the ComfyUI commit, the torch set, the custom nodes) is the cheap
    first look: when any of them differs, a new generation is built and ``lacks`` is not asked.
    When none does, the current generation may still lack what the config asks for (another
    `extra_requirements` pin, accelerator or lock): it is up to date only when ``lacks`` finds
    every step of it done, the rule of
    [`reuse_refusal`][installer.plan.generations.reuse_refusal].

    Args:
        diff: The update's diff, its `up_to_date` from the cheap comparison.
        lacks: Says why the current generation does not hold what the build makes (None: it
            does); it plans the build's options for the current root (it probes the venv).

    Returns:
        The diff, or a copy that is not up to date and says why (`outdated`).
    """
    if not diff.up_to_date:
        return diff
    why = lacks()
    if why is None:
        return diff
    return diff.model_copy(update={"up_to_date": False, "outdated": why})


def planned_held(plan: Plan, installed: Mapping[str, str]) -> dict[str, str]:
    """Return the packages the new generation holds, with the versions it will have.

    The torch set and the accelerators the plan installs, each at the version its planned
    requirement pins (the current venv's own version where it meets the requirement: a local
    tag such as `+cu128` is kept, as `nodes add` names it); an accelerator planned without an
    exact pin and not in the venv is left out (it is not known yet).

    Args:
        plan: The new generation's plan.
        installed: ``{canonical name: version}`` of the current venv.
    """
    specs = list(plan.torch.packages)
    specs += [e.requirement for e in plan.optimizations if e.action == "install" and e.requirement]
    held: dict[str, str] = {}
    for spec in specs:
        try:
            requirement = Requirement(spec)
        except InvalidRequirement:
            continue
        name = canonicalize_name(requirement.name)
        have = installed.get(name)
        if _satisfies(have, spec) and have is not None:
            held[name] = have
            continue
        pins = [s.version for s in requirement.specifier if s.operator in ("==", "===")]
        if pins and "*" not in pins[0]:
            held[name] = pins[0]
    return held


def carried_config(shipped: Mapping[str, Any], staged: Mapping[str, Any]) -> dict[str, Any]:
    """Return the shipped configuration with what a restored install has of its own carried over.

    A `snapshot restore` staged the snapshot's configuration in `DIR/.comfy-install/`; an update
    moves on from its pins to the shipped ones (ComfyUI's ref and commit, torch, the Python
    default, the lock), but keeps the install's own: its `custom_nodes`, `extra_requirements`
    and `comfyui.url`.

    Args:
        shipped: This comfy-install's `dependencies.json`, as read.
        staged: The staged configuration, as read.
    """
    import copy

    merged = copy.deepcopy(dict(shipped))
    merged["custom_nodes"] = copy.deepcopy(list(staged.get("custom_nodes") or []))
    merged["extra_requirements"] = list(staged.get("extra_requirements") or [])
    url = (staged.get("comfyui") or {}).get("url")
    if url:
        merged["comfyui"] = {**dict(merged.get("comfyui") or {}), "url": url}
    return merged


def carried_lines(merged: Mapping[str, Any], staged_path: str) -> list[str]:
    """Say what an update carried over from a staged configuration, for the preview.

    Args:
        merged: The configuration [`carried_config`][installer.plan.update.carried_config] made.
        staged_path: Where the staged configuration is.
    """
    nodes = ", ".join(str(node.get("name")) for node in merged.get("custom_nodes") or [])
    extras = ", ".join(map(str, merged.get("extra_requirements") or []))
    url = (merged.get("comfyui") or {}).get("url")
    return [
        f"carried over from the configuration a snapshot restore staged ({staged_path}): "
        f"custom_nodes: {nodes or 'none'}; extra_requirements: {extras or 'none'}; "
        f"comfyui.url: {url}"
    ]


def recorded_node_change(node: RecordedNode) -> Change:
    """Return the diff's line for a node of `nodes.json` the new generation keeps.

    Args:
        node: The kept node (its folder stays; its recorded requirements go into the venv).
    """
    if node.requirements:
        note = f"recorded in nodes.json; into the new venv: {', '.join(node.requirements)}"
    elif node.no_deps:
        note = "recorded in nodes.json; added with --no-deps: none of its requirements"
    else:
        note = "recorded in nodes.json; no requirements"
    return Change(name=node.name, old=node.commit, new=node.commit, note=note)


def kept_node_conflict(
    conflict: ResolutionConflict | None,
    nodes: Sequence[RecordedNode],
    sources: Mapping[str, Sequence[str]],
    held: Mapping[str, str],
) -> Conflict:
    """Name the kept node, its requirement and what it fights, from uv's resolver error.

    Every node was installed beside the old ComfyUI, so the culprit is the first kept node with
    a requirement uv names; the other side is the new ComfyUI, an extra requirement, another
    node or a held package ([`explain_conflict`][installer.plan.nodes.explain_conflict]).

    Args:
        conflict: What uv's error named (None: it could not be read).
        nodes: The kept nodes (those with requirements).
        sources: Requirement lines by who asks for them (`ComfyUI`, a node's name).
        held: The packages the new generation holds.
    """
    from installer.plan.nodes import explain_conflict, requirement_name

    if conflict is None:
        conflict = ResolutionConflict(requirements=())
    named = {requirement_name(item) for item in conflict.requirements}
    named |= {requirement_name(part) for pair in conflict.depends for part in pair}
    culprit = next(
        (n for n in nodes if any(requirement_name(r) in named for r in n.requirements)), nodes[0]
    )
    return explain_conflict(
        culprit.name, list(culprit.requirements), conflict, sources, held, "comfy-install"
    )


def node_index_inputs(
    options: InstallOptions, nodes_index: IndexOptions, kept: Sequence[str]
) -> tuple[InstallOptions, list[str]]:
    """Add the find-links and extra indexes `nodes add` used to an update that keeps its nodes.

    A node added with `nodes add DIR SOURCE --find-links WHEELS` may need a package that only
    WHEELS holds; `nodes.json` records those index options, and an update that keeps the node
    resolves and installs its requirements again, so it needs them too. They are added to the
    update's own (never replacing them; `--index-url` and `--offline` are the update's alone),
    counted as given (the new generation records them, so the next update finds them in its
    inputs) and each said in the preview. The caller leaves out a local folder that is gone.

    Args:
        options: The update's options, filled from the install's record.
        nodes_index: The index options of DIR's `nodes.json`.
        kept: The names of the nodes the update keeps (none: nothing is added).

    Returns:
        The options to plan with, and a line for each added input, for the preview.
    """
    if not kept:
        return options, []
    who = f"recorded by nodes add in nodes.json, for {', '.join(kept)}"
    links = [link for link in nodes_index.find_links if link not in options.find_links]
    indexes = [url for url in nodes_index.extra_index_urls if url not in options.extra_index_urls]
    lines = [f"find-links: {link} ({who})" for link in links]
    lines += [f"extra-index-url: {url} ({who})" for url in indexes]
    if not lines:
        return options, []
    given = set(options.given)
    given.update(name for name, added in (("find_links", links), ("extra_index_urls", indexes))
                 if added)  # fmt: skip
    changed = replace(
        options,
        find_links=(*options.find_links, *links),
        extra_index_urls=(*options.extra_index_urls, *indexes),
        given=frozenset(given),
    )
    return changed, lines
