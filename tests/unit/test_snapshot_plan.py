"""The pure half of snapshots: the restore configuration and the diff against a DIR."""

from __future__ import annotations

from installer.core.lockfile import parse_entries
from installer.core.snapshot import Snapshot, SnapshotNode, SnapshotSource, SnapshotTorch
from installer.plan.snapshot import Holding, restore_config, restore_nodes, snapshot_diff

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
    decision = restore_nodes(snap, {"n1": "a" * 40, "n2": "e" * 40, "mine": None})
    assert decision.same == ("n1",)
    assert decision.added == ("n3",)
    assert [(c.what, c.now, c.snapshot) for c in decision.differing] == [("n2", "e" * 40, "b" * 40)]
    assert decision.extra == ("mine",)
    hand_made = restore_nodes(snap, {"n2": None})
    assert hand_made.differing[0].now == "(not a git clone)"
    assert restore_nodes(snap, {}).added == ("n1", "n2", "n3")
    assert decision.as_data()["differing"] == [
        {"name": "n2", "now": "e" * 40, "snapshot": "b" * 40}
    ]
