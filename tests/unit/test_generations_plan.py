"""Generations as pure plans: paths, the switch (Windows too), rollback, pruning, sharing."""

from __future__ import annotations

from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

import pytest

from installer.core.config import CustomNode
from installer.core.errors import UsageError
from installer.core.generations import Generation, generation_root, parse_pointer
from installer.core.nodes import NodeFolder
from installer.plan.build import held_torch_packages
from installer.plan.generations import (
    next_generation_id,
    plan_prune,
    plan_shared_nodes,
    plan_switch,
    reuse_refusal,
    rollback_target,
    shared_folder_args,
    shared_nodes_dir,
    shared_nodes_refusal,
    shares_custom_nodes,
    verify_nodes_paths,
)
from installer.plan.records import DEPENDS, PlannedStep

WIN_DIR = PureWindowsPath(r"C:\Users\Ana\ComfyUI-install")
POSIX_DIR = PurePosixPath("/srv/comfy")


def gen(number: int, status: str = "ready", commit: str = "c", url: str = "u") -> Generation:
    return Generation(
        id=number,
        root=f"/g/{number}",
        created_at="2026-12-06T00:00:00Z",
        status=status,  # type: ignore[arg-type]
        comfyui_commit=commit,
        comfyui_url=url,
    )


def test_generation_roots_on_windows_and_posix() -> None:
    assert generation_root(WIN_DIR, 1, "windows") == WIN_DIR
    assert generation_root(WIN_DIR, 3, "windows") == PureWindowsPath(
        r"C:\Users\Ana\ComfyUI-install\.comfy-install\generations\3"
    )
    assert generation_root(POSIX_DIR, 2, "linux") == PurePosixPath(
        "/srv/comfy/.comfy-install/generations/2"
    )


def test_the_windows_switch_is_one_rename_in_the_pointer_folder() -> None:
    plan = plan_switch(WIN_DIR, 4, "windows")
    assert isinstance(plan.pointer, PureWindowsPath)
    assert plan.pointer == WIN_DIR / ".comfy-install" / "current-generation"
    # The temporary file sits beside the pointer: the rename never crosses a volume.
    assert plan.temporary.parent == plan.pointer.parent
    assert plan.temporary != plan.pointer
    assert "MoveFileEx" in plan.method and "REPLACE_EXISTING" in plan.method
    assert plan.text == "4\n"
    assert parse_pointer(plan.text) == 4


def test_the_posix_switch_renames_over_the_pointer() -> None:
    plan = plan_switch(POSIX_DIR, 2, "linux")
    assert plan.pointer == PurePosixPath("/srv/comfy/.comfy-install/current-generation")
    assert plan.temporary.parent == plan.pointer.parent
    assert "rename(2)" in plan.method


@pytest.mark.parametrize(
    ("text", "expected"),
    [(None, 1), ("2\n", 2), ("", 1), ("garbage", 1), ("0", 1), (" 7 ", 7)],
)
def test_a_missing_or_damaged_pointer_means_generation_1(text: str | None, expected: int) -> None:
    assert parse_pointer(text) == expected


def test_rollback_goes_to_the_newest_verified_older_generation() -> None:
    generations = [gen(1), gen(2), gen(3, status="failed"), gen(4)]
    assert rollback_target(generations, 4) == 2
    assert rollback_target(generations, 2) == 1


def test_rollback_without_a_previous_generation_is_a_usage_error() -> None:
    with pytest.raises(UsageError) as caught:
        rollback_target([gen(1)], 1)
    assert caught.value.exit_code == 2
    assert "no previous generation" in caught.value.message


def test_prune_keeps_the_current_and_the_newest_and_only_the_venv_of_generation_1() -> None:
    generations = [gen(1), gen(2), gen(3), gen(4)]
    items = plan_prune(generations, 4, 2, POSIX_DIR, "linux")
    assert [item.generation for item in items] == [2, 1]
    by_id = {item.generation: item for item in items}
    assert by_id[1].remove == (POSIX_DIR / "venv",)
    assert by_id[2].remove == (POSIX_DIR / ".comfy-install" / "generations" / "2",)
    assert all(POSIX_DIR / "ComfyUI" not in item.remove for item in items)


def test_prune_never_removes_the_current_one_even_after_a_rollback() -> None:
    items = plan_prune([gen(1), gen(2), gen(3)], 1, 1, WIN_DIR, "windows")
    assert [item.generation for item in items] == [3, 2]
    assert items[0].remove == (WIN_DIR / ".comfy-install" / "generations" / "3",)


def test_prune_with_keep_0_is_refused() -> None:
    with pytest.raises(UsageError):
        plan_prune([gen(1)], 1, 0, POSIX_DIR, "linux")


def test_a_rerun_continues_the_unfinished_generation_for_the_same_target() -> None:
    generations = [gen(1, commit="a"), gen(2, status="building", commit="b")]
    assert next_generation_id(generations, "u", "b") == 2
    assert next_generation_id(generations, "u", "z") == 3
    assert next_generation_id([gen(1), gen(2, status="ready", commit="b")], "u", "b") == 3


def test_a_later_generation_is_pointed_at_the_users_folders() -> None:
    checkout = WIN_DIR / ".comfy-install" / "generations" / "2" / "ComfyUI"
    args = shared_folder_args(WIN_DIR, checkout, "windows", extra_paths_exists=True)
    assert args == [
        "--base-directory", str(WIN_DIR / "ComfyUI"),
        "--extra-model-paths-config", str(WIN_DIR / "ComfyUI" / "extra_model_paths.yaml"),
    ]  # fmt: skip
    assert (
        shared_folder_args(WIN_DIR, WIN_DIR / "ComfyUI", "windows", extra_paths_exists=True) == []
    )
    mine = shared_folder_args(
        POSIX_DIR, POSIX_DIR / "x", "linux", extra_paths_exists=False,
        user_args=["--base-directory=/elsewhere"],
    )  # fmt: skip
    assert mine == []


def test_the_held_torch_set_follows_comfyuis_requirements() -> None:
    trio = ["torch==2.11.0", "torchvision==0.26.0", "torchaudio==2.11.0"]
    assert held_torch_packages(trio, None) == trio
    assert held_torch_packages(trio, frozenset({"torch", "torchvision", "numpy"})) == trio[:2]
    assert held_torch_packages(trio, frozenset()) == ["torch==2.11.0"]


PIN = "b" * 40
OTHER = "a" * 40


def node(name: str = "cfg-node") -> CustomNode:
    return CustomNode(name=name, url="https://example.invalid/n.git", commit=PIN)


def test_shared_nodes_roots_live_in_dirs_data_root_on_windows_and_posix() -> None:
    second = generation_root(WIN_DIR, 2, "windows")
    assert shares_custom_nodes(second, "windows") and not shares_custom_nodes(WIN_DIR, "windows")
    assert shared_nodes_dir(second, "windows") == PureWindowsPath(
        r"C:\Users\Ana\ComfyUI-install\ComfyUI\custom_nodes"
    )
    assert shared_nodes_dir(POSIX_DIR, "linux") == POSIX_DIR / "ComfyUI" / "custom_nodes"
    assert not shares_custom_nodes(POSIX_DIR, "linux")


def test_shared_nodes_are_cloned_when_absent_reused_at_the_pin_refused_otherwise() -> None:
    folder = POSIX_DIR / "ComfyUI" / "custom_nodes"
    nodes = [node("new"), node("same"), node("moved"), node("edited"), node("plain")]
    found = {
        "same": NodeFolder(PIN),
        "moved": NodeFolder(OTHER),
        "edited": NodeFolder(PIN, ("__init__.py",)),
        "plain": NodeFolder(None),
    }
    decisions = plan_shared_nodes(nodes, found, folder)
    assert [(d.name, d.action) for d in decisions] == [
        ("new", "clone"), ("same", "reuse"), ("moved", "refuse"), ("edited", "refuse"),
        ("plain", "refuse"),
    ]  # fmt: skip
    assert decisions[2].reason == f"custom node moved is at {OTHER[:12]} in {folder / 'moved'}"
    assert "has local changes (__init__.py)" in decisions[3].reason
    assert decisions[4].reason == f"{folder / 'plain'} is not a git checkout"
    assert shared_nodes_refusal(decisions[:2], "this update", "comfy-install update D") is None

    error = shared_nodes_refusal(decisions, "this update", "comfy-install update D")
    assert error is not None and error.exit_code == 2
    assert error.message.endswith("Nothing was changed.")
    assert (
        f"custom node moved is at {OTHER[:12]} in {folder / 'moved'}, shared by every "
        f"generation; this update pins {PIN[:12]}"
    ) in error.message
    assert f"`git -C {folder / 'moved'} checkout {PIN}` (or pin {OTHER} for moved" in error.hint
    assert f"`git -C {folder / 'edited'} stash`, then" in error.hint
    assert f"move {folder / 'plain'} away" in error.hint
    assert error.hint.endswith("then run `comfy-install update D` again.")


def test_verify_loads_the_shared_nodes_only_for_a_later_generation() -> None:
    assert verify_nodes_paths(WIN_DIR, "windows") is None
    text = verify_nodes_paths(generation_root(WIN_DIR, 3, "windows"), "windows")
    assert text is not None
    import yaml

    loaded = yaml.safe_load(text)
    assert list(loaded.values()) == [
        {"custom_nodes": r"C:\Users\Ana\ComfyUI-install\ComfyUI\custom_nodes"}
    ]


def planned(
    step_id: str, action: str = "done", reason: str = "up to date", **extra: Any
) -> PlannedStep:
    return PlannedStep(
        number=1, id=step_id, title=step_id, action=action, reason=reason,  # type: ignore[arg-type]
        depends_on=list(DEPENDS[step_id]), **extra,
    )  # fmt: skip


def test_a_generation_is_switched_back_to_only_when_no_step_of_it_would_run() -> None:
    done = [planned(s) for s in ("preflight", "venv", "torch", "requirements", "verify")]
    assert reuse_refusal(done) is None
    assert reuse_refusal([*done, planned("launchers", "skip", "skipped by --skip")]) is None
    # The machine's own steps may run again (a new uv, another interpreter path) ...
    machine = [planned("preflight", "run", "checks are made on every run (no network)"),
               planned("uv", "run", "inputs changed (version)"),
               planned("python", "run", "uv will run first", cascade=True)]  # fmt: skip
    assert reuse_refusal([*machine, *done[1:]]) is None
    # ... and so may a step that runs only in case the steps it depends on change outputs.
    assert (
        reuse_refusal([*machine, planned("venv", "run", "python will run first", cascade=True)])
        is None
    )
    changed = [
        planned("requirements", "run", "inputs changed (extra)"),
        planned("custom_nodes", "run", "requirements will run first", cascade=True),
        planned("verify", "run", "requirements will run first"),
    ]
    assert reuse_refusal(changed) == "requirements: inputs changed (extra)"
    forced = [
        planned("torch", "run", "forced by --force"),
        planned("optimizations", "run", "torch will run first"),
    ]
    assert reuse_refusal(forced) == "torch: forced by --force"
