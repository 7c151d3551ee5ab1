"""Generations as pure plans: paths, the switch (Windows too), rollback, pruning, sharing."""

from __future__ import annotations

from pathlib import PurePosixPath, PureWindowsPath

import pytest

from installer.core.errors import UsageError
from installer.core.generations import Generation, generation_root, parse_pointer
from installer.plan.build import held_torch_packages
from installer.plan.generations import (
    next_generation_id,
    plan_prune,
    plan_switch,
    rollback_target,
    shared_folder_args,
)

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
