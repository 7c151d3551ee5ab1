"""Snapshots, decided as data: the configuration a restore installs, refusals, the diff.

[`restore_config`][installer.plan.snapshot.restore_config] turns a snapshot's configuration
into the `dependencies.json` a restore installs from (sources overridden by local bundles);
[`restore_refusals`][installer.plan.snapshot.restore_refusals] reads the plan made for this
machine and says why it cannot run the snapshot (another platform, a Python, a GPU the
accelerators do not support, a lock the plan would not use);
[`snapshot_diff`][installer.plan.snapshot.snapshot_diff] compares a snapshot with what a DIR
holds now. Pure: no file, no process.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from packaging.version import InvalidVersion, Version

from installer.core.lockfile import LockEntry
from installer.core.snapshot import Snapshot, SnapshotAccelerator
from installer.plan.generations import SharedNode
from installer.plan.nodes import entry_version
from installer.plan.optimization_records import PlannedOptimization
from installer.plan.records import Plan

SOURCE_SUFFIX = " (source)"
"""Step 10 names a source build `NAME (source)`, NAME being its `sageattention_sources` entry."""


def restore_config(snapshot: Snapshot, sources: Mapping[str, str]) -> dict[str, Any]:
    """Return the configuration a restore installs from.

    Args:
        snapshot: The snapshot.
        sources: Replacement URLs by name (`ComfyUI` or a node's name): local clones, mirrors or
            git bundles to clone from instead of the recorded URLs.
    """
    config = copy.deepcopy(snapshot.config)
    if "ComfyUI" in sources:
        config["comfyui"]["url"] = sources["ComfyUI"]
    for node in config.get("custom_nodes") or []:
        if node.get("name") in sources:
            node["url"] = sources[node["name"]]
    built = {
        a.name.removesuffix(SOURCE_SUFFIX): a for a in snapshot.accelerators if a.source_commit
    }
    for entry in (config.get("pip_packages") or {}).get("sageattention_sources") or []:
        accelerator = built.get(str(entry.get("name")))
        if accelerator is not None:
            # The commit the snapshot's build came from, whatever the configuration said.
            entry["commit"] = accelerator.source_commit
            if accelerator.source_url:
                entry["url"] = accelerator.source_url
        if entry.get("name") in sources:
            entry["url"] = sources[str(entry["name"])]
    return config


def snapshot_accelerators(
    outputs: Mapping[str, Any], inputs: Mapping[str, Any]
) -> list[SnapshotAccelerator]:
    """Return the accelerators step 10 installed, from its record in the state.

    A wheel keeps its sha256 (the outcome's); a source build its URL and commit, read from
    the planned entry the step ran (its inputs), which pinned and verified that commit.

    Args:
        outputs: The `optimizations` step's outputs (`packages`: each package's outcome).
        inputs: Its inputs (`planned`: the planned entries, a source build's `source` in each).
    """
    planned = {
        str(item.get("name")): item
        for item in inputs.get("planned") or []
        if isinstance(item, Mapping)
    }
    accelerators: list[SnapshotAccelerator] = []
    for item in outputs.get("packages") or []:
        if not isinstance(item, Mapping) or item.get("status") != "installed":
            continue
        source = (planned.get(str(item.get("name"))) or {}).get("source") or {}
        accelerators.append(
            SnapshotAccelerator(
                name=str(item["name"]),
                kind=str(item.get("kind") or ""),
                version=item.get("version"),
                requirement=item.get("requirement"),
                sha256=item.get("sha256"),
                source_url=source.get("url"),
                source_commit=source.get("commit"),
            )
        )
    return accelerators


def accelerator_refusals(
    accelerators: Sequence[SnapshotAccelerator], planned: Sequence[PlannedOptimization]
) -> list[str]:
    """Say which of the snapshot's accelerators the plan here would not install as they were.

    Each must be planned for install; a wheel with the same sha256, a source build of the same
    commit.

    Args:
        accelerators: The snapshot's accelerators.
        planned: Step 10's entries planned on this machine.
    """
    reasons: list[str] = []
    by_name = {item.name: item for item in planned}
    for accelerator in accelerators:
        item = by_name.get(accelerator.name)
        if item is None:
            reasons.append(f"{accelerator.name}: not planned on this machine")
        elif item.action != "install":
            reasons.append(f"{accelerator.name}: {item.action} here ({item.reason})")
        elif accelerator.source_commit and (
            item.source is None or item.source.commit != accelerator.source_commit
        ):
            here = item.source.commit[:12] if item.source else "no source"
            reasons.append(
                f"{accelerator.name}: the snapshot's was built from commit "
                f"{accelerator.source_commit[:12]}; the plan here builds {here}"
            )
        elif accelerator.sha256 and item.wheel and item.wheel.sha256 != accelerator.sha256:
            reasons.append(
                f"{accelerator.name}: the snapshot's wheel has sha256 {accelerator.sha256[:16]}; "
                f"the plan here installs {(item.wheel.sha256 or 'an unverified wheel')[:16]}"
            )
    return reasons


def restore_refusals(snapshot: Snapshot, platform: str, plan: Plan, lock_path: str) -> list[str]:
    """Say why this machine cannot run the snapshot, from the plan made for it (empty: it can).

    Args:
        snapshot: The snapshot.
        platform: This machine's OS.
        plan: The install plan made on this machine from the snapshot's configuration.
        lock_path: The snapshot's lock file the plan should install from.
    """
    reasons: list[str] = []
    if platform != snapshot.platform:
        reasons.append(
            f"the snapshot was taken on {snapshot.platform}; this machine runs {platform}"
        )
        return reasons
    if plan.blocking:
        reasons += [blocker.message for blocker in plan.blocking]
    if plan.lock is None or plan.lock.path != lock_path:
        why = plan.lock.reason if plan.lock else "no lock"
        reasons.append(f"the plan would not install the snapshot's resolution ({why})")
    driver = plan.gpu.cuda_driver_version
    if snapshot.torch.cuda and driver and _older(driver, snapshot.torch.cuda):
        reasons.append(
            f"the snapshot's torch is a CUDA {snapshot.torch.cuda} build; the driver here "
            f"supports CUDA {driver} at most"
        )
    return reasons + accelerator_refusals(snapshot.accelerators, plan.optimizations)


@dataclass(frozen=True)
class Change:
    """One difference between a snapshot and a DIR."""

    what: str
    now: str | None
    snapshot: str | None

    @property
    def kind(self) -> str:
        """`add`, `remove` or `change`."""
        if self.now is None:
            return "add"
        if self.snapshot is None:
            return "remove"
        return "change"


@dataclass(frozen=True)
class Holding:
    """What a DIR holds now (all None/empty for a new DIR)."""

    comfyui_commit: str | None = None
    nodes: Mapping[str, str | None] = field(default_factory=dict)
    packages: Mapping[str, str] = field(default_factory=dict)
    python: str | None = None


def snapshot_diff(snapshot: Snapshot, entries: list[LockEntry], now: Holding) -> list[Change]:
    """Compare a snapshot with what a DIR holds: ComfyUI, Python, nodes, packages.

    Args:
        snapshot: The snapshot.
        entries: Its lock's entries.
        now: What the DIR holds.

    Returns:
        One change per difference, ComfyUI first, then Python, nodes and packages by name.
    """
    changes: list[Change] = []
    if now.comfyui_commit != snapshot.comfyui.commit:
        changes.append(Change("ComfyUI", now.comfyui_commit, snapshot.comfyui.commit))
    if now.python is not None and now.python != snapshot.python:
        changes.append(Change("Python", now.python, snapshot.python))
    nodes = dict(now.nodes)
    wanted = {node.name: node.commit for node in snapshot.nodes}
    for name in sorted(set(nodes) | set(wanted)):
        if nodes.get(name) != wanted.get(name) or (name in nodes) != (name in wanted):
            changes.append(Change(f"custom node {name}", _opt(nodes, name), wanted.get(name)))
    packages = dict(now.packages)
    pinned = {entry.name: entry_version(entry) or entry.requirement for entry in entries}
    for name in sorted(set(packages) | set(pinned)):
        have, want = packages.get(name), pinned.get(name)
        if have != want:
            changes.append(Change(name, have, want))
    return changes


def _older(have: str, need: str) -> bool:
    try:
        return Version(have) < Version(need)
    except InvalidVersion:
        return False


def _opt(mapping: Mapping[str, str | None], name: str) -> str | None:
    if name not in mapping:
        return None
    return mapping[name] or "(unpinned)"


@dataclass(frozen=True)
class NodesDecision:
    """What a restore into an existing install does with each custom node folder.

    The node folders live in `DIR/ComfyUI/custom_nodes`, shared by every generation and
    the user's: a restore never rewrites one. A node of the snapshot that DIR lacks is
    cloned there as a new folder; one at another commit, with local changes or not a git
    checkout is refused (or, with `--keep-nodes`, left as it is and reported); one DIR has
    and the snapshot lacks stays.
    """

    same: tuple[str, ...] = ()
    """At the snapshot's commit, without local changes: used as they are."""
    added: tuple[str, ...] = ()
    """Not in DIR: cloned into `DIR/ComfyUI/custom_nodes` at the snapshot's commit."""
    differing: tuple[SharedNode, ...] = ()
    """At another commit, with local changes, or not a git checkout: never moved by a restore."""
    extra: tuple[str, ...] = ()
    """In DIR, not in the snapshot: kept; their requirements are not in the new venv."""

    def as_data(self) -> dict[str, Any]:
        """The `nodes` entry of `snapshot restore --json`."""
        return {
            "same": list(self.same),
            "added": list(self.added),
            "differing": [
                {
                    "name": d.name,
                    "now": (d.found.head if d.found else None) or "(not a git clone)",
                    "snapshot": d.pinned,
                    "reason": d.reason,
                }
                for d in self.differing
            ],
            "extra": list(self.extra),
        }


def restore_nodes(decisions: Sequence[SharedNode], folders: Iterable[str]) -> NodesDecision:
    """Sort what a restore does with each node folder of DIR (see `NodesDecision`).

    Args:
        decisions: What [`plan_shared_nodes`][installer.plan.generations.plan_shared_nodes]
            decided for each node of the snapshot (the check `update` makes too).
        folders: The names of the node folders DIR holds.
    """
    wanted = {decision.name for decision in decisions}
    return NodesDecision(
        same=tuple(d.name for d in decisions if d.action == "reuse"),
        added=tuple(d.name for d in decisions if d.action == "clone"),
        differing=tuple(d for d in decisions if d.action == "refuse"),
        extra=tuple(sorted(name for name in folders if name not in wanted)),
    )
