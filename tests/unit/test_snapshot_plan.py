"""The pure half of snapshots: the restore configuration and the diff against a DIR."""

from __future__ import annotations

from pathlib import PurePosixPath

from installer.core.lockfile import parse_entries
from installer.core.nodes import NodeFolder
from installer.core.snapshot import (
    Snapshot,
    SnapshotAccelerator,
    SnapshotNode,
    SnapshotSource,
    SnapshotTorch,
)
from installer.plan.generations import plan_shared_nodes, shared_nodes_refusal
from installer.plan.optimization_records import PlannedOptimization, PlannedWheel
from installer.plan.sage_sources import PlannedSource
from installer.plan.snapshot import (
    Holding,
    accelerator_refusals,
    restore_config,
    restore_nodes,
    snapshot_accelerators,
    snapshot_diff,
)

LOCK = "plain-new==1.3 \\\n    --hash=sha256:aa\n    # via -r extra-requirements.txt\n"


def snapshot() -> Snapshot:
    return Snapshot(
        created_at="t",
        tool_version="0",
        platform="linux",
        python="3.12.7",
        comfyui=SnapshotSource(url="https://x/ComfyUI.git", commit="c" * 40),
        torch=SnapshotTorch(versions={"torch": "2.11.0"}, variant="default"),
        nodes=[SnapshotNode(name="n1", url="https://x/n1.git", commit="a" * 40)],
        lock_target="linux-default-py312",
        lock=LOCK,
        config={
            "comfyui": {"url": "https://x/ComfyUI.git"},
            "custom_nodes": [{"name": "n1", "url": "https://x/n1.git"}],
        },
    )


def test_sources_replace_the_recorded_urls_only_in_the_restore_config() -> None:
    snap = snapshot()
    config = restore_config(snap, {"ComfyUI": "/b/comfy.bundle", "n1": "/b/n1"})
    assert config["comfyui"]["url"] == "/b/comfy.bundle"
    assert config["custom_nodes"][0]["url"] == "/b/n1"
    assert snap.config["comfyui"]["url"] == "https://x/ComfyUI.git"


def test_a_new_dir_gets_everything_and_a_matching_one_nothing() -> None:
    snap = snapshot()
    entries = parse_entries(LOCK.splitlines())
    kinds = {c.what: c.kind for c in snapshot_diff(snap, entries, Holding())}
    assert kinds == {"ComfyUI": "add", "custom node n1": "add", "plain-new": "add"}
    same = Holding("c" * 40, {"n1": "a" * 40}, {"plain-new": "1.3"}, "3.12.7")
    assert snapshot_diff(snap, entries, same) == []
    moved = Holding("d" * 40, {"n1": "b" * 40, "mine": None}, {"plain-new": "1.2"}, "3.12.7")
    changes = {c.what: (c.kind, c.now, c.snapshot) for c in snapshot_diff(snap, entries, moved)}
    assert changes["ComfyUI"] == ("change", "d" * 40, "c" * 40)
    assert changes["custom node mine"] == ("remove", "(unpinned)", None)
    assert changes["plain-new"] == ("change", "1.2", "1.3")


def test_a_restore_into_an_install_never_moves_a_node_folder_it_decides_about() -> None:
    snap = snapshot()
    snap.nodes.append(SnapshotNode(name="n2", url="https://x/n2.git", commit="b" * 40))
    snap.nodes.append(SnapshotNode(name="n3", url="https://x/n3.git", commit="d" * 40))
    snap.nodes.append(SnapshotNode(name="n4", url="https://x/n4.git", commit="f" * 40))
    folder = PurePosixPath("/d/ComfyUI/custom_nodes")
    found = {
        "n1": NodeFolder("a" * 40),
        "n2": NodeFolder("e" * 40),
        "n4": NodeFolder("f" * 40, ("__init__.py",)),  # at the pin, edited
    }
    decisions = plan_shared_nodes(snap.nodes, found, folder)
    decision = restore_nodes(decisions, ["n1", "n2", "n4", "mine"])
    assert decision.same == ("n1",)
    assert decision.added == ("n3",)
    assert [d.name for d in decision.differing] == ["n2", "n4"]
    assert decision.extra == ("mine",)
    hand_made = restore_nodes(plan_shared_nodes(snap.nodes, {"n2": NodeFolder(None)}, folder), [])
    assert hand_made.as_data()["differing"][0]["now"] == "(not a git clone)"
    assert restore_nodes(plan_shared_nodes(snap.nodes, {}, folder), []).added == (
        "n1", "n2", "n3", "n4",
    )  # fmt: skip
    assert decision.as_data()["differing"] == [
        {"name": "n2", "now": "e" * 40, "snapshot": "b" * 40,
         "reason": f"custom node n2 is at {'e' * 12} in {folder / 'n2'}"},
        {"name": "n4", "now": "f" * 40, "snapshot": "f" * 40,
         "reason": f"custom node n4 in {folder / 'n4'} has local changes (__init__.py)"},
    ]  # fmt: skip
    error = shared_nodes_refusal(
        decisions, "the snapshot", "comfy-install snapshot restore S D", repin=False,
        instead="Or pass --keep-nodes.",
    )  # fmt: skip
    assert error is not None and "dependencies.json" not in error.hint
    assert error.hint.endswith(
        "then run `comfy-install snapshot restore S D` again. Or pass --keep-nodes."
    )


def _planned_source(commit: str) -> PlannedOptimization:
    source = PlannedSource(
        url="https://x/SageAttention.git", commit=commit, distribution="sageattention",
        nvcc="13.0", arch_list="9.0", jobs=4, estimate="about 10 minutes",
    )  # fmt: skip
    return PlannedOptimization(
        name="sageattention2 (source)", kind="source", action="install", reason="builds",
        distribution="sageattention", source=source,
    )  # fmt: skip


def test_a_source_built_accelerator_carries_its_commit_into_the_snapshot_and_the_restore() -> None:
    built = _planned_source("e" * 40)
    # Step 10's record as the state holds it: the outcomes, and the planned entries it ran.
    outputs = {
        "packages": [
            {"name": "sageattention2 (source)", "kind": "source", "status": "installed",
             "version": "2.2.0", "requirement": "sageattention @ git+https://x/SA@" + "e" * 40},
            {"name": "xformers", "kind": "package", "status": "skipped", "reason": "no wheel"},
        ]
    }  # fmt: skip
    inputs = {"torch": "2.9.1", "planned": [built.model_dump(mode="json")]}
    accelerators = snapshot_accelerators(outputs, inputs)
    assert [(a.name, a.source_commit, a.source_url) for a in accelerators] == [
        ("sageattention2 (source)", "e" * 40, "https://x/SageAttention.git")
    ]
    snap = snapshot()
    snap.accelerators = accelerators
    snap.config["pip_packages"] = {
        "sageattention_sources": [
            {"name": "sageattention2", "url": "https://x/other.git", "commit": "f" * 40}
        ]
    }
    config = restore_config(snap, {"sageattention2": "/b/sa.bundle"})
    assert config["pip_packages"]["sageattention_sources"][0]["commit"] == "e" * 40
    assert config["pip_packages"]["sageattention_sources"][0]["url"] == "/b/sa.bundle"
    assert accelerator_refusals(accelerators, [built]) == []
    refused = accelerator_refusals(accelerators, [_planned_source("f" * 40)])
    assert refused == [
        "sageattention2 (source): the snapshot's was built from commit eeeeeeeeeeee; "
        "the plan here builds ffffffffffff"
    ]


def test_a_wheel_accelerator_is_restored_only_with_the_same_sha256() -> None:
    wheel = SnapshotAccelerator(name="sageattention2", kind="wheel", sha256="a" * 64)
    planned = PlannedOptimization(
        name="sageattention2", kind="wheel", action="install", reason="fits",
        wheel=PlannedWheel(filename="sa.whl", url="https://x/sa.whl", sha256="b" * 64),
    )  # fmt: skip
    assert accelerator_refusals([wheel], [planned]) == [
        "sageattention2: the snapshot's wheel has sha256 aaaaaaaaaaaaaaaa; the plan here "
        "installs bbbbbbbbbbbbbbbb"
    ]
    same_wheel = PlannedWheel(filename="sa.whl", url="https://x/sa.whl", sha256="a" * 64)
    same = planned.model_copy(update={"wheel": same_wheel})
    assert accelerator_refusals([wheel], [same]) == []
    assert accelerator_refusals([wheel], []) == ["sageattention2: not planned on this machine"]
